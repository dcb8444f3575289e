//! Element types: the [`DType`] a tensor holds, the Rust types that are its elements
//! ([`Element`]), and the per-dtype ndarray storage behind tensors.

#[macro_use]
mod host;
mod element;
mod float8;
mod torch;

use core::fmt;
use core::str::FromStr;

/// The element type of a tensor, named as safetensors names it (`F8_E4M3`, `U16`, `C64`), or
/// for the dtypes safetensors lacks, in its style (`C128`, `C32`).
///
/// Every dtype `torch.save` writes that holds one number per element is here: the classic ten,
/// the unsigned `U16`/`U32`/`U64`, the complex `C32`/`C64`/`C128` and the five 8-bit floats.
/// (PyTorch's bit containers, packed 4-bit floats, `bcomplex32` and quantized dtypes are not:
/// a file holding one is refused by name.)
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::DType;
///
/// assert_eq!("BF16".parse::<DType>().unwrap(), DType::BF16);
/// assert_eq!("torch.float8_e4m3fn".parse::<DType>().unwrap(), DType::F8E4M3);
/// assert_eq!(DType::F32.to_string(), "F32");
/// assert_eq!(DType::C64.size_in_bytes(), 8);
/// assert_eq!(DType::F8E5M2.torch_name(), "float8_e5m2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// 64-bit IEEE float (`torch.float64`).
    F64,
    /// 32-bit IEEE float (`torch.float32`).
    F32,
    /// 16-bit IEEE float (`torch.float16`).
    F16,
    /// bfloat16 (`torch.bfloat16`).
    BF16,
    /// 64-bit signed integer (`torch.int64`).
    I64,
    /// 32-bit signed integer (`torch.int32`).
    I32,
    /// 16-bit signed integer (`torch.int16`).
    I16,
    /// 8-bit signed integer (`torch.int8`).
    I8,
    /// 8-bit unsigned integer (`torch.uint8`).
    U8,
    /// Boolean stored as one byte, 0 or 1 (`torch.bool`).
    Bool,
    /// 16-bit unsigned integer (`torch.uint16`).
    U16,
    /// 32-bit unsigned integer (`torch.uint32`).
    U32,
    /// 64-bit unsigned integer (`torch.uint64`).
    U64,
    /// Complex of two `F16`s (`torch.complex32`).
    C32,
    /// Complex of two `F32`s (`torch.complex64`).
    C64,
    /// Complex of two `F64`s (`torch.complex128`).
    C128,
    /// 8-bit float, 4 exponent and 3 mantissa bits, finite (`torch.float8_e4m3fn`).
    F8E4M3,
    /// 8-bit float, 5 exponent and 2 mantissa bits (`torch.float8_e5m2`).
    F8E5M2,
    /// 8-bit float, 4 exponent and 3 mantissa bits, finite, one zero (`torch.float8_e4m3fnuz`).
    F8E4M3Fnuz,
    /// 8-bit float, 5 exponent and 2 mantissa bits, finite, one zero (`torch.float8_e5m2fnuz`).
    F8E5M2Fnuz,
    /// 8-bit power of two, the scale of MX formats (`torch.float8_e8m0fnu`).
    F8E8M0,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 21] = [
        DType::F64,
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U8,
        DType::Bool,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::C32,
        DType::C64,
        DType::C128,
        DType::F8E4M3,
        DType::F8E5M2,
        DType::F8E4M3Fnuz,
        DType::F8E5M2Fnuz,
        DType::F8E8M0,
    ];

    /// The name safetensors uses: `"F32"`, `"BF16"`, `"BOOL"`, `"F8_E4M3"`; `"C32"` and
    /// `"C128"` for the two complex dtypes it does not have.
    pub const fn as_str(self) -> &'static str {
        match self {
            DType::F64 => "F64",
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::I16 => "I16",
            DType::I8 => "I8",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
            DType::U16 => "U16",
            DType::U32 => "U32",
            DType::U64 => "U64",
            DType::C32 => "C32",
            DType::C64 => "C64",
            DType::C128 => "C128",
            DType::F8E4M3 => "F8_E4M3",
            DType::F8E5M2 => "F8_E5M2",
            DType::F8E4M3Fnuz => "F8_E4M3FNUZ",
            DType::F8E5M2Fnuz => "F8_E5M2FNUZ",
            DType::F8E8M0 => "F8_E8M0",
        }
    }

    /// The name of the dtype in the `torch` module: `"float32"`, `"float8_e4m3fn"`.
    pub const fn torch_name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::C32 => "complex32",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
            DType::F8E4M3 => "float8_e4m3fn",
            DType::F8E5M2 => "float8_e5m2",
            DType::F8E4M3Fnuz => "float8_e4m3fnuz",
            DType::F8E5M2Fnuz => "float8_e5m2fnuz",
            DType::F8E8M0 => "float8_e8m0fnu",
        }
    }

    /// Bytes per element.
    pub const fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 | DType::C64 => 8,
            DType::F32 | DType::I32 | DType::U32 | DType::C32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::C128 => 16,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F8E4M3
            | DType::F8E5M2
            | DType::F8E4M3Fnuz
            | DType::F8E5M2Fnuz
            | DType::F8E8M0 => 1,
        }
    }

    /// Whether this is a (real) floating-point type, 8-bit floats included.
    pub const fn is_float(self) -> bool {
        matches!(
            self,
            DType::F64
                | DType::F32
                | DType::F16
                | DType::BF16
                | DType::F8E4M3
                | DType::F8E5M2
                | DType::F8E4M3Fnuz
                | DType::F8E5M2Fnuz
                | DType::F8E8M0
        )
    }

    /// Whether this is an integer type (signed or unsigned; not `Bool`).
    pub const fn is_int(self) -> bool {
        matches!(
            self,
            DType::I64
                | DType::I32
                | DType::I16
                | DType::I8
                | DType::U8
                | DType::U16
                | DType::U32
                | DType::U64
        )
    }

    /// Whether this is a complex type.
    pub const fn is_complex(self) -> bool {
        matches!(self, DType::C32 | DType::C64 | DType::C128)
    }

    /// The kind of values the type holds: floats cast to floats, integers to integers,
    /// complex numbers to complex numbers.
    pub const fn kind(self) -> DTypeKind {
        if self.is_float() {
            DTypeKind::Float
        } else if self.is_int() {
            DTypeKind::Int
        } else if self.is_complex() {
            DTypeKind::Complex
        } else {
            DTypeKind::Bool
        }
    }
}

/// The families of [`DType`]s between which values can be cast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DTypeKind {
    /// `F64`, `F32`, `F16`, `BF16` and the 8-bit floats.
    Float,
    /// `I64`, `I32`, `I16`, `I8`, `U8`, `U16`, `U32`, `U64`.
    Int,
    /// `BOOL`.
    Bool,
    /// `C32`, `C64`, `C128`.
    Complex,
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names no [`DType`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown dtype {0:?}: expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, U16, \
     U32, U64, C32, C64, C128, F8_E4M3, F8_E5M2, F8_E4M3FNUZ, F8_E5M2FNUZ, F8_E8M0, or PyTorch's \
     name of one"
)]
pub struct ParseDTypeError(String);

impl FromStr for DType {
    type Err = ParseDTypeError;

    /// Parses safetensors' names in any case (`"f32"`, `"BOOL"`, `"F8_E4M3"`) and PyTorch's
    /// (`"float32"`, `"torch.bfloat16"`, `"long"`, `"float8_e4m3fn"`, `"cfloat"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.strip_prefix("torch.").unwrap_or(s).to_ascii_lowercase();
        let dtype = match name.as_str() {
            "f64" | "float64" | "double" => DType::F64,
            "f32" | "float32" | "float" => DType::F32,
            "f16" | "float16" | "half" => DType::F16,
            "bf16" | "bfloat16" => DType::BF16,
            "i64" | "int64" | "long" => DType::I64,
            "i32" | "int32" | "int" => DType::I32,
            "i16" | "int16" | "short" => DType::I16,
            "i8" | "int8" => DType::I8,
            "u8" | "uint8" => DType::U8,
            "bool" => DType::Bool,
            "u16" | "uint16" => DType::U16,
            "u32" | "uint32" => DType::U32,
            "u64" | "uint64" => DType::U64,
            "c32" | "complex32" | "chalf" => DType::C32,
            "c64" | "complex64" | "cfloat" => DType::C64,
            "c128" | "complex128" | "cdouble" => DType::C128,
            "f8_e4m3" | "float8_e4m3fn" => DType::F8E4M3,
            "f8_e5m2" | "float8_e5m2" => DType::F8E5M2,
            "f8_e4m3fnuz" | "float8_e4m3fnuz" => DType::F8E4M3Fnuz,
            "f8_e5m2fnuz" | "float8_e5m2fnuz" => DType::F8E5M2Fnuz,
            "f8_e8m0" | "float8_e8m0fnu" => DType::F8E8M0,
            _ => return Err(ParseDTypeError(s.to_owned())),
        };
        Ok(dtype)
    }
}

pub use self::element::Element;
pub(crate) use self::element::{bytes_mut, wrap_view};
pub use self::float8::{F8E4M3, F8E4M3Fnuz, F8E5M2, F8E5M2Fnuz, F8E8M0};
pub(crate) use self::host::{HostArray, HostView};
pub use self::torch::TorchDType;
/// The element type of complex tensors (`Complex<f32>` for `C64`), re-exported so that no
/// other dependency is needed to build one.
pub use num_complex::Complex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for dtype in DType::ALL {
            assert_eq!(dtype.as_str().parse::<DType>(), Ok(dtype));
        }
        assert_eq!("torch.float16".parse::<DType>(), Ok(DType::F16));
        assert_eq!("long".parse::<DType>(), Ok(DType::I64));
        let err = "complex256".parse::<DType>().unwrap_err();
        assert!(err.to_string().contains("\"complex256\""), "{err}");
        for dtype in DType::ALL {
            assert_eq!(dtype.torch_name().parse::<DType>(), Ok(dtype));
        }
    }

    #[test]
    fn sizes_and_kinds() {
        let sizes: Vec<usize> = DType::ALL.iter().map(|d| d.size_in_bytes()).collect();
        assert_eq!(
            sizes,
            [
                8, 4, 2, 2, 8, 4, 2, 1, 1, 1, 2, 4, 8, 4, 8, 16, 1, 1, 1, 1, 1
            ]
        );
        assert_eq!(DType::F8E8M0.kind(), DTypeKind::Float);
        assert_eq!(DType::U64.kind(), DTypeKind::Int);
        assert_eq!(DType::C32.kind(), DTypeKind::Complex);
        assert_eq!(DType::BF16.kind(), DTypeKind::Float);
        assert_eq!(DType::U8.kind(), DTypeKind::Int);
        assert_eq!(DType::Bool.kind(), DTypeKind::Bool);
    }
}
