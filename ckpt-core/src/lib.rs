//! The runtime behind [ckpt](https://docs.rs/ckpt): tensors, dtypes, devices, state dicts and
//! PyTorch's loading semantics. Use it through the `ckpt` crate, which documents it all.

#[macro_use]
mod storage;

mod device;
mod dtype;
mod element;
pub mod format;
mod impls;
mod load;
mod map;
mod module;
mod source;
mod tensor;
mod value;

pub use crate::device::{Device, ParseDeviceError};
pub use crate::dtype::{DType, DTypeKind, ParseDTypeError};
pub use crate::element::Element;
pub use crate::load::{DTypePolicy, LoadError, LoadOptions, LoadProblem, LoadReport};
pub use crate::map::TensorMap;
pub use crate::module::{KeyPath, Leaf, Role, StateDict, Visitor, VisitorMut, merge_modes};
pub use crate::source::{StripPrefix, TensorSource};
pub use crate::tensor::{Tensor, TensorError, TensorView};
pub use crate::value::{Key, TensorCow, Value, ValueError};
