//! [`MultiheadAttention`]: scaled dot-product attention over several heads, as
//! `torch.nn.MultiheadAttention`, with its masks, options and dropout.

use ndarray::{
    Array1, Array2, Array3, Array4, ArrayBase, ArrayD, ArrayView2, ArrayView3, ArrayViewMut1, Axis,
    Data, Ix3, concatenate, s,
};

use super::{Dropout, Linear, Mask, NnError, Rng, init};
use crate::StateDict;

/// The options of a [`MultiheadAttention`], PyTorch's constructor arguments after
/// `embed_dim` and `num_heads`; the default is PyTorch's.
///
/// ```
/// use ckpt::nn::MultiheadAttentionConfig;
///
/// // nn.MultiheadAttention(8, 2, dropout=0.1, kdim=6, batch_first=True)
/// let config = MultiheadAttentionConfig::default().dropout(0.1).kdim(6).batch_first(true);
/// assert_eq!(config.kdim, Some(6));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MultiheadAttentionConfig {
    /// The dropout probability on the attention weights, in training mode.
    pub dropout: f32,
    /// Whether the input and output projections have biases.
    pub bias: bool,
    /// Whether a learned key and value (`bias_k`, `bias_v`) join every sequence of keys.
    pub add_bias_kv: bool,
    /// Whether a zero key and value join every sequence of keys, after `bias_k`.
    pub add_zero_attn: bool,
    /// The width of the keys, when it is not `embed_dim`.
    pub kdim: Option<usize>,
    /// The width of the values, when it is not `embed_dim`.
    pub vdim: Option<usize>,
    /// Whether inputs and outputs are `[N, L, E]` rather than `[L, N, E]`.
    pub batch_first: bool,
}

impl Default for MultiheadAttentionConfig {
    fn default() -> Self {
        MultiheadAttentionConfig {
            dropout: 0.0,
            bias: true,
            add_bias_kv: false,
            add_zero_attn: false,
            kdim: None,
            vdim: None,
            batch_first: false,
        }
    }
}

impl MultiheadAttentionConfig {
    /// Sets the dropout probability on the attention weights.
    #[must_use]
    pub fn dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }

    /// Sets whether the projections have biases.
    #[must_use]
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets whether `bias_k` and `bias_v` join the keys and values.
    #[must_use]
    pub fn add_bias_kv(mut self, add_bias_kv: bool) -> Self {
        self.add_bias_kv = add_bias_kv;
        self
    }

    /// Sets whether a zero key and value join the keys and values.
    #[must_use]
    pub fn add_zero_attn(mut self, add_zero_attn: bool) -> Self {
        self.add_zero_attn = add_zero_attn;
        self
    }

    /// Sets the width of the keys.
    #[must_use]
    pub fn kdim(mut self, kdim: usize) -> Self {
        self.kdim = Some(kdim);
        self
    }

    /// Sets the width of the values.
    #[must_use]
    pub fn vdim(mut self, vdim: usize) -> Self {
        self.vdim = Some(vdim);
        self
    }

    /// Sets whether inputs and outputs are batch-first.
    #[must_use]
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }
}

/// The keyword arguments of [`MultiheadAttention::forward`], as PyTorch's `forward` takes
/// them; the default is PyTorch's (no masks, weights returned, averaged over heads).
///
/// ```
/// use ckpt::nn::{AttentionOptions, Mask};
///
/// let padding = ndarray::array![[false, false, true]];
/// let options = AttentionOptions::default()
///     .attn_mask(Mask::causal(3))
///     .key_padding_mask(Mask::bool(&padding))
///     .need_weights(false);
/// assert!(!options.need_weights);
/// ```
#[derive(Clone, Debug)]
pub struct AttentionOptions<'a> {
    /// `[N, S]`: keys to ignore in each sequence (`true`, or `-inf` added).
    pub key_padding_mask: Option<Mask<'a>>,
    /// Whether to return the attention weights. Without them PyTorch takes another path, which
    /// gives rows whose every key is masked zero weight (and so `out_proj.bias` as output) where
    /// the path with weights gives NaN; this follows both.
    pub need_weights: bool,
    /// `[L, S]`, or `[N * num_heads, L, S]` (index `n * num_heads + h`): which keys each query
    /// may attend to.
    pub attn_mask: Option<Mask<'a>>,
    /// Whether the returned weights are averaged over heads (`[N, L, S]`) rather than per head
    /// (`[N, num_heads, L, S]`).
    pub average_attn_weights: bool,
}

impl Default for AttentionOptions<'_> {
    fn default() -> Self {
        AttentionOptions {
            key_padding_mask: None,
            need_weights: true,
            attn_mask: None,
            average_attn_weights: true,
        }
    }
}

impl<'a> AttentionOptions<'a> {
    /// Sets the key padding mask, `[N, S]`.
    #[must_use]
    pub fn key_padding_mask(mut self, mask: Mask<'a>) -> Self {
        self.key_padding_mask = Some(mask);
        self
    }

    /// Sets whether the attention weights are returned.
    #[must_use]
    pub fn need_weights(mut self, need_weights: bool) -> Self {
        self.need_weights = need_weights;
        self
    }

    /// Sets the attention mask, `[L, S]` or `[N * num_heads, L, S]`.
    #[must_use]
    pub fn attn_mask(mut self, mask: Mask<'a>) -> Self {
        self.attn_mask = Some(mask);
        self
    }

    /// Sets whether the returned weights are averaged over heads.
    #[must_use]
    pub fn average_attn_weights(mut self, average: bool) -> Self {
        self.average_attn_weights = average;
        self
    }
}

/// Multi-head attention, as `torch.nn.MultiheadAttention`, with every option
/// ([`MultiheadAttentionConfig`]) and every argument of its forward pass
/// ([`AttentionOptions`]) but unbatched (2-D) inputs.
///
/// Keys, in PyTorch's order: `in_proj_weight` `[3E, E]` (query, key and value projections
/// stacked) when `kdim = vdim = E`, else `q_proj_weight` `[E, E]`, `k_proj_weight`
/// `[E, kdim]` and `v_proj_weight` `[E, vdim]`; `in_proj_bias` `[3E]`; `bias_k` and `bias_v`
/// `[1, 1, E]` with `add_bias_kv`; `out_proj.weight` `[E, E]` and `out_proj.bias` `[E]`.
/// Without `bias` there is no `in_proj_bias` and no `out_proj.bias`.
///
/// The attention dropout draws from a generator of its own, under `dropout.rng` in
/// [`rng_state`](crate::StateDict::rng_state).
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{AttentionOptions, Mask, MultiheadAttention, MultiheadAttentionConfig, Rng};
/// use ndarray::Array3;
///
/// let config = MultiheadAttentionConfig::default().batch_first(true);
/// let mut mha = MultiheadAttention::new(8, 2, config, &mut Rng::seed(0))?;
/// let keys: Vec<_> = mha.state_dict().keys().map(str::to_owned).collect();
/// assert_eq!(keys, ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]);
///
/// let x = Array3::<f32>::ones((2, 5, 8));
/// let options = AttentionOptions::default().attn_mask(Mask::causal(5));
/// let (y, weights) = mha.forward(&x, &x, &x, &options)?;
/// assert_eq!(y.shape(), &[2, 5, 8]);
/// assert_eq!(weights.unwrap().shape(), &[2, 5, 5]);
/// # Ok::<(), ckpt::nn::NnError>(())
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct MultiheadAttention {
    /// `[3 * embed_dim, embed_dim]`, when keys and values are `embed_dim` wide.
    pub in_proj_weight: Option<Array2<f32>>,
    /// `[embed_dim, embed_dim]`, when keys or values are not `embed_dim` wide.
    pub q_proj_weight: Option<Array2<f32>>,
    /// `[embed_dim, kdim]`, when keys or values are not `embed_dim` wide.
    pub k_proj_weight: Option<Array2<f32>>,
    /// `[embed_dim, vdim]`, when keys or values are not `embed_dim` wide.
    pub v_proj_weight: Option<Array2<f32>>,
    /// `[3 * embed_dim]`: the query, key and value biases, absent without `bias`.
    pub in_proj_bias: Option<Array1<f32>>,
    /// `[1, 1, embed_dim]`: the key joined to every sequence, with `add_bias_kv`.
    pub bias_k: Option<Array3<f32>>,
    /// `[1, 1, embed_dim]`: the value joined to every sequence, with `add_bias_kv`.
    pub bias_v: Option<Array3<f32>>,
    /// The output projection.
    pub out_proj: Linear,
    /// The dropout on the attention weights: no keys, a generator.
    dropout: Dropout,
    #[state(skip)]
    num_heads: usize,
    #[state(skip)]
    batch_first: bool,
    #[state(skip)]
    add_zero_attn: bool,
}

/// Queries, keys and values of one sample, projected: `[L, E]`, `[S', E]`, `[S', E]` where
/// `S'` counts `bias_k` / `bias_v`.
struct Projected {
    q: Array2<f32>,
    k: Array2<f32>,
    v: Array2<f32>,
}

impl MultiheadAttention {
    /// A layer with PyTorch's initialisation: the input projections Xavier-uniform,
    /// `out_proj.weight` as a [`Linear`]'s, both biases zero, `bias_k` and `bias_v`
    /// Xavier-normal. Fails, in PyTorch's words, unless `num_heads` divides `embed_dim` and the
    /// dropout probability lies in `[0, 1]`.
    pub fn new(
        embed_dim: usize,
        num_heads: usize,
        config: MultiheadAttentionConfig,
        rng: &mut Rng,
    ) -> Result<Self, NnError> {
        if num_heads == 0 || embed_dim % num_heads != 0 {
            return Err(NnError::config(
                "MultiheadAttention",
                "embed_dim must be divisible by num_heads",
            ));
        }
        let e = embed_dim;
        let (kdim, vdim) = (config.kdim.unwrap_or(e), config.vdim.unwrap_or(e));
        let xavier = |fan_in: usize, fan_out: usize| {
            if fan_in + fan_out == 0 {
                0.0
            } else {
                (6.0 / (fan_in + fan_out) as f32).sqrt()
            }
        };
        let separate = kdim != e || vdim != e;
        let (in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight) = if separate {
            let q = init::uniform((e, e), xavier(e, e), rng);
            let k = init::uniform((e, kdim), xavier(kdim, e), rng);
            let v = init::uniform((e, vdim), xavier(vdim, e), rng);
            (None, Some(q), Some(k), Some(v))
        } else {
            let w = init::uniform((3 * e, e), xavier(e, 3 * e), rng);
            (Some(w), None, None, None)
        };
        let mut out_proj = Linear::new(e, e, rng);
        out_proj.bias = config.bias.then(|| Array1::zeros(e));
        // xavier_normal_ of a [1, 1, E] tensor: fan_in = fan_out = E.
        let std = if e == 0 { 0.0 } else { (1.0 / e as f32).sqrt() };
        let mut bias_kv = || Array3::from_shape_simple_fn((1, 1, e), || std * rng.normal());
        let (bias_k, bias_v) = if config.add_bias_kv {
            (Some(bias_kv()), Some(bias_kv()))
        } else {
            (None, None)
        };
        let dropout = Dropout::new(config.dropout, rng.next_u64())
            .map_err(|_| NnError::config("MultiheadAttention", dropout_message(config.dropout)))?;
        Ok(MultiheadAttention {
            in_proj_weight,
            q_proj_weight,
            k_proj_weight,
            v_proj_weight,
            in_proj_bias: config.bias.then(|| Array1::zeros(3 * e)),
            bias_k,
            bias_v,
            out_proj,
            dropout,
            num_heads,
            batch_first: config.batch_first,
            add_zero_attn: config.add_zero_attn,
        })
    }

    /// Seeds the attention dropout's generator with `seed` (see [`Dropout::reseed`]).
    pub fn reseed(&mut self, seed: u64) {
        self.dropout.reseed(seed);
    }

    /// The model width `E`.
    pub fn embed_dim(&self) -> usize {
        self.out_proj.out_features()
    }

    /// The number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// The width of the keys.
    pub fn kdim(&self) -> usize {
        self.k_proj_weight
            .as_ref()
            .map_or(self.embed_dim(), Array2::ncols)
    }

    /// The width of the values.
    pub fn vdim(&self) -> usize {
        self.v_proj_weight
            .as_ref()
            .map_or(self.embed_dim(), Array2::ncols)
    }

    /// The options it was built with, as they are now.
    pub fn config(&self) -> MultiheadAttentionConfig {
        let e = self.embed_dim();
        MultiheadAttentionConfig {
            dropout: self.dropout.p(),
            bias: self.in_proj_bias.is_some(),
            add_bias_kv: self.bias_k.is_some(),
            add_zero_attn: self.add_zero_attn,
            kdim: Some(self.kdim()).filter(|&k| k != e),
            vdim: Some(self.vdim()).filter(|&v| v != e),
            batch_first: self.batch_first,
        }
    }

    /// Attends from `query` (`[N, L, E]` when batch-first, else `[L, N, E]`) to `key`
    /// (`[N, S, kdim]` or `[S, N, kdim]`) and `value` (`[N, S, vdim]` or `[S, N, vdim]`), as
    /// `forward(query, key, value, **options)` does in PyTorch.
    ///
    /// Returns the output, in the query's layout, and, when `options.need_weights`, the
    /// attention weights (after dropout, as PyTorch returns them): `[N, L, S']` averaged over
    /// heads or `[N, num_heads, L, S']` per head, where `S'` counts the keys that
    /// `add_bias_kv` and `add_zero_attn` add. The masks never mask those.
    ///
    /// In training mode the weights go through dropout; `&mut self` is for its generator.
    pub fn forward<S1, S2, S3>(
        &mut self,
        query: &ArrayBase<S1, Ix3>,
        key: &ArrayBase<S2, Ix3>,
        value: &ArrayBase<S3, Ix3>,
        options: &AttentionOptions<'_>,
    ) -> Result<(Array3<f32>, Option<ArrayD<f32>>), NnError>
    where
        S1: Data<Elem = f32>,
        S2: Data<Elem = f32>,
        S3: Data<Elem = f32>,
    {
        let (q, k, v) = (
            self.batch_major(query.view()),
            self.batch_major(key.view()),
            self.batch_major(value.view()),
        );
        let (n, l, s) = self.check_inputs(&q, &k, &v)?;
        let attn_mask = options
            .attn_mask
            .as_ref()
            .map(|mask| self.check_attn_mask(mask, n, l, s))
            .transpose()?;
        if let Some(mask) = &options.key_padding_mask {
            if mask.shape() != [n, s] {
                return Err(NnError::shape(
                    "MultiheadAttention",
                    format!("key_padding_mask [N, S] = [{n}, {s}]"),
                    mask.shape(),
                ));
            }
        }

        let (e, heads) = (self.embed_dim(), self.num_heads);
        let d = e / heads;
        let scale = (1.0 / d as f64).sqrt() as f32;
        let extra = usize::from(self.bias_k.is_some()) + usize::from(self.add_zero_attn);
        let s_all = s + extra;
        let mut output = Array3::<f32>::zeros((n, l, e));
        let mut weights = options
            .need_weights
            .then(|| Array4::<f32>::zeros((n, heads, l, s_all)));
        for b in 0..n {
            let p = self.project(
                q.index_axis(Axis(0), b),
                k.index_axis(Axis(0), b),
                v.index_axis(Axis(0), b),
            )?;
            let mut heads_out = Array2::<f32>::zeros((l, e));
            for h in 0..heads {
                let cols = s![.., h * d..(h + 1) * d];
                let (mut kh, mut vh) = (p.k.slice(cols).to_owned(), p.v.slice(cols).to_owned());
                if self.add_zero_attn {
                    kh.push_row(Array1::zeros(d).view())
                        .and_then(|()| vh.push_row(Array1::zeros(d).view()))
                        .map_err(|e| NnError::shape("MultiheadAttention", e.to_string(), &[]))?;
                }
                let mut scores = p.q.slice(cols).mapv(|x| x * scale).dot(&kh.t());
                for ((i, j), score) in scores.indexed_iter_mut() {
                    // Only the real keys are masked; bias_k and the zero key never are.
                    if j < s {
                        if let Some(mask) = &attn_mask {
                            // One plane serves every sample and head.
                            let plane = if mask.dim().0 == 1 { 0 } else { b * heads + h };
                            let index = [plane, i, j];
                            *score += mask[index];
                        }
                        if let Some(mask) = &options.key_padding_mask {
                            // Within the shape checked above.
                            *score += mask.additive(&[b, j]).unwrap_or(0.0);
                        }
                    }
                }
                for mut row in scores.rows_mut() {
                    softmax(&mut row, !options.need_weights);
                }
                let attn = self.dropout.forward(&scores);
                heads_out.slice_mut(cols).assign(&attn.dot(&vh));
                if let Some(w) = &mut weights {
                    w.slice_mut(s![b, h, .., ..]).assign(&attn);
                }
            }
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
        let weights = weights.map(|w| {
            if options.average_attn_weights {
                w.sum_axis(Axis(1)).mapv(|x| x / heads as f32).into_dyn()
            } else {
                w.into_dyn()
            }
        });
        Ok((output, weights))
    }

    /// A batch-first view.
    fn batch_major<'x>(&self, x: ArrayView3<'x, f32>) -> ArrayView3<'x, f32> {
        if self.batch_first {
            x
        } else {
            x.permuted_axes([1, 0, 2])
        }
    }

    /// `(N, L, S)` of batch-first inputs, or the shape error.
    fn check_inputs(
        &self,
        q: &ArrayView3<'_, f32>,
        k: &ArrayView3<'_, f32>,
        v: &ArrayView3<'_, f32>,
    ) -> Result<(usize, usize, usize), NnError> {
        let (n, l, _) = q.dim();
        let s = k.dim().1;
        let layout = |width: usize, len: &str| {
            if self.batch_first {
                format!("[{n}, {len}, {width}]")
            } else {
                format!("[{len}, {n}, {width}]")
            }
        };
        let original = |x: &ArrayView3<'_, f32>| self.batch_major(x.view()).shape().to_vec();
        for (x, width, what, len) in [
            (q, self.embed_dim(), "query", "L"),
            (k, self.kdim(), "key", "S"),
            (v, self.vdim(), "value", &*format!("{s}")),
        ] {
            if x.dim().0 != n || x.dim().2 != width || (what == "value" && x.dim().1 != s) {
                return Err(NnError::shape(
                    "MultiheadAttention",
                    format!("{what} {}", layout(width, len)),
                    &original(x),
                ));
            }
        }
        Ok((n, l, s))
    }

    /// The attention mask as additive scores, `[1, L, S]` or `[N * heads, L, S]`, or the shape
    /// error.
    fn check_attn_mask(
        &self,
        mask: &Mask<'_>,
        n: usize,
        l: usize,
        s: usize,
    ) -> Result<Array3<f32>, NnError> {
        let shape = mask.shape();
        let batched = n * self.num_heads;
        let planes = match *shape {
            [ml, ms] if ml == l && ms == s => 1,
            [mb, ml, ms] if mb == batched && ml == l && ms == s => batched,
            _ => {
                return Err(NnError::shape(
                    "MultiheadAttention",
                    format!(
                        "attn_mask [L, S] = [{l}, {s}] or [N * num_heads, L, S] = [{batched}, {l}, {s}]"
                    ),
                    shape,
                ));
            }
        };
        Ok(Array3::from_shape_fn((planes, l, s), |(p, i, j)| {
            let value = if shape.len() == 2 {
                mask.additive(&[i, j])
            } else {
                mask.additive(&[p, i, j])
            };
            // Within the shape just matched.
            value.unwrap_or(0.0)
        }))
    }

    /// One sample's projected queries, keys and values, with `bias_k` and `bias_v` joined.
    fn project(
        &self,
        query: ArrayView2<'_, f32>,
        key: ArrayView2<'_, f32>,
        value: ArrayView2<'_, f32>,
    ) -> Result<Projected, NnError> {
        let e = self.embed_dim();
        let bias = |i: usize| {
            self.in_proj_bias
                .as_ref()
                .map(|b| b.slice(s![i * e..(i + 1) * e]))
        };
        let weight = |i: usize| match (&self.in_proj_weight, i) {
            (Some(w), _) => Some(w.slice(s![i * e..(i + 1) * e, ..])),
            (None, 0) => self.q_proj_weight.as_ref().map(|w| w.view()),
            (None, 1) => self.k_proj_weight.as_ref().map(|w| w.view()),
            (None, _) => self.v_proj_weight.as_ref().map(|w| w.view()),
        };
        let linear = |x: ArrayView2<'_, f32>, i: usize| -> Result<Array2<f32>, NnError> {
            let w = weight(i).ok_or_else(|| {
                NnError::config(
                    "MultiheadAttention",
                    "neither in_proj_weight nor q/k/v_proj_weight is set",
                )
            })?;
            let mut y = x.dot(&w.t());
            if let Some(b) = bias(i) {
                y += &b;
            }
            Ok(y)
        };
        let (q, mut k, mut v) = (linear(query, 0)?, linear(key, 1)?, linear(value, 2)?);
        if let (Some(bk), Some(bv)) = (&self.bias_k, &self.bias_v) {
            let join = |x: Array2<f32>, extra: &Array3<f32>| {
                let row = extra.to_shape((1, e)).map_err(|err| err.to_string())?;
                concatenate(Axis(0), &[x.view(), row.view()]).map_err(|err| err.to_string())
            };
            let error = |why: String| NnError::shape("MultiheadAttention", why, &[1, 1, e]);
            k = join(k, bk).map_err(error)?;
            v = join(v, bv).map_err(error)?;
        }
        Ok(Projected { q, k, v })
    }
}

/// PyTorch's message for a dropout probability out of range.
fn dropout_message(p: f32) -> String {
    format!("dropout probability has to be between 0 and 1, but got {p}")
}

/// In place and stable (subtracts the maximum first). A row whose every score is `-inf` becomes
/// NaN, as PyTorch's `softmax` makes it, or with `safe` zeros, as PyTorch's
/// `scaled_dot_product_attention` (the path without weights) makes it.
fn softmax(row: &mut ArrayViewMut1<'_, f32>, safe: bool) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if safe && max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in row.iter_mut() {
        *x /= sum;
    }
}
