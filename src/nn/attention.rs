//! [`MultiheadAttention`]: scaled dot-product attention over several heads, as
//! `torch.nn.MultiheadAttention`.

use ndarray::{
    Array1, Array2, Array3, ArrayBase, ArrayView2, ArrayView3, ArrayViewMut1, Axis, Data, Ix3, s,
};

use super::{Linear, NnError, Rng, init};
use crate::StateDict;

/// Multi-head attention with a packed input projection, as `torch.nn.MultiheadAttention` with
/// `kdim = vdim = embed_dim`, no attention dropout and no masks.
///
/// Keys: `in_proj_weight` `[3E, E]` (query, key and value projections stacked),
/// `in_proj_bias` `[3E]`, `out_proj.weight` `[E, E]`, `out_proj.bias` `[E]`.
#[derive(StateDict, Clone, Debug)]
pub struct MultiheadAttention {
    /// `[3 * embed_dim, embed_dim]`: the query, key and value projections, stacked.
    pub in_proj_weight: Array2<f32>,
    /// `[3 * embed_dim]`.
    pub in_proj_bias: Array1<f32>,
    /// The output projection.
    pub out_proj: Linear,
    #[state(skip)]
    num_heads: usize,
    #[state(skip)]
    batch_first: bool,
}

impl MultiheadAttention {
    /// A layer with PyTorch's initialisation: `in_proj_weight` Xavier-uniform, `out_proj.weight`
    /// as a [`Linear`]'s, both biases zero. Fails unless `num_heads` divides `embed_dim`, as
    /// PyTorch does.
    pub fn new(
        embed_dim: usize,
        num_heads: usize,
        batch_first: bool,
        rng: &mut Rng,
    ) -> Result<Self, NnError> {
        if num_heads == 0 || !embed_dim.is_multiple_of(num_heads) {
            return Err(NnError::config(
                "MultiheadAttention",
                format!("embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"),
            ));
        }
        let xavier = if embed_dim == 0 {
            0.0
        } else {
            (6.0 / (4 * embed_dim) as f32).sqrt()
        };
        let in_proj_weight = init::uniform((3 * embed_dim, embed_dim), xavier, rng);
        let mut out_proj = Linear::new(embed_dim, embed_dim, rng);
        out_proj.bias = Some(Array1::zeros(embed_dim));
        Ok(MultiheadAttention {
            in_proj_weight,
            in_proj_bias: Array1::zeros(3 * embed_dim),
            out_proj,
            num_heads,
            batch_first,
        })
    }

    /// The model width `E`.
    pub fn embed_dim(&self) -> usize {
        self.in_proj_weight.ncols()
    }

    /// The number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Attends from `query` (`[N, L, E]` when batch-first, else `[L, N, E]`) to `key` and
    /// `value` (`[N, S, E]` or `[S, N, E]`), returning the output (in the query's layout) and the
    /// attention weights averaged over heads (`[N, L, S]`), as PyTorch's default
    /// `need_weights=True, average_attn_weights=True`.
    pub fn forward<'a, S1, S2, S3>(
        &self,
        query: &'a ArrayBase<S1, Ix3>,
        key: &'a ArrayBase<S2, Ix3>,
        value: &'a ArrayBase<S3, Ix3>,
    ) -> Result<(Array3<f32>, Array3<f32>), NnError>
    where
        S1: Data<Elem = f32>,
        S2: Data<Elem = f32>,
        S3: Data<Elem = f32>,
    {
        let e = self.embed_dim();
        // Batch-first views of all three: [N, L, E].
        let batch_major = |x: ArrayView3<'a, f32>| -> ArrayView3<'a, f32> {
            if self.batch_first {
                x
            } else {
                x.permuted_axes([1, 0, 2])
            }
        };
        let (q, k, v) = (
            batch_major(query.view()),
            batch_major(key.view()),
            batch_major(value.view()),
        );
        let expected = if self.batch_first {
            format!("[N, *, {e}]")
        } else {
            format!("[*, N, {e}]")
        };
        let (n, l, _) = q.dim();
        let s = k.dim().1;
        for x in [&q, &k, &v] {
            if x.dim().2 != e || x.dim().0 != n {
                return Err(NnError::shape(
                    "MultiheadAttention",
                    expected.clone(),
                    x.shape(),
                ));
            }
        }
        if v.dim().1 != s {
            return Err(NnError::shape(
                "MultiheadAttention",
                format!("value with the key's length {s}"),
                value.shape(),
            ));
        }
        let heads = self.num_heads;
        let d = e / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut output = Array3::<f32>::zeros((n, l, e));
        let mut weights = Array3::<f32>::zeros((n, l, s));
        for b in 0..n {
            let qp = self.project(q.index_axis(Axis(0), b), 0);
            let kp = self.project(k.index_axis(Axis(0), b), 1);
            let vp = self.project(v.index_axis(Axis(0), b), 2);
            let mut heads_out = Array2::<f32>::zeros((l, e));
            for h in 0..heads {
                let cols = s![.., h * d..(h + 1) * d];
                let qh = qp.slice(cols).mapv(|x| x * scale);
                let mut attn = qh.dot(&kp.slice(cols).t());
                for mut row in attn.rows_mut() {
                    softmax(&mut row);
                }
                heads_out.slice_mut(cols).assign(&attn.dot(&vp.slice(cols)));
                let mut w = weights.index_axis_mut(Axis(0), b);
                w += &attn;
            }
            weights
                .index_axis_mut(Axis(0), b)
                .mapv_inplace(|x| x / heads as f32);
            let y = self.out_proj.forward(&heads_out)?;
            output.index_axis_mut(Axis(0), b).assign(&y);
        }
        let output = if self.batch_first {
            output
        } else {
            output
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
        };
        Ok((output, weights))
    }

    /// `x W_i^T + b_i` with the `i`-th (query, key, value) slice of the packed projection.
    fn project(&self, x: ArrayView2<'_, f32>, i: usize) -> Array2<f32> {
        let e = self.embed_dim();
        let rows = s![i * e..(i + 1) * e];
        x.dot(&self.in_proj_weight.slice(s![i * e..(i + 1) * e, ..]).t())
            + self.in_proj_bias.slice(rows)
    }
}

/// In place, stable: subtracts the maximum first.
fn softmax(row: &mut ArrayViewMut1<'_, f32>) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in row.iter_mut() {
        *x /= sum;
    }
}
