//! What the transformer layers share: their options ([`TransformerLayerConfig`]) and the
//! pieces of their forward passes.

use ndarray::{Array3, ArrayBase, Data, Ix3};

use super::{Activation, AttentionOptions, Dropout, LayerNorm, Linear, Mask};
use super::{MultiheadAttention, MultiheadAttentionConfig, NnError, Rng};

/// The options of a [`TransformerEncoderLayer`](super::TransformerEncoderLayer) or
/// [`TransformerDecoderLayer`](super::TransformerDecoderLayer), PyTorch's constructor
/// arguments after `d_model` and `nhead`; the default is PyTorch's.
///
/// ```
/// use ckpt::nn::{Activation, TransformerLayerConfig};
///
/// // nn.TransformerEncoderLayer(512, 8, dim_feedforward=1024, activation="gelu",
/// //                            batch_first=True, norm_first=True)
/// let config = TransformerLayerConfig::default()
///     .dim_feedforward(1024)
///     .activation(Activation::Gelu)
///     .batch_first(true)
///     .norm_first(true);
/// assert_eq!(config.dropout, 0.1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TransformerLayerConfig {
    /// The width of the feed-forward block.
    pub dim_feedforward: usize,
    /// The dropout probability everywhere in the layer (attention weights included), in
    /// training mode.
    pub dropout: f32,
    /// The feed-forward block's activation.
    pub activation: Activation,
    /// The layer norms' eps.
    pub layer_norm_eps: f32,
    /// Whether inputs and outputs are `[N, L, E]` rather than `[L, N, E]`.
    pub batch_first: bool,
    /// Whether each block normalises its input (pre-norm) rather than its residual sum
    /// (post-norm, the original transformer).
    pub norm_first: bool,
    /// Whether the linear layers and layer norms have biases.
    pub bias: bool,
}

impl Default for TransformerLayerConfig {
    fn default() -> Self {
        TransformerLayerConfig {
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: Activation::Relu,
            layer_norm_eps: 1e-5,
            batch_first: false,
            norm_first: false,
            bias: true,
        }
    }
}

impl TransformerLayerConfig {
    /// Sets the feed-forward width.
    #[must_use]
    pub fn dim_feedforward(mut self, dim_feedforward: usize) -> Self {
        self.dim_feedforward = dim_feedforward;
        self
    }

    /// Sets the dropout probability.
    #[must_use]
    pub fn dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }

    /// Sets the activation.
    #[must_use]
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the layer norms' eps.
    #[must_use]
    pub fn layer_norm_eps(mut self, eps: f32) -> Self {
        self.layer_norm_eps = eps;
        self
    }

    /// Sets whether inputs and outputs are batch-first.
    #[must_use]
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }

    /// Sets pre-norm (`true`) or post-norm (`false`).
    #[must_use]
    pub fn norm_first(mut self, norm_first: bool) -> Self {
        self.norm_first = norm_first;
        self
    }

    /// Sets whether there are biases.
    #[must_use]
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// The attention every layer holds, built with these options.
    pub(crate) fn attention(
        &self,
        layer: &'static str,
        d_model: usize,
        nhead: usize,
        rng: &mut Rng,
    ) -> Result<MultiheadAttention, NnError> {
        let config = MultiheadAttentionConfig::default()
            .dropout(self.dropout)
            .bias(self.bias)
            .batch_first(self.batch_first);
        MultiheadAttention::new(d_model, nhead, config, rng).map_err(|e| match e {
            NnError::Config { message, .. } => NnError::config(layer, message),
            other => other,
        })
    }

    /// A linear layer with these options' bias.
    pub(crate) fn linear(&self, inputs: usize, outputs: usize, rng: &mut Rng) -> Linear {
        let linear = Linear::new(inputs, outputs, rng);
        if self.bias {
            linear
        } else {
            linear.without_bias()
        }
    }

    /// A layer norm with these options' eps and bias.
    pub(crate) fn norm(&self, d_model: usize) -> LayerNorm {
        let norm = LayerNorm::new(&[d_model]).eps(self.layer_norm_eps);
        if self.bias { norm } else { norm.without_bias() }
    }

    /// A dropout with these options' probability, seeded from `rng`.
    pub(crate) fn dropout_layer(
        &self,
        layer: &'static str,
        rng: &mut Rng,
    ) -> Result<Dropout, NnError> {
        Dropout::new(self.dropout, rng.next_u64()).map_err(|e| match e {
            NnError::Config { message, .. } => NnError::config(layer, message),
            other => other,
        })
    }
}

/// What a transformer layer's attention is called with: the masks, no weights (so a query
/// whose every key is masked gets zero attention, as in PyTorch's layers).
pub(crate) fn without_weights<'m>(
    attn_mask: &'m Option<Mask<'_>>,
    key_padding_mask: &'m Option<Mask<'_>>,
) -> AttentionOptions<'m> {
    AttentionOptions {
        key_padding_mask: key_padding_mask.as_ref().map(Mask::view),
        need_weights: false,
        attn_mask: attn_mask.as_ref().map(Mask::view),
        average_attn_weights: true,
    }
}

/// `linear2(dropout(activation(linear1(x))))`, then `dropout_out`: the feed-forward block.
pub(crate) fn feed_forward<S: Data<Elem = f32>>(
    x: &ArrayBase<S, Ix3>,
    linear1: &Linear,
    activation: Activation,
    dropout: &mut Dropout,
    linear2: &Linear,
    dropout_out: &mut Dropout,
) -> Result<Array3<f32>, NnError> {
    let h = linear1.forward(x)?.mapv(activation.function());
    let y = linear2.forward(&dropout.forward(&h))?;
    Ok(dropout_out.forward(&y))
}

/// `x + block(x)` in post-norm order: `norm(x + block(x))`; in pre-norm: `x + block(norm(x))`.
pub(crate) fn residual(
    x: Array3<f32>,
    norm: &LayerNorm,
    norm_first: bool,
    block: impl FnOnce(&Array3<f32>) -> Result<Array3<f32>, NnError>,
) -> Result<Array3<f32>, NnError> {
    if norm_first {
        let y = block(&norm.forward(&x)?)?;
        Ok(x + y)
    } else {
        let y = block(&x)?;
        norm.forward(&(x + y))
    }
}
