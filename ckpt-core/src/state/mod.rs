//! The vocabulary of state dicts, below the [`StateDict`](crate::StateDict) trait: the dotted
//! [`KeyPath`] of each tensor, its [`Role`], the [`Visitor`]s a walk over a model hands tensors
//! to, the [`Leaf`] fields that hold them, the module versions of a state dict ([`Metadata`]), and the two ways of holding many: a [`TensorMap`]
//! (what `state_dict()` returns) and a [`TensorSource`] (what `load_state_dict` reads).
//!
//! Implementing `StateDict` by hand, or writing a new kind of tensor field, starts here.

mod key_path;
mod leaf;
mod map;
mod metadata;
mod source;
mod visit;

pub use self::key_path::KeyPath;
pub use self::leaf::Leaf;
pub use self::map::TensorMap;
pub use self::metadata::Metadata;
pub use self::source::TensorSource;
pub use self::visit::{Role, Visitor, VisitorMut};
