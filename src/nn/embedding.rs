//! [`Embedding`]: a lookup table of vectors, as `torch.nn.Embedding`.

use ndarray::{Array, Array2, ArrayBase, Axis, Data, Dimension, IxDyn};

use super::{NnError, Rng};
use crate::StateDict;

/// A table of `num_embeddings` vectors of size `embedding_dim`, looked up by index, as
/// `torch.nn.Embedding`: key `weight` `[num_embeddings, embedding_dim]`, initialised from the
/// standard normal distribution.
///
/// With a [`padding_idx`](Embedding::with_padding_idx) the row of that index starts at zero,
/// as PyTorch's does (PyTorch also keeps its gradient at zero; ckpt has no autograd). A lookup
/// returns whatever the row holds, so a loaded table keeps its saved padding row.
///
/// ```
/// use ckpt::nn::{Embedding, Rng};
///
/// // nn.Embedding(6, 3, padding_idx=-1): stored as 5, and row 5 is zero.
/// let emb = Embedding::new(6, 3, &mut Rng::seed(0)).with_padding_idx(-1)?;
/// assert_eq!(emb.padding_idx(), Some(5));
/// let y = emb.forward(&ndarray::array![5i64, 0])?;
/// assert_eq!(y.row(0).to_vec(), [0.0; 3]);
/// # Ok::<(), ckpt::nn::NnError>(())
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct Embedding {
    /// `[num_embeddings, embedding_dim]`.
    pub weight: Array2<f32>,
    #[state(skip)]
    padding_idx: Option<usize>,
}

/// What rebuilds an [`Embedding`] saved with [`save_model`](crate::model::save_model).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingConfig {
    /// The number of vectors.
    pub num_embeddings: usize,
    /// The size of each vector.
    pub embedding_dim: usize,
    /// The padding row, normalised to `0..num_embeddings`; absent in files written before it
    /// existed.
    #[serde(default)]
    pub padding_idx: Option<usize>,
}

impl crate::model::Model for Embedding {
    type Config = EmbeddingConfig;

    fn config(&self) -> EmbeddingConfig {
        EmbeddingConfig {
            num_embeddings: self.weight.nrows(),
            embedding_dim: self.weight.ncols(),
            padding_idx: self.padding_idx,
        }
    }

    fn from_config(config: EmbeddingConfig) -> Self {
        let table = Embedding::new(
            config.num_embeddings,
            config.embedding_dim,
            &mut Rng::seed(0),
        );
        // An index out of range cannot have come from `config()`; the table is kept whole.
        match config.padding_idx.and_then(|i| i64::try_from(i).ok()) {
            Some(index) => table.clone().with_padding_idx(index).unwrap_or(table),
            None => table,
        }
    }
}

impl Embedding {
    /// A table initialised from `N(0, 1)`, as PyTorch does.
    pub fn new(num_embeddings: usize, embedding_dim: usize, rng: &mut Rng) -> Self {
        Embedding {
            weight: Array2::from_shape_simple_fn((num_embeddings, embedding_dim), || rng.normal()),
            padding_idx: None,
        }
    }

    /// The same table with a padding row (`padding_idx=`): a negative index counts from the
    /// end, as in PyTorch, and the row is set to zero. Fails, as PyTorch does, unless
    /// `-num_embeddings <= padding_idx < num_embeddings`.
    pub fn with_padding_idx(mut self, padding_idx: i64) -> Result<Self, NnError> {
        let n = self.num_embeddings();
        let normalized = if padding_idx < 0 {
            i64::try_from(n).ok().map(|n| n + padding_idx)
        } else {
            Some(padding_idx)
        };
        let index = normalized
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < n)
            .ok_or_else(|| {
                NnError::config("Embedding", "Padding_idx must be within num_embeddings")
            })?;
        self.weight.row_mut(index).fill(0.0);
        self.padding_idx = Some(index);
        Ok(self)
    }

    /// The padding row, normalised to `0..num_embeddings`, if there is one.
    pub fn padding_idx(&self) -> Option<usize> {
        self.padding_idx
    }

    /// The number of vectors.
    pub fn num_embeddings(&self) -> usize {
        self.weight.nrows()
    }

    /// The size of each vector.
    pub fn embedding_dim(&self) -> usize {
        self.weight.ncols()
    }

    /// Looks up every index of `indices` (any shape `[*]`), giving `[*, embedding_dim]`.
    pub fn forward<S, D>(&self, indices: &ArrayBase<S, D>) -> Result<Array<f32, D::Larger>, NnError>
    where
        S: Data<Elem = i64>,
        D: Dimension,
    {
        let n = self.num_embeddings();
        let rows = indices
            .iter()
            .enumerate()
            .map(|(position, &index)| {
                usize::try_from(index)
                    .ok()
                    .filter(|&i| i < n)
                    .ok_or(NnError::Index {
                        layer: "Embedding",
                        index,
                        position,
                        num_embeddings: n,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let table = self.weight.select(Axis(0), &rows);
        let mut shape = indices.shape().to_vec();
        shape.push(self.embedding_dim());
        let error = || NnError::shape("Embedding", "[*] of indices", indices.shape());
        table
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|_| error())?
            .into_dimensionality::<D::Larger>()
            .map_err(|_| error())
    }
}
