//! [`TransformerEncoderLayer`] and [`TransformerEncoder`], as `torch.nn`'s.

use ndarray::{Array3, ArrayBase, ArrayD, Data, Ix3};

use super::transformer::{TransformerLayerConfig, feed_forward, residual, without_weights};
use super::{Activation, Dropout, Layer, LayerNorm, Linear, Mask};
use super::{MultiheadAttention, NnError, Rng};
use crate::StateDict;

/// The masks of an encoder's forward pass, PyTorch's `src_mask` (`mask` of
/// `TransformerEncoder`) and `src_key_padding_mask`; none by default.
///
/// ```
/// use ckpt::nn::{EncoderMasks, Mask};
///
/// let padding = ndarray::array![[false, false, true], [false, false, false]];
/// let masks = EncoderMasks::default()
///     .src_mask(Mask::causal(3))
///     .src_key_padding_mask(Mask::bool(&padding));
/// assert!(masks.src_mask.is_some());
/// ```
#[derive(Clone, Debug, Default)]
pub struct EncoderMasks<'a> {
    /// `[S, S]` or `[N * nhead, S, S]`: which positions each position may attend to.
    pub src_mask: Option<Mask<'a>>,
    /// `[N, S]`: padding positions, attended to by none.
    pub src_key_padding_mask: Option<Mask<'a>>,
}

impl<'a> EncoderMasks<'a> {
    /// Sets the attention mask.
    #[must_use]
    pub fn src_mask(mut self, mask: Mask<'a>) -> Self {
        self.src_mask = Some(mask);
        self
    }

    /// Sets the key padding mask.
    #[must_use]
    pub fn src_key_padding_mask(mut self, mask: Mask<'a>) -> Self {
        self.src_key_padding_mask = Some(mask);
        self
    }
}

/// Self-attention and a feed-forward block, each with a residual connection, dropout and a
/// layer norm, as `torch.nn.TransformerEncoderLayer`.
///
/// Keys: `self_attn.*` (a [`MultiheadAttention`]'s), `linear1.*`, `linear2.*`, `norm1.*`,
/// `norm2.*`; the four dropouts (`dropout`, `dropout1`, `dropout2` and the attention's) add
/// generators to [`rng_state`](crate::StateDict::rng_state), no keys.
///
/// The forward pass is PyTorch's plain computation, which training and any call that
/// records gradients take. Under `torch.no_grad()` in evaluation mode PyTorch may take a fused
/// path instead: the same numbers within about 1e-6, except that a `TransformerEncoder`
/// given a key padding mask then runs on nested tensors and gives zeros (before its final
/// norm) at padded positions, which no later computation reads.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{EncoderMasks, Rng, TransformerEncoderLayer, TransformerLayerConfig};
/// use ndarray::Array3;
///
/// let config = TransformerLayerConfig::default().dim_feedforward(16).batch_first(true);
/// let mut layer = TransformerEncoderLayer::new(8, 2, config, &mut Rng::seed(0))?;
/// layer.eval();
/// let y = layer.forward(&Array3::<f32>::ones((2, 5, 8)), &EncoderMasks::default())?;
/// assert_eq!(y.shape(), &[2, 5, 8]);
/// assert_eq!(layer.state_dict().len(), 12);
/// # Ok::<(), ckpt::nn::NnError>(())
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct TransformerEncoderLayer {
    /// The self-attention.
    pub self_attn: MultiheadAttention,
    /// `d_model` to `dim_feedforward`.
    pub linear1: Linear,
    /// Inside the feed-forward block, after the activation.
    pub dropout: Dropout,
    /// `dim_feedforward` to `d_model`.
    pub linear2: Linear,
    /// After (post-norm) or before (pre-norm) the self-attention block.
    pub norm1: LayerNorm,
    /// After or before the feed-forward block.
    pub norm2: LayerNorm,
    /// On the self-attention block's output.
    pub dropout1: Dropout,
    /// On the feed-forward block's output.
    pub dropout2: Dropout,
    #[state(skip)]
    activation: Activation,
    #[state(skip)]
    norm_first: bool,
}

impl TransformerEncoderLayer {
    /// A layer of width `d_model` with `nhead` heads and PyTorch's initialisation of each part.
    /// Fails, as PyTorch does, unless `nhead` divides `d_model` and the dropout probability
    /// lies in `[0, 1]`.
    pub fn new(
        d_model: usize,
        nhead: usize,
        config: TransformerLayerConfig,
        rng: &mut Rng,
    ) -> Result<Self, NnError> {
        const NAME: &str = "TransformerEncoderLayer";
        Ok(TransformerEncoderLayer {
            self_attn: config.attention(NAME, d_model, nhead, rng)?,
            linear1: config.linear(d_model, config.dim_feedforward, rng),
            dropout: config.dropout_layer(NAME, rng)?,
            linear2: config.linear(config.dim_feedforward, d_model, rng),
            norm1: config.norm(d_model),
            norm2: config.norm(d_model),
            dropout1: config.dropout_layer(NAME, rng)?,
            dropout2: config.dropout_layer(NAME, rng)?,
            activation: config.activation,
            norm_first: config.norm_first,
        })
    }

    /// Gives every dropout of the layer a new generator seeded from `rng`: what a stack does
    /// to its clones, so that they do not drop the same elements.
    pub fn reseed(&mut self, rng: &mut Rng) {
        self.self_attn.reseed(rng.next_u64());
        for dropout in [&mut self.dropout, &mut self.dropout1, &mut self.dropout2] {
            dropout.reseed(rng.next_u64());
        }
    }

    /// Encodes `src` (`[N, S, E]` when batch-first, else `[S, N, E]`), as
    /// `forward(src, src_mask, src_key_padding_mask)` does in PyTorch.
    pub fn forward<S: Data<Elem = f32>>(
        &mut self,
        src: &ArrayBase<S, Ix3>,
        masks: &EncoderMasks<'_>,
    ) -> Result<Array3<f32>, NnError> {
        let TransformerEncoderLayer {
            self_attn,
            linear1,
            dropout,
            linear2,
            norm1,
            norm2,
            dropout1,
            dropout2,
            activation,
            norm_first,
        } = self;
        let options = without_weights(&masks.src_mask, &masks.src_key_padding_mask);
        let x = residual(src.to_owned(), norm1, *norm_first, |x| {
            let (y, _) = self_attn.forward(x, x, x, &options)?;
            Ok(dropout1.forward(&y))
        })?;
        residual(x, norm2, *norm_first, |x| {
            feed_forward(x, linear1, *activation, dropout, linear2, dropout2)
        })
    }
}

impl Layer for TransformerEncoderLayer {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        let x = three_d("TransformerEncoderLayer", x)?;
        Ok(self.forward(&x, &EncoderMasks::default())?.into_dyn())
    }
}

/// `num_layers` copies of a [`TransformerEncoderLayer`] applied in order, then an optional
/// [`LayerNorm`], as `torch.nn.TransformerEncoder`: keys `layers.0.*`, `layers.1.*`, …,
/// `norm.*`.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{LayerNorm, Rng, TransformerEncoder, TransformerEncoderLayer, TransformerLayerConfig};
///
/// let rng = &mut Rng::seed(0);
/// let config = TransformerLayerConfig::default().dim_feedforward(16);
/// let layer = TransformerEncoderLayer::new(8, 2, config, rng)?;
/// let encoder = TransformerEncoder::new(layer, 2, Some(LayerNorm::new(&[8])), rng);
/// let keys: Vec<_> = encoder.state_dict().keys().map(str::to_owned).collect();
/// assert_eq!(keys[0], "layers.0.self_attn.in_proj_weight");
/// assert_eq!(keys[keys.len() - 1], "norm.bias");
/// # Ok::<(), ckpt::nn::NnError>(())
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct TransformerEncoder {
    /// The layers, in order.
    pub layers: Vec<TransformerEncoderLayer>,
    /// The final norm.
    pub norm: Option<LayerNorm>,
}

impl TransformerEncoder {
    /// `num_layers` copies of `layer`, as PyTorch deep-copies it: every layer starts with the
    /// same weights. Each copy's dropouts get generators seeded from `rng`, so that the layers
    /// drop independently (PyTorch's share one global generator).
    pub fn new(
        layer: TransformerEncoderLayer,
        num_layers: usize,
        norm: Option<LayerNorm>,
        rng: &mut Rng,
    ) -> Self {
        let layers = (0..num_layers)
            .map(|_| {
                let mut copy = layer.clone();
                copy.reseed(rng);
                copy
            })
            .collect();
        TransformerEncoder { layers, norm }
    }

    /// Encodes `src` through every layer with the same masks, then the norm, as
    /// `forward(src, mask, src_key_padding_mask)` does in PyTorch.
    pub fn forward<S: Data<Elem = f32>>(
        &mut self,
        src: &ArrayBase<S, Ix3>,
        masks: &EncoderMasks<'_>,
    ) -> Result<Array3<f32>, NnError> {
        let mut x = src.to_owned();
        for layer in &mut self.layers {
            x = layer.forward(&x, masks)?;
        }
        match &self.norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }
}

impl Layer for TransformerEncoder {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        let x = three_d("TransformerEncoder", x)?;
        Ok(self.forward(&x, &EncoderMasks::default())?.into_dyn())
    }
}

/// A 3-D array from a dynamic one, or the shape error of `layer`.
pub(crate) fn three_d(layer: &'static str, x: ArrayD<f32>) -> Result<Array3<f32>, NnError> {
    let shape = x.shape().to_vec();
    x.into_dimensionality::<Ix3>()
        .map_err(|_| NnError::shape(layer, "[N, L, E] or [L, N, E]", &shape))
}
