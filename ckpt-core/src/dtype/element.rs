//! Rust element types and how they map onto [`DType`]s.

use core::fmt;

use half::{bf16, f16};
use ndarray::{ArcArray, ArrayViewD, IxDyn};
use num_complex::{Complex, Complex64};

use super::DType;
use super::float8::{F8E4M3, F8E4M3Fnuz, F8E5M2, F8E5M2Fnuz, F8E8M0};
use super::host::{C32, C64, C128, HostArray, HostView};

pub(crate) mod sealed {
    use super::*;

    /// Conversions between typed ndarrays and the per-dtype storage enums.
    pub trait Sealed: Sized {
        fn wrap_array(array: ArcArray<Self, IxDyn>) -> HostArray;
        fn wrap_view(view: ArrayViewD<'_, Self>) -> HostView<'_>;
        fn unwrap_array(array: &HostArray) -> Option<&ArcArray<Self, IxDyn>>;
        fn unwrap_array_mut(array: &mut HostArray) -> Option<&mut ArcArray<Self, IxDyn>>;
        fn unwrap_view<'a>(view: &HostView<'a>) -> Option<ArrayViewD<'a, Self>>;
        /// The elements stored little-endian in `bytes`, if aligned and (for bools) valid.
        fn cast_bytes(bytes: &[u8]) -> Option<&[Self]>;
        /// The elements as writable bytes; `None` for `bool`, whose bytes may not be 2..=255.
        fn bytes_mut(elements: &mut [Self]) -> Option<&mut [u8]>;
    }
}

/// A Rust type that can be the element of a [`Tensor`](crate::Tensor).
///
/// Implemented for `f64`, `f32`, [`half::f16`], [`half::bf16`], `i64`, `i32`, `i16`, `i8`, `u8`,
/// `bool`, `u16`, `u32`, `u64`, [`num_complex::Complex`] of `f16`, `f32` and `f64`, and the
/// 8-bit floats of [`crate::dtype`] ([`F8E4M3`] and the others). Sealed: every dtype needs support
/// throughout the crate.
pub trait Element:
    Copy + Send + Sync + fmt::Debug + PartialEq + Default + 'static + sealed::Sealed
{
    /// The dtype of this element type.
    const DTYPE: DType;

    #[doc(hidden)]
    fn to_f64(self) -> f64;
    #[doc(hidden)]
    fn from_f64(value: f64) -> Self;
    #[doc(hidden)]
    fn to_i128(self) -> i128;
    #[doc(hidden)]
    fn try_from_i128(value: i128) -> Option<Self>;
    /// As a complex number: real values have no imaginary part.
    #[doc(hidden)]
    fn to_c64(self) -> Complex64 {
        Complex64::new(self.to_f64(), 0.0)
    }
    /// From a complex number: real types keep the real part, as PyTorch's casts do.
    #[doc(hidden)]
    fn from_c64(value: Complex64) -> Self {
        Self::from_f64(value.re)
    }
}

/// Reinterprets little-endian bytes as elements, checking alignment and bool validity.
macro_rules! bytes_as {
    (bool, $bytes:expr) => {
        bytemuck::checked::try_cast_slice::<u8, bool>($bytes).ok()
    };
    ($T:ty, $bytes:expr) => {
        if cfg!(target_endian = "little") {
            bytemuck::try_cast_slice::<u8, $T>($bytes).ok()
        } else {
            None
        }
    };
}

/// Elements as mutable bytes, for every type whose every bit pattern is valid.
macro_rules! bytes_of_mut {
    (bool, $elements:expr) => {{
        let _ = $elements;
        None
    }};
    ($T:ty, $elements:expr) => {
        if cfg!(target_endian = "little") {
            Some(bytemuck::cast_slice_mut::<$T, u8>($elements))
        } else {
            None
        }
    };
}

macro_rules! sealed_impl {
    ($($V:ident $T:ident),*) => {$(
        impl sealed::Sealed for $T {
            fn wrap_array(array: ArcArray<Self, IxDyn>) -> HostArray {
                HostArray::$V(array)
            }
            fn wrap_view(view: ArrayViewD<'_, Self>) -> HostView<'_> {
                HostView::$V(view)
            }
            fn unwrap_array(array: &HostArray) -> Option<&ArcArray<Self, IxDyn>> {
                match array {
                    HostArray::$V(a) => Some(a),
                    _ => None,
                }
            }
            fn unwrap_array_mut(array: &mut HostArray) -> Option<&mut ArcArray<Self, IxDyn>> {
                match array {
                    HostArray::$V(a) => Some(a),
                    _ => None,
                }
            }
            fn unwrap_view<'a>(view: &HostView<'a>) -> Option<ArrayViewD<'a, Self>> {
                match view {
                    HostView::$V(v) => Some(v.clone()),
                    _ => None,
                }
            }
            fn cast_bytes(bytes: &[u8]) -> Option<&[Self]> {
                bytes_as!($T, bytes)
            }
            fn bytes_mut(elements: &mut [Self]) -> Option<&mut [u8]> {
                bytes_of_mut!($T, elements)
            }
        }
    )*};
}
for_each_dtype!(sealed_impl);

/// Elements as writable bytes, where every byte pattern is a valid element.
pub(crate) fn bytes_mut<T: Element>(elements: &mut [T]) -> Option<&mut [u8]> {
    T::bytes_mut(elements)
}

/// Wraps a typed view into the per-dtype enum.
pub(crate) fn wrap_view<T: Element>(view: ArrayViewD<'_, T>) -> HostView<'_> {
    T::wrap_view(view)
}

impl HostArray {
    /// A view of the whole array.
    pub(crate) fn view(&self) -> HostView<'_> {
        dispatch!(self, HostArray, a => wrap_view(a.view()))
    }
}

macro_rules! float_element {
    ($($ty:ty => $dtype:ident, $to:expr, $from:expr;)*) => {$(
        impl Element for $ty {
            const DTYPE: DType = DType::$dtype;
            fn to_f64(self) -> f64 {
                ($to)(self)
            }
            fn from_f64(value: f64) -> Self {
                ($from)(value)
            }
            fn to_i128(self) -> i128 {
                // Saturating, as Rust's `as`; only explicit `Tensor::to_dtype` casts floats to ints.
                self.to_f64() as i128
            }
            fn try_from_i128(value: i128) -> Option<Self> {
                Some(Self::from_f64(value as f64))
            }
        }
    )*};
}

float_element! {
    f64 => F64, |v: f64| v, |v: f64| v;
    f32 => F32, f64::from, |v: f64| v as f32;
    f16 => F16, f16::to_f64, f16::from_f64;
    bf16 => BF16, bf16::to_f64, bf16::from_f64;
    // Through `f32`, as PyTorch converts them.
    F8E4M3 => F8E4M3, F8E4M3::to_f64, F8E4M3::from_f64;
    F8E5M2 => F8E5M2, F8E5M2::to_f64, F8E5M2::from_f64;
    F8E4M3Fnuz => F8E4M3Fnuz, F8E4M3Fnuz::to_f64, F8E4M3Fnuz::from_f64;
    F8E5M2Fnuz => F8E5M2Fnuz, F8E5M2Fnuz::to_f64, F8E5M2Fnuz::from_f64;
    F8E8M0 => F8E8M0, F8E8M0::to_f64, F8E8M0::from_f64;
}

macro_rules! complex_element {
    ($($part:ty => $dtype:ident;)*) => {$(
        impl Element for Complex<$part> {
            const DTYPE: DType = DType::$dtype;
            fn to_f64(self) -> f64 {
                self.re.to_f64()
            }
            fn from_f64(value: f64) -> Self {
                Complex::new(<$part>::from_f64(value), <$part>::from_f64(0.0))
            }
            fn to_i128(self) -> i128 {
                self.re.to_i128()
            }
            fn try_from_i128(value: i128) -> Option<Self> {
                Some(Self::from_f64(value as f64))
            }
            fn to_c64(self) -> Complex64 {
                Complex64::new(self.re.to_f64(), self.im.to_f64())
            }
            fn from_c64(value: Complex64) -> Self {
                Complex::new(<$part>::from_f64(value.re), <$part>::from_f64(value.im))
            }
        }
    )*};
}

complex_element! {
    f16 => C32;
    f32 => C64;
    f64 => C128;
}

macro_rules! int_element {
    ($($ty:ty => $dtype:ident;)*) => {$(
        impl Element for $ty {
            const DTYPE: DType = DType::$dtype;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(value: f64) -> Self {
                value as $ty
            }
            fn to_i128(self) -> i128 {
                i128::from(self)
            }
            fn try_from_i128(value: i128) -> Option<Self> {
                <$ty>::try_from(value).ok()
            }
        }
    )*};
}

int_element! {
    i64 => I64;
    i32 => I32;
    i16 => I16;
    i8 => I8;
    u8 => U8;
    u16 => U16;
    u32 => U32;
    u64 => U64;
}

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn from_f64(value: f64) -> Self {
        value != 0.0
    }
    fn to_i128(self) -> i128 {
        i128::from(self)
    }
    fn try_from_i128(value: i128) -> Option<Self> {
        match value {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_dtypes_and_conversions() {
        assert_eq!(<f16 as Element>::DTYPE, DType::F16);
        assert_eq!(<bool as Element>::DTYPE, DType::Bool);
        assert_eq!(i8::try_from_i128(300), None);
        assert_eq!(u8::try_from_i128(255), Some(255));
        assert_eq!(bool::try_from_i128(2), None);
        assert_eq!(bf16::from_f64(1.5).to_f64(), 1.5);
        assert_eq!(f16::from_f64(65504.0 * 2.0).to_f64(), f64::INFINITY);
    }
}
