//! Element-wise casts between dtypes, as PyTorch's `copy_` does them.

use ndarray::{ArrayViewD, ArrayViewMutD, Zip};

use super::{TensorError, TensorView};
use crate::dtype::{DType, DTypeKind, Element, HostView};

fn int_range(dtype: DType) -> (i128, i128) {
    match dtype {
        DType::I64 => (i64::MIN.into(), i64::MAX.into()),
        DType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::U8 => (u8::MIN.into(), u8::MAX.into()),
        DType::U16 => (u16::MIN.into(), u16::MAX.into()),
        DType::U32 => (u32::MIN.into(), u32::MAX.into()),
        DType::U64 => (u64::MIN.into(), u64::MAX.into()),
        DType::Bool => (0, 1),
        // Floats and complex numbers hold any integer, rounded.
        _ => (i128::MIN, i128::MAX),
    }
}

/// Copies `src` into `dst` (same shape), converting each element to `T`.
pub(crate) fn cast_into<T: Element>(
    src: &TensorView<'_>,
    dst: &mut ArrayViewMutD<'_, T>,
) -> Result<(), TensorError> {
    if let Ok(same) = src.array::<T>() {
        dst.assign(&same);
        return Ok(());
    }
    src.check_cast(T::DTYPE)?;
    fn convert<S: Element, T: Element>(src: &ArrayViewD<'_, S>, dst: &mut ArrayViewMutD<'_, T>) {
        match (S::DTYPE.kind(), T::DTYPE.kind()) {
            (DTypeKind::Int | DTypeKind::Bool, DTypeKind::Int | DTypeKind::Bool) => {
                // Checked by `check_cast`: every value fits.
                Zip::from(dst).and(src).for_each(|d, s| {
                    *d = T::try_from_i128(s.to_i128()).unwrap_or_default();
                });
            }
            (DTypeKind::Float, DTypeKind::Bool) => {
                Zip::from(dst)
                    .and(src)
                    .for_each(|d, s| *d = T::from_f64(f64::from(u8::from(s.to_f64() != 0.0))));
            }
            (DTypeKind::Complex, DTypeKind::Bool) => {
                Zip::from(dst).and(src).for_each(|d, s| {
                    let z = s.to_c64();
                    *d = T::from_f64(f64::from(u8::from(z.re != 0.0 || z.im != 0.0)));
                });
            }
            // Into a complex number both parts, out of one the real part, as PyTorch casts.
            (DTypeKind::Complex, _) | (_, DTypeKind::Complex) => Zip::from(dst)
                .and(src)
                .for_each(|d, s| *d = T::from_c64(s.to_c64())),
            _ => Zip::from(dst)
                .and(src)
                .for_each(|d, s| *d = T::from_f64(s.to_f64())),
        }
    }
    let src = src.host_view()?;
    dispatch!(&src, HostView, s => convert(s, dst));
    Ok(())
}

impl TensorView<'_> {
    /// Checks that every value fits `dtype` when cast as [`Tensor::copy_from`](super::Tensor::copy_from)
    /// would cast it.
    pub fn check_cast(&self, dtype: DType) -> Result<(), TensorError> {
        fn check<S: Element>(src: &ArrayViewD<'_, S>, to: DType) -> Result<(), TensorError> {
            // Only integer targets can be out of range: float targets saturate to ±inf and bool
            // targets test for non-zero, as PyTorch does.
            if to.kind() != DTypeKind::Int
                || matches!(S::DTYPE.kind(), DTypeKind::Float | DTypeKind::Complex)
            {
                return Ok(());
            }
            let (min, max) = int_range(to);
            match src
                .iter()
                .map(|x| x.to_i128())
                .enumerate()
                .find(|(_, v)| *v < min || *v > max)
            {
                Some((index, value)) => Err(TensorError::OutOfRange {
                    from: S::DTYPE,
                    to,
                    value,
                    index,
                }),
                None => Ok(()),
            }
        }
        dispatch!(&self.host_view()?, HostView, v => check(v, dtype))
    }
}
