//! candle models for the candle tests: the twins of the PyTorch nets in
//! `tests/python/make_candle_fixtures.py`, a small MLP, and conversions for comparing outputs.

use ckpt::StateDict;
use ckpt::candle_core::{DType, Device, Module, ModuleT, Result, Tensor};
use ckpt::candle_nn::{
    self, BatchNorm, BatchNormConfig, Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, ConvTranspose2d,
    ConvTranspose2dConfig, Embedding, LayerNorm, Linear, RmsNorm, VarBuilder,
};
use ckpt::tensor::TensorView;

/// `tests/fixtures/candle/NAME`.
pub fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/candle/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// PyTorch's `ConvNet`: conv, batch norm, a rectifier, transposed conv, linear head.
#[derive(StateDict)]
pub struct ConvNet {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub up: ConvTranspose2d,
    pub fc: Linear,
}

impl ConvNet {
    /// Inputs of shape `[batch, 3, 4, 4]`; `classes` outputs.
    pub fn new(vb: VarBuilder, classes: usize) -> Result<Self> {
        let padded = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let doubled = ConvTranspose2dConfig {
            stride: 2,
            ..Default::default()
        };
        Ok(ConvNet {
            conv: candle_nn::conv2d(3, 4, 3, padded, vb.pp("conv"))?,
            bn: candle_nn::batch_norm(4, BatchNormConfig::default(), vb.pp("bn"))?,
            up: candle_nn::conv_transpose2d(4, 2, 2, doubled, vb.pp("up"))?,
            fc: candle_nn::linear(2 * 8 * 8, classes, vb.pp("fc"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.bn.forward_t(&self.conv.forward(x)?, train)?.relu()?;
        self.fc.forward(&self.up.forward(&x)?.flatten_from(1)?)
    }
}

/// PyTorch's `SeqNet`: embedding, conv over time, layer norm, RMS norm, head without bias.
#[derive(StateDict)]
pub struct SeqNet {
    pub embed: Embedding,
    pub conv: Conv1d,
    pub norm: LayerNorm,
    pub rms: RmsNorm,
    pub head: Linear,
}

impl SeqNet {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let padded = Conv1dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(SeqNet {
            embed: candle_nn::embedding(16, 8, vb.pp("embed"))?,
            conv: candle_nn::conv1d(8, 8, 3, padded, vb.pp("conv"))?,
            norm: candle_nn::layer_norm(8, 1e-5, vb.pp("norm"))?,
            rms: candle_nn::rms_norm(8, 1e-5, vb.pp("rms"))?,
            head: candle_nn::linear_no_bias(8, 5, vb.pp("head"))?,
        })
    }

    /// Token ids of shape `[batch, time]` (`U32`) to logits `[batch, time, 5]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.embed.forward(ids)?;
        let x = self.conv.forward(&x.transpose(1, 2)?)?.transpose(1, 2)?;
        self.head
            .forward(&self.rms.forward(&self.norm.forward(&x)?)?)
    }
}

/// An MLP: `hidden` rectified units between two linear layers.
#[derive(StateDict)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    pub fn new(vb: VarBuilder, inputs: usize, hidden: usize, outputs: usize) -> Result<Self> {
        Ok(Mlp {
            fc1: candle_nn::linear(inputs, hidden, vb.pp("fc1"))?,
            fc2: candle_nn::linear(hidden, outputs, vb.pp("fc2"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.relu()?)
    }
}

/// A ckpt tensor (of any dtype) as a candle `F32` tensor on the CPU, through `f64` values.
pub fn to_candle(view: &TensorView<'_>) -> Tensor {
    let values: Vec<f32> = view
        .to_f64_vec()
        .unwrap()
        .iter()
        .map(|&x| x as f32)
        .collect();
    Tensor::from_vec(values, view.shape(), &Device::Cpu).unwrap()
}

/// Every value of a candle tensor, flattened, as `f32`.
pub fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The largest absolute difference between two candle tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The little-endian bytes of every tensor of a model's state dict, by key: what a round trip
/// must preserve exactly.
pub fn state_bytes<M: StateDict>(model: &M) -> Vec<(String, Vec<u8>)> {
    model
        .state_dict()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_le_bytes().unwrap().into_owned()))
        .collect()
}
