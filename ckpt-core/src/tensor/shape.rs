//! Shape checks: every tensor's element count and byte size are validated here, once.

use super::TensorError;
use crate::dtype::DType;

/// The size in bytes of a tensor of `dtype` and `shape`, or an error if it overflows `usize`.
pub(crate) fn check_size(dtype: DType, shape: &[usize]) -> Result<usize, TensorError> {
    shape
        .iter()
        .try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
        .filter(|&n| isize::try_from(n).is_ok())
        .ok_or_else(|| TensorError::SizeOverflow {
            dtype,
            shape: shape.to_vec(),
        })
}
