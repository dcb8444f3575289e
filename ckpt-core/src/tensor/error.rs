//! [`TensorError`]: what can go wrong building, converting or casting a tensor.

use crate::device::DeviceError;
use crate::dtype::DType;

/// What went wrong when building, converting or casting a tensor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// A typed access asked for another element type than the tensor holds.
    #[error("dtype mismatch: the tensor holds {actual}, not {expected}")]
    DType {
        /// The dtype that was asked for.
        expected: DType,
        /// The tensor's dtype.
        actual: DType,
    },
    /// The shape does not fit the requested dimensionality or data length.
    #[error("shape mismatch: expected {expected}, got shape {actual:?}")]
    Shape {
        /// What was expected, in words.
        expected: String,
        /// The shape that was found.
        actual: Vec<usize>,
    },
    /// The number of elements or bytes of a shape does not fit in `usize`.
    #[error("shape {shape:?} of {dtype} is too large: its size in bytes overflows")]
    SizeOverflow {
        /// The element type.
        dtype: DType,
        /// The shape whose size overflowed.
        shape: Vec<usize>,
    },
    /// A byte buffer's length is not the shape's element count times the item size.
    #[error("{dtype} tensor of shape {shape:?} needs {expected} bytes, got {actual}")]
    ByteLength {
        /// The element type.
        dtype: DType,
        /// The shape.
        shape: Vec<usize>,
        /// Element count × item size.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A byte of a `BOOL` tensor is neither 0 nor 1.
    #[error("invalid BOOL value {byte:#04x} at element {index}: must be 0 or 1")]
    InvalidBool {
        /// Index of the element in C order.
        index: usize,
        /// The offending byte.
        byte: u8,
    },
    /// An integer value does not fit the target type of a cast.
    #[error("cannot cast {from} to {to}: value {value} at element {index} is out of range")]
    OutOfRange {
        /// The source dtype.
        from: DType,
        /// The target dtype.
        to: DType,
        /// The value that does not fit.
        value: i128,
        /// Index of the element in C order.
        index: usize,
    },
    /// The tensor is on a device that cannot do what was asked, or could not be reached.
    #[error("{0}")]
    Device(#[from] DeviceError),
}
