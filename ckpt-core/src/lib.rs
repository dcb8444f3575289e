//! The runtime behind [ckpt](https://docs.rs/ckpt): tensors, state dicts, PyTorch's loading
//! semantics, file formats and storage. Use it through the `ckpt` crate, which documents it
//! all and re-exports it with the same paths.
//!
//! The modules are layers; each uses only the ones above it in this list:
//!
//! | layer | what it holds |
//! |---|---|
//! | [`dtype`] | element types: `DType`, the Rust types that are elements, per-dtype storage |
//! | [`device`] | where tensors live: `Device`, `MapLocation`, the CUDA driver |
//! | [`tensor`] | `Tensor` and `TensorView`, host, memory-mapped or on a GPU |
//! | [`shard`] | the geometry of sharded tensors: chunks, overlaps, tilings, byte ranges |
//! | [`state`] | the vocabulary of state dicts: key paths, roles, visitors, leaves, maps, sources |
//! | [`keymap`] | rules that rename a checkpoint's keys |
//! | [`loading`] | `load_state_dict`'s semantics: options, report, errors, layout differences |
//! | [`state_dict`] | the `StateDict` trait, built on all of the above |
//! | `candle` | candle's tensors, layers and `VarMap`s as state dicts (the `candle` feature) |
//! | [`value`] | the checkpoint tree, `Value` |
//! | [`storage`] | where bytes come from and go: sources, sinks, atomic commits |
//! | [`format`](mod@format) | the `Format` trait, its registry, and ckpt's, safetensors' and PyTorch's formats |
//! | [`file`](mod@file) | the entry points: `save`, `load`, `inspect`, `Checkpoint`, `LoadFrom` |
//! | [`distributed`] | sharded checkpoints of multi-rank jobs: save, resharding load, coordination |
//! | [`model`] | whole-model save and load |

#[cfg(feature = "candle")]
pub mod candle;
pub mod device;
pub mod distributed;
#[macro_use]
pub mod dtype;
pub mod file;
pub mod format;
pub mod keymap;
pub mod loading;
pub mod model;
pub mod shard;
pub mod state;
pub mod state_dict;
pub mod storage;
pub mod tensor;
pub mod value;

#[cfg(feature = "candle")]
pub use candle_core;
#[cfg(feature = "candle")]
pub use candle_nn;
pub use half;
pub use ndarray;

pub use crate::device::Device;
#[cfg(feature = "cuda")]
pub use crate::device::cuda;
pub use crate::dtype::DType;
pub use crate::file::dcp;
pub use crate::file::{
    Checkpoint, Error, LoadFrom, LoadOptions, SaveHandle, SaveOptions, inspect, inspect_with, load,
    load_with, save, save_async, save_async_with, save_with,
};
pub use crate::loading::{DTypePolicy, LoadError, LoadReport, StateDictOptions};
pub use crate::state_dict::StateDict;
pub use crate::tensor::Tensor;
pub use crate::value::Value;
