//! candle's dtypes as ckpt's, and the ones ckpt has no counterpart for.

use candle_core::DType as CandleDType;

use crate::dtype::DType;

/// The ckpt dtype of a candle dtype, or why there is none.
///
/// `U32` waits for ckpt's unsigned dtypes; the 8-, 6- and 4-bit floats (`F8E4M3`, `F6E2M3`,
/// `F6E3M2`, `F4`, `F8E8M0`) have no counterpart in PyTorch's default dtypes either. Neither is
/// converted behind the user's back: widening `U32` to `I64` would change the file's dtype,
/// and the small floats would quadruple in size.
pub(crate) fn to_ckpt(dtype: CandleDType) -> Result<DType, String> {
    Ok(match dtype {
        CandleDType::U8 => DType::U8,
        CandleDType::I16 => DType::I16,
        CandleDType::I32 => DType::I32,
        CandleDType::I64 => DType::I64,
        CandleDType::F16 => DType::F16,
        CandleDType::BF16 => DType::BF16,
        CandleDType::F32 => DType::F32,
        CandleDType::F64 => DType::F64,
        other => {
            let hint = if other == CandleDType::U32 {
                "convert it with `to_dtype(DType::I64)`"
            } else {
                "convert it with `to_dtype(DType::F32)` or another float dtype"
            };
            return Err(format!(
                "candle's {other:?} tensors have no ckpt dtype; {hint}, or mark the field \
                 `#[state(skip)]`"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_dtype_maps_and_the_others_say_why_not() {
        let pairs = [
            (CandleDType::U8, DType::U8),
            (CandleDType::I16, DType::I16),
            (CandleDType::I32, DType::I32),
            (CandleDType::I64, DType::I64),
            (CandleDType::F16, DType::F16),
            (CandleDType::BF16, DType::BF16),
            (CandleDType::F32, DType::F32),
            (CandleDType::F64, DType::F64),
        ];
        for (candle, ckpt) in pairs {
            assert_eq!(to_ckpt(candle), Ok(ckpt));
        }
        let err = to_ckpt(CandleDType::U32).unwrap_err();
        assert!(
            err.starts_with("candle's U32 tensors have no ckpt dtype"),
            "{err}"
        );
        assert!(err.contains("DType::I64"), "{err}");
        for dtype in [
            CandleDType::F8E4M3,
            CandleDType::F6E2M3,
            CandleDType::F6E3M2,
            CandleDType::F4,
            CandleDType::F8E8M0,
        ] {
            assert!(to_ckpt(dtype).is_err(), "{dtype:?}");
        }
    }
}
