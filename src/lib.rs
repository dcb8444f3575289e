#![doc = include_str!("../README.md")]

// The derive emits `::ckpt::...` paths; this lets the layers below derive `StateDict` too.
extern crate self as ckpt;

pub use ckpt_core::*;
/// Derives [`StateDict`](trait@StateDict) for a struct; see the [crate documentation](crate).
pub use ckpt_derive::StateDict;

mod data_parallel;
pub mod nn;
pub mod optim;

pub use crate::data_parallel::DataParallel;

/// What `#[derive(StateDict)]` expands to refers to; not public API.
#[doc(hidden)]
pub mod __private {
    pub use ckpt_core::{KeyPath, Role, Visitor, VisitorMut, merge_modes};
}
