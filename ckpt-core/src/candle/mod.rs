//! candle's tensors, variables, layers and `VarMap`s as state dicts (the `candle` feature).
//!
//! With the feature, `candle_core::Tensor`, `candle_core::Var`, the `candle_nn` layers
//! (`Linear`, `Conv1d`, `Conv2d`, `ConvTranspose1d`, `ConvTranspose2d`, `Embedding`,
//! `LayerNorm`, `RmsNorm`, `BatchNorm`) and `candle_nn::VarMap` implement
//! [`StateDict`](crate::StateDict), with PyTorch's keys. A struct of them derives `StateDict`,
//! saves to every format and loads from every format, with PyTorch's strict and non-strict
//! semantics, key maps, dtype casts, and ckpt's report of what did not match:
//!
//! ```
//! # use ckpt_core as ckpt;
//! use ckpt::candle_core::{DType, Device, Tensor, Var};
//! use ckpt::candle_nn::{Linear, VarBuilder, VarMap};
//! use ckpt::StateDict;
//!
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let fc = ckpt::candle_nn::linear(4, 2, vb.pp("fc"))?;
//! assert_eq!(varmap.state_dict().keys().collect::<Vec<_>>(), ["fc.bias", "fc.weight"]);
//!
//! // A fresh layer of the same shape, loaded from the first: strictly, all or nothing.
//! let mut fresh = Linear::new(Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?, None);
//! let err = fresh.load_state_dict(&fc.state_dict(), true).unwrap_err();
//! assert_eq!(err.unexpected_keys(), ["bias"]);
//! let _ = fresh.load_state_dict_with(&fc.state_dict(), &ckpt::StateDictOptions::new().strict(false))?;
//! assert_eq!(fresh.weight().to_vec2::<f32>()?, fc.weight().to_vec2::<f32>()?);
//!
//! // A `Var` is written in place: whoever holds it (an optimizer) sees the new values.
//! let mut w = Var::zeros(3, DType::F32, &Device::Cpu)?;
//! let held = w.clone();
//! let _ = w.load_state_dict(&Tensor::new(&[1f32, 2., 3.], &Device::Cpu)?.state_dict(), true)?;
//! assert_eq!(held.to_vec1::<f32>()?, [1., 2., 3.]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - **Reading** a candle tensor for a save borrows its bytes in place (a CPU tensor in C
//!   order) under candle's lock for the time of one write, which neither copies the model nor
//!   blocks candle for longer; other tensors (on a GPU, strided) are copied to host memory a
//!   few megabytes at a time. A `state_dict()` holds clones of the tensors, not their locks.
//! - **Loading** builds each new tensor whole, on the tensor's device and in its dtype (cast as
//!   ckpt casts), after every key, shape and dtype has been checked; then a variable is written
//!   in place (`Var::set`), and so is a plain tensor where candle allows it (contiguous), so
//!   that tied tensors stay tied; other tensors are replaced.
//! - **Dtypes**: `U8`, `I16`, `I32`, `I64`, `F16`, `BF16`, `F32` and `F64` are ckpt's. A model
//!   holding a tensor of another dtype (`U32`, `F8E4M3`, the 6- and 4-bit floats) cannot be
//!   saved or loaded: the error names the tensor and says how to convert it.
//! - **Devices**: a candle tensor stays on its device (`model.to(device)` refuses to move it;
//!   candle's `to_device` does); a GPU tensor is saved as on `cuda:N`, a Metal one as on the CPU.
//! - candle's `BatchNorm` has no batch counter: PyTorch's `num_batches_tracked` loads and is
//!   dropped, and saves as 0. `LSTM` and `GRU` keep their weights private: build them from a
//!   `VarMap` and save or load the map, whose keys (`weight_ih_l0`, …) are PyTorch's.

mod dtype;
mod fields;
mod layers;
mod leaf;
mod read;
mod varmap;
