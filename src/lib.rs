#![doc = include_str!("../README.md")]

// The derive emits `::ckpt::...` paths; this lets the layers below derive `StateDict` too.
extern crate self as ckpt;

#[cfg(feature = "cuda")]
pub use ckpt_core::cuda;
pub use ckpt_core::{
    Checkpoint, DType, DTypePolicy, Device, Error, LoadError, LoadFrom, LoadOptions, LoadReport,
    SaveHandle, SaveOptions, StateDict, StateDictOptions, Tensor, Value, dict, inspect, load,
    load_with, save, save_async, save_async_with, save_with,
};
pub use ckpt_core::{device, dtype, format, keymap, loading, model, state, storage, tensor, value};
/// Derives [`StateDict`](trait@StateDict) for a struct; see the [crate documentation](crate).
pub use ckpt_derive::StateDict;

pub mod nn;
pub mod optim;

/// What `#[derive(StateDict)]` expands to refers to; not public API.
#[doc(hidden)]
pub mod __private {
    pub use ckpt_core::state::{KeyPath, Role, Visitor, VisitorMut};
    pub use ckpt_core::state_dict::merge_modes;
}
