//! [`Embedding`]: a lookup table of vectors, as `torch.nn.Embedding`.

use ndarray::{Array, Array2, ArrayBase, Axis, Data, Dimension, IxDyn};

use super::{NnError, Rng};
use crate::StateDict;

/// A table of `num_embeddings` vectors of size `embedding_dim`, looked up by index, as
/// `torch.nn.Embedding`: key `weight` `[num_embeddings, embedding_dim]`, initialised from the
/// standard normal distribution.
#[derive(StateDict, Clone, Debug)]
pub struct Embedding {
    /// `[num_embeddings, embedding_dim]`.
    pub weight: Array2<f32>,
}

/// What rebuilds an [`Embedding`] saved with [`save_model`](crate::model::save_model).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingConfig {
    /// The number of vectors.
    pub num_embeddings: usize,
    /// The size of each vector.
    pub embedding_dim: usize,
}

impl crate::model::Model for Embedding {
    type Config = EmbeddingConfig;

    fn config(&self) -> EmbeddingConfig {
        EmbeddingConfig {
            num_embeddings: self.weight.nrows(),
            embedding_dim: self.weight.ncols(),
        }
    }

    fn from_config(config: EmbeddingConfig) -> Self {
        Embedding::new(
            config.num_embeddings,
            config.embedding_dim,
            &mut Rng::seed(0),
        )
    }
}

impl Embedding {
    /// A table initialised from `N(0, 1)`, as PyTorch does.
    pub fn new(num_embeddings: usize, embedding_dim: usize, rng: &mut Rng) -> Self {
        Embedding {
            weight: Array2::from_shape_simple_fn((num_embeddings, embedding_dim), || rng.normal()),
        }
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
