//! The per-dtype ndarray storage behind tensors and views.
//!
//! Everything here is `pub` only so that the sealed [`Element`](super::Element) trait can name
//! it; the module is private and none of it is reachable from outside the crate.
#![allow(unreachable_pub)]

use half::{bf16, f16};
use ndarray::{ArcArray, ArrayBase, IxDyn, ViewRepr};

/// Expands `$mac!` once with every `Variant element_type` pair.
macro_rules! for_each_dtype {
    ($mac:ident) => {
        $mac! {
            F64 f64, F32 f32, F16 f16, BF16 bf16, I64 i64, I32 i32, I16 i16, I8 i8, U8 u8, Bool bool
        }
    };
}

/// Runs `$body` with `$arr` bound to the typed array inside any variant of `$Enum`.
macro_rules! dispatch {
    ($value:expr, $Enum:ident, $arr:ident => $body:expr) => {
        match $value {
            $Enum::F64($arr) => $body,
            $Enum::F32($arr) => $body,
            $Enum::F16($arr) => $body,
            $Enum::BF16($arr) => $body,
            $Enum::I64($arr) => $body,
            $Enum::I32($arr) => $body,
            $Enum::I16($arr) => $body,
            $Enum::I8($arr) => $body,
            $Enum::U8($arr) => $body,
            $Enum::Bool($arr) => $body,
        }
    };
}

macro_rules! storage_enums {
    ($($V:ident $T:ty),*) => {
        /// Owned, reference-counted host data of one dtype.
        #[derive(Clone)]
        pub enum HostArray {
            $($V(ArcArray<$T, IxDyn>),)*
        }

        /// Borrowed host data of one dtype, with any strides.
        ///
        /// The element type is spelled out: `ArrayViewD`'s default for it is a projection
        /// through the lifetime, which would make views invariant instead of covariant.
        #[derive(Clone, Debug)]
        pub enum HostView<'a> {
            $($V(ArrayBase<ViewRepr<&'a $T>, IxDyn, $T>),)*
        }
    };
}
for_each_dtype!(storage_enums);
