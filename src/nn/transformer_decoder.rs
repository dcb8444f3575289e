//! [`TransformerDecoderLayer`] and [`TransformerDecoder`], as `torch.nn`'s.

use ndarray::{Array3, ArrayBase, Data, Ix3};

use super::transformer::{TransformerLayerConfig, feed_forward, residual, without_weights};
use super::{Activation, Dropout, LayerNorm, Linear, Mask};
use super::{MultiheadAttention, NnError, Rng};
use crate::StateDict;

/// The masks of a decoder's forward pass, PyTorch's `tgt_mask`, `memory_mask`,
/// `tgt_key_padding_mask` and `memory_key_padding_mask`; none by default.
///
/// ```
/// use ckpt::nn::{DecoderMasks, Mask};
///
/// let masks = DecoderMasks::default().tgt_mask(Mask::causal(4));
/// assert!(masks.memory_mask.is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct DecoderMasks<'a> {
    /// `[T, T]` or `[N * nhead, T, T]`: which target positions each may attend to.
    pub tgt_mask: Option<Mask<'a>>,
    /// `[T, S]` or `[N * nhead, T, S]`: which memory positions each target position may
    /// attend to.
    pub memory_mask: Option<Mask<'a>>,
    /// `[N, T]`: target padding.
    pub tgt_key_padding_mask: Option<Mask<'a>>,
    /// `[N, S]`: memory padding.
    pub memory_key_padding_mask: Option<Mask<'a>>,
}

impl<'a> DecoderMasks<'a> {
    /// Sets the target's attention mask.
    #[must_use]
    pub fn tgt_mask(mut self, mask: Mask<'a>) -> Self {
        self.tgt_mask = Some(mask);
        self
    }

    /// Sets the mask over the memory.
    #[must_use]
    pub fn memory_mask(mut self, mask: Mask<'a>) -> Self {
        self.memory_mask = Some(mask);
        self
    }

    /// Sets the target's key padding mask.
    #[must_use]
    pub fn tgt_key_padding_mask(mut self, mask: Mask<'a>) -> Self {
        self.tgt_key_padding_mask = Some(mask);
        self
    }

    /// Sets the memory's key padding mask.
    #[must_use]
    pub fn memory_key_padding_mask(mut self, mask: Mask<'a>) -> Self {
        self.memory_key_padding_mask = Some(mask);
        self
    }
}

/// Self-attention, attention over the encoder's output (the memory) and a feed-forward
/// block, each with a residual connection, dropout and a layer norm, as
/// `torch.nn.TransformerDecoderLayer`.
///
/// Keys: `self_attn.*`, `multihead_attn.*` (each a [`MultiheadAttention`]'s), `linear1.*`,
/// `linear2.*`, `norm1.*`, `norm2.*`, `norm3.*`; the dropouts add generators to
/// [`rng_state`](crate::StateDict::rng_state), no keys. A query whose every key is masked
/// gets zero attention, as in PyTorch's plain computation.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{DecoderMasks, Mask, Rng, TransformerDecoderLayer, TransformerLayerConfig};
/// use ndarray::Array3;
///
/// let config = TransformerLayerConfig::default().dim_feedforward(16).batch_first(true);
/// let mut layer = TransformerDecoderLayer::new(8, 2, config, &mut Rng::seed(0))?;
/// layer.eval();
/// let (tgt, memory) = (Array3::<f32>::ones((2, 4, 8)), Array3::<f32>::ones((2, 5, 8)));
/// let y = layer.forward(&tgt, &memory, &DecoderMasks::default().tgt_mask(Mask::causal(4)))?;
/// assert_eq!(y.shape(), &[2, 4, 8]);
/// assert_eq!(layer.state_dict().len(), 18);
/// # Ok::<(), ckpt::nn::NnError>(())
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct TransformerDecoderLayer {
    /// The self-attention over the target.
    pub self_attn: MultiheadAttention,
    /// The attention from the target to the memory.
    pub multihead_attn: MultiheadAttention,
    /// `d_model` to `dim_feedforward`.
    pub linear1: Linear,
    /// Inside the feed-forward block, after the activation.
    pub dropout: Dropout,
    /// `dim_feedforward` to `d_model`.
    pub linear2: Linear,
    /// With the self-attention block.
    pub norm1: LayerNorm,
    /// With the memory attention block.
    pub norm2: LayerNorm,
    /// With the feed-forward block.
    pub norm3: LayerNorm,
    /// On the self-attention block's output.
    pub dropout1: Dropout,
    /// On the memory attention block's output.
    pub dropout2: Dropout,
    /// On the feed-forward block's output.
    pub dropout3: Dropout,
    #[state(skip)]
    activation: Activation,
    #[state(skip)]
    norm_first: bool,
}

impl TransformerDecoderLayer {
    /// A layer of width `d_model` with `nhead` heads and PyTorch's initialisation of each part.
    /// Fails, as PyTorch does, unless `nhead` divides `d_model` and the dropout probability
    /// lies in `[0, 1]`.
    pub fn new(
        d_model: usize,
        nhead: usize,
        config: TransformerLayerConfig,
        rng: &mut Rng,
    ) -> Result<Self, NnError> {
        const NAME: &str = "TransformerDecoderLayer";
        Ok(TransformerDecoderLayer {
            self_attn: config.attention(NAME, d_model, nhead, rng)?,
            multihead_attn: config.attention(NAME, d_model, nhead, rng)?,
            linear1: config.linear(d_model, config.dim_feedforward, rng),
            dropout: config.dropout_layer(NAME, rng)?,
            linear2: config.linear(config.dim_feedforward, d_model, rng),
            norm1: config.norm(d_model),
            norm2: config.norm(d_model),
            norm3: config.norm(d_model),
            dropout1: config.dropout_layer(NAME, rng)?,
            dropout2: config.dropout_layer(NAME, rng)?,
            dropout3: config.dropout_layer(NAME, rng)?,
            activation: config.activation,
            norm_first: config.norm_first,
        })
    }

    /// Gives every dropout of the layer a new generator seeded from `rng` (see
    /// [`TransformerEncoderLayer::reseed`](super::TransformerEncoderLayer::reseed)).
    pub fn reseed(&mut self, rng: &mut Rng) {
        self.self_attn.reseed(rng.next_u64());
        self.multihead_attn.reseed(rng.next_u64());
        for dropout in [
            &mut self.dropout,
            &mut self.dropout1,
            &mut self.dropout2,
            &mut self.dropout3,
        ] {
            dropout.reseed(rng.next_u64());
        }
    }

    /// Decodes `tgt` (`[N, T, E]` when batch-first, else `[T, N, E]`) attending to `memory`
    /// (`[N, S, E]` or `[S, N, E]`), as `forward(tgt, memory, **masks)` does in PyTorch.
    pub fn forward<S1, S2>(
        &mut self,
        tgt: &ArrayBase<S1, Ix3>,
        memory: &ArrayBase<S2, Ix3>,
        masks: &DecoderMasks<'_>,
    ) -> Result<Array3<f32>, NnError>
    where
        S1: Data<Elem = f32>,
        S2: Data<Elem = f32>,
    {
        let TransformerDecoderLayer {
            self_attn,
            multihead_attn,
            linear1,
            dropout,
            linear2,
            norm1,
            norm2,
            norm3,
            dropout1,
            dropout2,
            dropout3,
            activation,
            norm_first,
        } = self;
        let self_options = without_weights(&masks.tgt_mask, &masks.tgt_key_padding_mask);
        let memory_options = without_weights(&masks.memory_mask, &masks.memory_key_padding_mask);
        let x = residual(tgt.to_owned(), norm1, *norm_first, |x| {
            let (y, _) = self_attn.forward(x, x, x, &self_options)?;
            Ok(dropout1.forward(&y))
        })?;
        let x = residual(x, norm2, *norm_first, |x| {
            let (y, _) = multihead_attn.forward(x, memory, memory, &memory_options)?;
            Ok(dropout2.forward(&y))
        })?;
        residual(x, norm3, *norm_first, |x| {
            feed_forward(x, linear1, *activation, dropout, linear2, dropout3)
        })
    }
}

/// `num_layers` copies of a [`TransformerDecoderLayer`] applied in order, then an optional
/// [`LayerNorm`], as `torch.nn.TransformerDecoder`: keys `layers.0.*`, …, `norm.*`.
#[derive(StateDict, Clone, Debug)]
pub struct TransformerDecoder {
    /// The layers, in order.
    pub layers: Vec<TransformerDecoderLayer>,
    /// The final norm.
    pub norm: Option<LayerNorm>,
}

impl TransformerDecoder {
    /// `num_layers` copies of `layer`, with the same weights, as PyTorch makes them; each
    /// copy's dropouts get generators seeded from `rng`.
    pub fn new(
        layer: TransformerDecoderLayer,
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
        TransformerDecoder { layers, norm }
    }

    /// Decodes `tgt` through every layer with the same memory and masks, then the norm, as
    /// `forward(tgt, memory, **masks)` does in PyTorch.
    pub fn forward<S1, S2>(
        &mut self,
        tgt: &ArrayBase<S1, Ix3>,
        memory: &ArrayBase<S2, Ix3>,
        masks: &DecoderMasks<'_>,
    ) -> Result<Array3<f32>, NnError>
    where
        S1: Data<Elem = f32>,
        S2: Data<Elem = f32>,
    {
        let mut x = tgt.to_owned();
        for layer in &mut self.layers {
            x = layer.forward(&x, memory, masks)?;
        }
        match &self.norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }
}
