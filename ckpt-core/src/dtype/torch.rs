//! [`TorchDType`]: PyTorch's `torch.dtype` objects, every one of them, as values a checkpoint
//! may hold (`torch.save({"dtype": torch.bfloat16})`) whether or not ckpt has tensors of it.

use core::fmt;

use super::DType;

/// Every `torch.dtype` that `torch.load(weights_only=True)` accepts as a global, by its name
/// in the `torch` module, with the [`DType`] of ckpt's tensors where ckpt has one.
const TABLE: &[(&str, Option<DType>)] = &[
    ("float64", Some(DType::F64)),
    ("float32", Some(DType::F32)),
    ("float16", Some(DType::F16)),
    ("bfloat16", Some(DType::BF16)),
    ("int64", Some(DType::I64)),
    ("int32", Some(DType::I32)),
    ("int16", Some(DType::I16)),
    ("int8", Some(DType::I8)),
    ("uint8", Some(DType::U8)),
    ("bool", Some(DType::Bool)),
    ("uint16", None),
    ("uint32", None),
    ("uint64", None),
    ("complex32", None),
    ("complex64", None),
    ("complex128", None),
    ("float8_e4m3fn", None),
    ("float8_e5m2", None),
    ("float8_e4m3fnuz", None),
    ("float8_e5m2fnuz", None),
    ("float8_e8m0fnu", None),
    ("float4_e2m1fn_x2", None),
    ("bcomplex32", None),
    ("bits8", None),
    ("bits16", None),
    ("bits1x8", None),
    ("bits2x4", None),
    ("bits4x2", None),
    ("qint8", None),
    ("qint32", None),
    ("quint8", None),
    ("quint4x2", None),
    ("quint2x4", None),
    ("int1", None),
    ("int2", None),
    ("int3", None),
    ("int4", None),
    ("int5", None),
    ("int6", None),
    ("int7", None),
    ("uint1", None),
    ("uint2", None),
    ("uint3", None),
    ("uint4", None),
    ("uint5", None),
    ("uint6", None),
    ("uint7", None),
];

/// A `torch.dtype` object, such as `torch.float32` or `torch.quint4x2`: what a checkpoint holds
/// when a dtype itself was saved, and what `_rebuild_tensor_v3` names a tensor's dtype with.
///
/// Every one of PyTorch's 47 dtypes is one; [`TorchDType::dtype`] says which ckpt has tensors
/// of.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::DType;
/// use ckpt::dtype::TorchDType;
///
/// let bf16 = TorchDType::from_name("bfloat16").unwrap();
/// assert_eq!(bf16.dtype(), Some(DType::BF16));
/// assert_eq!(TorchDType::from(DType::F32).to_string(), "torch.float32");
/// assert_eq!(TorchDType::from_name("quint4x2").unwrap().dtype(), None);
/// assert!(TorchDType::from_name("float128").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TorchDType(u8);

impl TorchDType {
    /// The dtype named `name` in the `torch` module (`"float32"`, not `"torch.float32"` and not
    /// an alias such as `"float"`).
    pub fn from_name(name: &str) -> Option<Self> {
        let i = TABLE.iter().position(|(n, _)| *n == name)?;
        Some(TorchDType(i as u8))
    }

    /// Its name in the `torch` module: `"float32"`.
    pub fn name(self) -> &'static str {
        TABLE[usize::from(self.0)].0
    }

    /// The [`DType`] of ckpt's tensors of this dtype, if ckpt has them.
    pub fn dtype(self) -> Option<DType> {
        TABLE[usize::from(self.0)].1
    }

    /// Every dtype PyTorch has, in a fixed order.
    pub fn all() -> impl Iterator<Item = TorchDType> {
        (0..TABLE.len()).map(|i| TorchDType(i as u8))
    }
}

impl From<DType> for TorchDType {
    fn from(dtype: DType) -> Self {
        let i = TABLE
            .iter()
            .position(|(_, d)| *d == Some(dtype))
            .expect("every DType has a torch dtype");
        TorchDType(i as u8)
    }
}

impl fmt::Display for TorchDType {
    /// As PyTorch prints it: `torch.float32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "torch.{}", self.name())
    }
}

impl fmt::Debug for TorchDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_maps_both_ways() {
        assert_eq!(TorchDType::all().count(), 47);
        for dtype in DType::ALL {
            assert_eq!(TorchDType::from(dtype).dtype(), Some(dtype));
        }
        for t in TorchDType::all() {
            assert_eq!(TorchDType::from_name(t.name()), Some(t));
        }
    }
}
