//! The runtime behind [ckpt](https://docs.rs/ckpt): tensors, dtypes, devices, state dicts and
//! PyTorch's loading semantics. Use it through the `ckpt` crate, which documents it all.

#[macro_use]
mod storage;

mod atomic;
mod backing;
#[cfg(feature = "cuda")]
pub mod cuda;
mod device;
mod dtype;
mod element;
mod error;
mod file;
pub mod format;
mod impls;
mod keymap;
mod load;
mod location;
mod map;
mod module;
mod source;
mod tensor;
mod value;
mod whole;

pub use crate::device::{Device, DeviceError, ParseDeviceError};
pub use crate::dtype::{DType, DTypeKind, ParseDTypeError};
pub use crate::element::Element;
pub use crate::error::{Corruption, Error};
pub use crate::file::{
    Checkpoint, SaveHandle, SaveOptions, TensorInfo, inspect, load, load_with, save, save_async,
    save_async_with, save_with,
};
pub use crate::format::Format;
pub use crate::keymap::{KeyMap, KeyMapError, KeyPlan, KeyRule};
pub use crate::load::{DTypePolicy, LoadError, LoadOptions, LoadProblem, LoadReport};
pub use crate::location::{DeviceFn, MapLocation, ParseMapLocationError};
pub use crate::map::TensorMap;
pub use crate::module::{KeyPath, Leaf, Role, StateDict, Visitor, VisitorMut, merge_modes};
pub use crate::source::{StripPrefix, TensorSource};
pub use crate::tensor::{Tensor, TensorError, TensorView};
pub use crate::value::{Key, TensorCow, Value, ValueError};
pub use crate::whole::{Difference, Model, load_model, load_model_with, save_model};
