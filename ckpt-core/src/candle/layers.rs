//! [`StateDict`] for the `candle_nn` layers, with PyTorch's keys: a struct of candle layers
//! derives `StateDict` and loads the state dict of its PyTorch twin.
//!
//! The layers keep their tensors private, so each is reached through its accessor and, where a
//! tensor cannot be written in place, replaced by making the layer anew around the new tensor.
//! `LSTM` and `GRU` have no accessors at all: build them from a `VarMap` and save or load that
//! (its keys, `weight_ih_l0` and the rest, are PyTorch's).

use candle_core::Tensor as CandleTensor;
use candle_nn::{
    BatchNorm, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, Embedding, LayerNorm, Linear,
    RmsNorm,
};

use super::fields::{visit_leaf, visit_tensor};
use super::leaf::candle_error;
use crate::device::{Device, DeviceError};
use crate::dtype::DType;
use crate::state::{KeyPath, Leaf, Role, Visitor, VisitorMut};
use crate::state_dict::StateDict;
use crate::tensor::{ForeignTensor, TensorError, TensorView};

/// Makes the layer anew around a tensor that could not be written in place.
type With<L> = fn(&L, CandleTensor) -> Result<L, TensorError>;

/// Visits `tensor` under the key segment `name`.
fn part<'a>(
    name: &str,
    tensor: &CandleTensor,
    path: &mut KeyPath,
    role: Role,
    visitor: &mut dyn Visitor<'a>,
) {
    path.push(name);
    visit_tensor(tensor, path, role, visitor);
    path.pop();
}

/// Visits the tensor `current` of `layer` under `name`, as a leaf.
fn part_mut<L>(
    layer: &mut L,
    name: &str,
    current: CandleTensor,
    with: With<L>,
    path: &mut KeyPath,
    role: Role,
    visitor: &mut dyn VisitorMut,
) {
    path.push(name);
    visit_leaf(layer, current, with, path, role, visitor);
    path.pop();
}

/// A layer that cannot be made anew from its public parts, for a tensor that cannot be
/// written in place either (one not laid out contiguously, which no `candle_nn` builder makes).
fn cannot_remake(layer: &str, tensor: &CandleTensor) -> TensorError {
    candle_error(tensor)(candle_core::Error::Msg(format!(
        "candle's {layer} cannot be rebuilt around a new tensor (a setting it was built with is \
         private), and this one is not contiguous, so it cannot be written in place; build the \
         layer from contiguous tensors or a VarMap"
    )))
}

/// `weight` and, if there is one, `bias`: PyTorch's `nn.Linear`.
impl StateDict for Linear {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        part("weight", self.weight(), path, role, visitor);
        if let Some(bias) = self.bias() {
            part("bias", bias, path, role, visitor);
        }
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        let weight = self.weight().clone();
        let with: With<Self> = |l, w| Ok(Linear::new(w, l.bias().cloned()));
        part_mut(self, "weight", weight, with, path, role, visitor);
        if let Some(bias) = self.bias().cloned() {
            let with: With<Self> = |l, b| Ok(Linear::new(l.weight().clone(), Some(b)));
            part_mut(self, "bias", bias, with, path, role, visitor);
        }
    }
}

/// Implements `StateDict` for a convolution: `weight` and, if there is one, `bias`, as
/// PyTorch's `nn.Conv1d`, `nn.Conv2d`, `nn.ConvTranspose1d` and `nn.ConvTranspose2d`.
macro_rules! convolution {
    ($($Conv:ident),*) => {$(
        impl StateDict for $Conv {
            fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
                part("weight", self.weight(), path, role, visitor);
                if let Some(bias) = self.bias() {
                    part("bias", bias, path, role, visitor);
                }
            }

            fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
                let weight = self.weight().clone();
                let with: With<Self> = |c, w| Ok($Conv::new(w, c.bias().cloned(), *c.config()));
                part_mut(self, "weight", weight, with, path, role, visitor);
                if let Some(bias) = self.bias().cloned() {
                    let with: With<Self> =
                        |c, b| Ok($Conv::new(c.weight().clone(), Some(b), *c.config()));
                    part_mut(self, "bias", bias, with, path, role, visitor);
                }
            }
        }
    )*};
}

convolution!(Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d);

/// `weight`, the embedding matrix: PyTorch's `nn.Embedding`.
impl StateDict for Embedding {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        part("weight", self.embeddings(), path, role, visitor);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        let weight = self.embeddings().clone();
        let with: With<Self> = |e, w| Ok(Embedding::new(w, e.hidden_size()));
        part_mut(self, "weight", weight, with, path, role, visitor);
    }
}

/// `weight` and, if there is one, `bias`: PyTorch's `nn.LayerNorm` (and `nn.RMSNorm` for a
/// layer norm made with `LayerNorm::rms_norm`).
impl StateDict for LayerNorm {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        part("weight", self.weight(), path, role, visitor);
        if let Some(bias) = self.bias() {
            part("bias", bias, path, role, visitor);
        }
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        /// The layer made anew with `weight` and `bias`, where its public constructors can:
        /// all but an RMS norm with a bias, which only `candle_nn::layer_norm` makes.
        fn remake(
            norm: &LayerNorm,
            weight: CandleTensor,
            bias: Option<CandleTensor>,
        ) -> Result<LayerNorm, TensorError> {
            match (norm.remove_mean(), bias) {
                (true, Some(bias)) => Ok(LayerNorm::new(weight, bias, norm.eps())),
                (true, None) => Ok(LayerNorm::new_no_bias(weight, norm.eps())),
                (false, None) => Ok(LayerNorm::rms_norm(weight, norm.eps())),
                (false, Some(_)) => Err(cannot_remake("LayerNorm", &weight)),
            }
        }
        let weight = self.weight().clone();
        let with: With<Self> = |n, w| remake(n, w, n.bias().cloned());
        part_mut(self, "weight", weight, with, path, role, visitor);
        if let Some(bias) = self.bias().cloned() {
            let with: With<Self> = |n, b| remake(n, n.weight().clone(), Some(b));
            part_mut(self, "bias", bias, with, path, role, visitor);
        }
    }
}

/// `weight`: PyTorch's `nn.RMSNorm`.
impl StateDict for RmsNorm {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        part("weight", self.weight(), path, role, visitor);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        let weight = self.weight().clone();
        let with: With<Self> = |n, w| Ok(RmsNorm::new(w, n.eps()));
        part_mut(self, "weight", weight, with, path, role, visitor);
    }
}

/// PyTorch's `nn.BatchNorm1d`/`2d` keys: `weight` and `bias` (if affine), then the buffers
/// `running_mean`, `running_var` and `num_batches_tracked`.
///
/// candle's `BatchNorm` keeps no batch counter: `num_batches_tracked` loads from a PyTorch
/// state dict and is dropped, and saves as 0. PyTorch reads the counter only when its momentum
/// is `None` (a cumulative average), which candle's `BatchNorm` cannot be.
impl StateDict for BatchNorm {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        if let Some((weight, bias)) = self.weight_and_bias() {
            part("weight", weight, path, role, visitor);
            part("bias", bias, path, role, visitor);
        }
        let buffer = role.at_least(Role::Buffer);
        part("running_mean", self.running_mean(), path, buffer, visitor);
        part("running_var", self.running_var(), path, buffer, visitor);
        path.push("num_batches_tracked");
        visitor.tensor(path.as_str(), Counter.view(), buffer);
        path.pop();
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        if let Some((weight, bias)) = self.weight_and_bias() {
            let (weight, bias) = (weight.clone(), bias.clone());
            let with: With<Self> = |n, _| Err(cannot_remake("BatchNorm", n.running_mean()));
            part_mut(self, "weight", weight, with, path, role, visitor);
            part_mut(self, "bias", bias, with, path, role, visitor);
        }
        // The running statistics are variables, always written in place.
        let buffer = role.at_least(Role::Buffer);
        let with: With<Self> = |n, _| Err(cannot_remake("BatchNorm", n.running_mean()));
        let mean = self.running_mean().clone();
        part_mut(self, "running_mean", mean, with, path, buffer, visitor);
        let var = self.running_var().clone();
        part_mut(self, "running_var", var, with, path, buffer, visitor);
        path.push("num_batches_tracked");
        visitor.tensor(path.as_str(), &mut Counter, buffer);
        path.pop();
    }
}

/// PyTorch's `num_batches_tracked` for a layer that keeps none: a 0-dimensional `I64` zero
/// that takes any such value and drops it. Each view is a tensor of its own, so that a `.pt`
/// file never ties the counters of two layers together.
struct Counter;

impl ForeignTensor for Counter {
    fn shape(&self) -> &[usize] {
        &[]
    }

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn stream_le_bytes(&self, sink: &mut dyn FnMut(&[u8])) -> Result<(), DeviceError> {
        sink(&0i64.to_le_bytes());
        Ok(())
    }

    fn storage_id(&self) -> Option<(usize, Vec<isize>)> {
        None
    }
}

impl Leaf for Counter {
    fn view(&self) -> TensorView<'_> {
        TensorView::foreign(Counter, DType::I64)
    }

    fn copy_from(&mut self, src: &TensorView<'_>) -> Result<(), TensorError> {
        if src.shape().is_empty() {
            Ok(())
        } else {
            Err(TensorError::Shape {
                expected: "shape []".to_owned(),
                actual: src.shape().to_vec(),
            })
        }
    }
}
