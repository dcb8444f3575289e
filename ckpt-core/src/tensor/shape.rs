//! Shape checks: every tensor's element count and byte size are validated here, once, before
//! any array or view is built, by every constructor and every reader.

use super::TensorError;
use crate::dtype::DType;

/// The size in bytes of a tensor of `dtype` and `shape`, or an error if ndarray could not hold
/// it: the product of the dimensions that are not zero must fit in `isize` (ndarray's own rule,
/// which a zero dimension does not lift), and so must the byte count.
///
/// A zero dimension makes a tensor empty but does not make any other dimension acceptable:
/// `[0, 2^40, 2^40]` is refused here, rather than by an `expect` when a view is made of it.
pub(crate) fn check_size(dtype: DType, shape: &[usize]) -> Result<usize, TensorError> {
    let overflow = || TensorError::SizeOverflow {
        dtype,
        shape: shape.to_vec(),
    };
    let fits = |n: &usize| isize::try_from(*n).is_ok();
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(fits)
        .ok_or_else(overflow)?;
    let elements = if shape.contains(&0) { 0 } else { nonzero };
    elements
        .checked_mul(dtype.size_in_bytes())
        .filter(fits)
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayViewD, IxDyn};

    use super::*;

    #[test]
    fn a_zero_dimension_hides_no_overflow() {
        let huge = 1usize << 40;
        for shape in [
            vec![0, huge, huge],
            vec![0, 1 << 63],
            vec![1 << 62, 0, 4],
            vec![huge, huge, 0],
            vec![1 << 31, 1 << 31, 1 << 31],
            vec![usize::MAX, 2],
        ] {
            for dtype in [DType::U8, DType::F32, DType::F64] {
                assert!(check_size(dtype, &shape).is_err(), "{dtype} {shape:?}");
            }
        }
        assert_eq!(check_size(DType::F32, &[0, 1 << 20, 4]), Ok(0));
        assert_eq!(check_size(DType::F64, &[3, 4]), Ok(96));
        assert_eq!(check_size(DType::Bool, &[]), Ok(1));
    }

    #[test]
    fn every_empty_shape_it_accepts_ndarray_accepts_too() {
        let edge = (isize::MAX as usize) / 8;
        let shapes = [
            vec![0, edge],
            vec![edge, 0],
            vec![0, 1 << 30, 1 << 30],
            vec![0, 0],
            vec![0, 1 << 62],
            vec![0, 1 << 40, 1 << 40],
        ];
        for shape in shapes {
            let accepted = check_size(DType::F64, &shape).is_ok();
            let empty: [f64; 0] = [];
            let ndarray = ArrayViewD::from_shape(IxDyn(&shape), &empty[..]).is_ok();
            assert!(
                !accepted || ndarray,
                "{shape:?} accepted, but ndarray refuses it"
            );
        }
    }
}
