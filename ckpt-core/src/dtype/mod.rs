//! Element types: the [`DType`] a tensor holds, the Rust types that are its elements
//! ([`Element`]), and the per-dtype ndarray storage behind tensors.

#[macro_use]
mod host;
mod element;
mod torch;

use core::fmt;
use core::str::FromStr;

/// The element type of a tensor, named as safetensors names it.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::DType;
///
/// assert_eq!("BF16".parse::<DType>().unwrap(), DType::BF16);
/// assert_eq!(DType::F32.to_string(), "F32");
/// assert_eq!(DType::I64.size_in_bytes(), 8);
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
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 10] = [
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
    ];

    /// The name safetensors uses: `"F32"`, `"BF16"`, `"BOOL"`.
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
        }
    }

    /// Bytes per element.
    pub const fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// Whether this is an integer type (signed or unsigned; not `Bool`).
    pub const fn is_int(self) -> bool {
        matches!(
            self,
            DType::I64 | DType::I32 | DType::I16 | DType::I8 | DType::U8
        )
    }

    /// The kind of values the type holds: floats cast to floats, integers to integers.
    pub const fn kind(self) -> DTypeKind {
        if self.is_float() {
            DTypeKind::Float
        } else if self.is_int() {
            DTypeKind::Int
        } else {
            DTypeKind::Bool
        }
    }
}

/// The families of [`DType`]s between which values can be cast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DTypeKind {
    /// `F64`, `F32`, `F16`, `BF16`.
    Float,
    /// `I64`, `I32`, `I16`, `I8`, `U8`.
    Int,
    /// `BOOL`.
    Bool,
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names no [`DType`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype {0:?}: expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL")]
pub struct ParseDTypeError(String);

impl FromStr for DType {
    type Err = ParseDTypeError;

    /// Parses safetensors' names in any case (`"f32"`, `"BOOL"`) and PyTorch's
    /// (`"float32"`, `"torch.bfloat16"`, `"long"`).
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
            _ => return Err(ParseDTypeError(s.to_owned())),
        };
        Ok(dtype)
    }
}

pub use self::element::Element;
pub(crate) use self::element::{bytes_mut, wrap_view};
pub(crate) use self::host::{HostArray, HostView};
pub use self::torch::TorchDType;

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
        let err = "complex64".parse::<DType>().unwrap_err();
        assert!(err.to_string().contains("\"complex64\""), "{err}");
    }

    #[test]
    fn sizes_and_kinds() {
        let sizes: Vec<usize> = DType::ALL.iter().map(|d| d.size_in_bytes()).collect();
        assert_eq!(sizes, [8, 4, 2, 2, 8, 4, 2, 1, 1, 1]);
        assert_eq!(DType::BF16.kind(), DTypeKind::Float);
        assert_eq!(DType::U8.kind(), DTypeKind::Int);
        assert_eq!(DType::Bool.kind(), DTypeKind::Bool);
    }
}
