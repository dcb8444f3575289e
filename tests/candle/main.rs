//! candle's tensors, layers and `VarMap`s through ckpt (the `candle` feature), with real
//! candle on the CPU: fields, layers, PyTorch's files into candle twins, training with
//! candle's optimizers, `VarMap`s.

#[path = "../common/mod.rs"]
mod common;

mod fields;
mod layers;
mod pytorch;
mod training;
mod varmap;
