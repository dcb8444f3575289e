//! [`ValueError`]: why a value could not be read as the type asked for.

/// Why a [`Value`](super::Value) could not be read as the type asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A map has no such key.
    #[error("no value under key {key:?}")]
    Missing {
        /// The key.
        key: String,
    },
    /// The value does not fit the requested type.
    #[error("{message}")]
    Type {
        /// What serde said.
        message: String,
    },
    /// A tensor sits where serde expected plain values.
    #[error("a tensor at {path:?} cannot be read through serde; use as_tensor()")]
    Tensor {
        /// Where the tensor is.
        path: String,
    },
    /// Serde produced something a checkpoint cannot hold.
    #[error("cannot store {what} in a checkpoint")]
    Unsupported {
        /// What it was.
        what: String,
    },
}
