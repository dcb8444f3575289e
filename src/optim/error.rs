//! [`OptimError`]: why a step or a state-dict load was refused.

use crate::DType;
use crate::tensor::TensorError;

/// Why an optimizer refused a step or a state dict. Nothing is changed when one is returned.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OptimError {
    /// A gradient's key names no parameter of the model.
    #[error("unexpected gradient {key:?}: the model has no such parameter")]
    UnexpectedGradient {
        /// The gradient's key.
        key: String,
    },
    /// The optimizer was built for a parameter the model does not have.
    #[error("parameter {key:?} of the optimizer is not a parameter of the model")]
    MissingParameter {
        /// The parameter's key.
        key: String,
    },
    /// A parameter was given to two parameter groups, or twice to one.
    #[error("some parameters appear in more than one parameter group: {key:?}")]
    DuplicateParameter {
        /// The parameter's key.
        key: String,
    },
    /// A group selected by prefix found no parameter: a typo, or a module without parameters.
    #[error("no parameter of the model starts with {prefix:?}: the parameter group would be empty")]
    EmptyGroup {
        /// The prefix.
        prefix: String,
    },
    /// An optimizer was given no parameter group.
    #[error("optimizer got an empty parameter list")]
    NoGroups,
    /// A gradient's or a state tensor's shape differs from its parameter's.
    #[error(
        "size mismatch for {key}: {what} has shape {actual:?}, the parameter has shape {expected:?}"
    )]
    Shape {
        /// The parameter's key.
        key: String,
        /// What was checked (`the gradient`, `exp_avg`).
        what: String,
        /// The parameter's shape (or `[]` for a step count).
        expected: Vec<usize>,
        /// The shape found.
        actual: Vec<usize>,
    },
    /// A parameter, gradient or state tensor is not a floating-point tensor the update can use.
    #[error("{key}: {what} is {dtype}; the optimizers update F32 parameters from float tensors")]
    DType {
        /// The parameter's key.
        key: String,
        /// What was checked.
        what: String,
        /// The dtype found.
        dtype: DType,
    },
    /// A tensor could not be read or written.
    #[error("{key}: {source}")]
    Tensor {
        /// The parameter's key.
        key: String,
        /// What went wrong.
        source: TensorError,
    },
    /// A state dict is not laid out as this optimizer writes it.
    #[error("invalid optimizer state dict at {path}: {message}")]
    Layout {
        /// Where in the state dict (`param_groups.0.lr`; empty for the whole of it).
        path: String,
        /// What is wrong, naming what was expected and what was found.
        message: String,
    },
}

impl OptimError {
    pub(crate) fn layout(path: impl Into<String>, message: impl Into<String>) -> Self {
        OptimError::Layout {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The error with `prefix` (`param_groups.1`) before its path, for an error found in a part
    /// of the state dict.
    pub(crate) fn under(self, prefix: &str) -> Self {
        match self {
            OptimError::Layout { path, message } if path.is_empty() => {
                OptimError::layout(prefix, message)
            }
            OptimError::Layout { path, message } => {
                OptimError::layout(format!("{prefix}.{path}"), message)
            }
            other => other,
        }
    }
}
