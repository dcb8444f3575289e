//! The per-dtype ndarray storage behind tensors and views.
//!
//! Everything here is `pub` only so that the sealed [`Element`](super::Element) trait can name
//! it; the module is private and none of it is reachable from outside the crate.
#![allow(unreachable_pub)]

use half::{bf16, f16};
use ndarray::{ArcArray, ArrayBase, IxDyn, ViewRepr};
use num_complex::Complex;

use super::float8::{F8E4M3, F8E4M3Fnuz, F8E5M2, F8E5M2Fnuz, F8E8M0};

// Single-token names for the element types, as the macros below take them.
pub type C32 = Complex<f16>;
pub type C64 = Complex<f32>;
pub type C128 = Complex<f64>;

/// Expands `$mac!` once with every `Variant element_type` pair.
macro_rules! for_each_dtype {
    ($mac:ident) => {
        $mac! {
            F64 f64, F32 f32, F16 f16, BF16 bf16, I64 i64, I32 i32, I16 i16, I8 i8, U8 u8,
            Bool bool, U16 u16, U32 u32, U64 u64, C32 C32, C64 C64, C128 C128,
            F8E4M3 F8E4M3, F8E5M2 F8E5M2, F8E4M3Fnuz F8E4M3Fnuz, F8E5M2Fnuz F8E5M2Fnuz,
            F8E8M0 F8E8M0
        }
    };
}

/// Runs `$body` with `$T` the element type of `$dtype`, a [`DType`](crate::dtype::DType);
/// `bool => $bool` gives `BOOL` a body of its own where `$body` does not compile for `bool`.
macro_rules! with_element {
    ($dtype:expr, $T:ident => $body:expr) => {
        with_element!($dtype, $T => $body, bool => {
            type $T = bool;
            $body
        })
    };
    ($dtype:expr, $T:ident => $body:expr, bool => $bool:expr) => {{
        use $crate::dtype::DType as D;
        match $dtype {
            D::Bool => $bool,
            D::F64 => { type $T = f64; $body }
            D::F32 => { type $T = f32; $body }
            D::F16 => { type $T = half::f16; $body }
            D::BF16 => { type $T = half::bf16; $body }
            D::I64 => { type $T = i64; $body }
            D::I32 => { type $T = i32; $body }
            D::I16 => { type $T = i16; $body }
            D::I8 => { type $T = i8; $body }
            D::U8 => { type $T = u8; $body }
            D::U16 => { type $T = u16; $body }
            D::U32 => { type $T = u32; $body }
            D::U64 => { type $T = u64; $body }
            D::C32 => { type $T = num_complex::Complex<half::f16>; $body }
            D::C64 => { type $T = num_complex::Complex<f32>; $body }
            D::C128 => { type $T = num_complex::Complex<f64>; $body }
            D::F8E4M3 => { type $T = $crate::dtype::F8E4M3; $body }
            D::F8E5M2 => { type $T = $crate::dtype::F8E5M2; $body }
            D::F8E4M3Fnuz => { type $T = $crate::dtype::F8E4M3Fnuz; $body }
            D::F8E5M2Fnuz => { type $T = $crate::dtype::F8E5M2Fnuz; $body }
            D::F8E8M0 => { type $T = $crate::dtype::F8E8M0; $body }
        }
    }};
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
            $Enum::U16($arr) => $body,
            $Enum::U32($arr) => $body,
            $Enum::U64($arr) => $body,
            $Enum::C32($arr) => $body,
            $Enum::C64($arr) => $body,
            $Enum::C128($arr) => $body,
            $Enum::F8E4M3($arr) => $body,
            $Enum::F8E5M2($arr) => $body,
            $Enum::F8E4M3Fnuz($arr) => $body,
            $Enum::F8E5M2Fnuz($arr) => $body,
            $Enum::F8E8M0($arr) => $body,
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
