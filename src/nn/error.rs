//! [`NnError`]: what a layer refuses, at construction or in a forward pass.

/// Why a layer could not be built or could not run on its input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// The input's shape does not fit the layer.
    #[error("{layer}: expected input of shape {expected}, got {actual:?}")]
    Shape {
        /// The layer type (`Linear`, `Conv2d`, …).
        layer: &'static str,
        /// The shape the layer needs, in words (`[*, 5]`).
        expected: String,
        /// The shape it was given.
        actual: Vec<usize>,
    },
    /// An embedding index is negative or not below the number of embeddings.
    #[error(
        "{layer}: index {index} at position {position} is out of range for {num_embeddings} embeddings"
    )]
    Index {
        /// The layer type.
        layer: &'static str,
        /// The offending index.
        index: i64,
        /// Its position in the input, in C order.
        position: usize,
        /// The size of the embedding table.
        num_embeddings: usize,
    },
    /// A constructor argument is out of range, in PyTorch's words where it has them.
    #[error("{layer}: {message}")]
    Config {
        /// The layer type.
        layer: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl NnError {
    pub(crate) fn shape(
        layer: &'static str,
        expected: impl Into<String>,
        actual: &[usize],
    ) -> Self {
        NnError::Shape {
            layer,
            expected: expected.into(),
            actual: actual.to_vec(),
        }
    }

    pub(crate) fn config(layer: &'static str, message: impl Into<String>) -> Self {
        NnError::Config {
            layer,
            message: message.into(),
        }
    }
}
