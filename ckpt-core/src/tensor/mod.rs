//! Tensors: dynamically typed n-dimensional arrays ([`Tensor`]), borrowed views of them
//! ([`TensorView`]), and what can go wrong with them ([`TensorError`]).

mod cast;
#[cfg(feature = "cuda")]
mod cuda;
mod error;
#[cfg(feature = "candle")]
mod foreign;
mod mapped;
mod shape;
mod view;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytemuck::NoUninit;
use ndarray::{ArcArray, Array, ArrayViewD, ArrayViewMutD, Dimension, IxDyn};

pub(crate) use self::cast::cast_into;
pub use self::error::TensorError;
#[cfg(feature = "candle")]
pub(crate) use self::foreign::ForeignTensor;
pub use self::mapped::Backing;
use self::mapped::Mapped;
pub(crate) use self::shape::check_size;
#[cfg(feature = "cuda")]
use self::view::Src;
pub(crate) use self::view::StorageId;
pub use self::view::TensorView;
use crate::device::{Device, DeviceError};
use crate::dtype::{DType, Element, HostArray};

/// A tensor: a dtype, a shape and reference-counted storage, in host memory or, with the
/// `cuda` feature, on a GPU ([`Tensor::to`]).
///
/// Clones are cheap and share data; writing through [`Tensor::array_mut`] copies first when the
/// data is shared (copy on write), so a clone never changes behind your back.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{DType, Tensor};
/// use ndarray::array;
///
/// let t = Tensor::from(array![[1.0f32, 2.0], [3.0, 4.0]]);
/// assert_eq!(t.dtype(), DType::F32);
/// assert_eq!(t.shape(), &[2, 2]);
/// assert_eq!(t.to_le_bytes()?.len(), 16);
///
/// let back: ndarray::Array2<f32> = t.to_array()?;
/// assert_eq!(back[[1, 0]], 3.0);
/// assert!(t.to_array::<i64, ndarray::Ix2>().is_err()); // wrong dtype: an error, not a panic
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Tensor {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// Data in an ndarray.
    Host(HostArray),
    /// Data read in place from shared bytes, such as a memory-mapped file.
    Mapped(Mapped),
    /// Data on a GPU.
    #[cfg(feature = "cuda")]
    Cuda(Arc<cuda::CudaStorage>),
}

impl Tensor {
    /// A tensor of `dtype` and `shape` filled with zeros (`false` for `BOOL`).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Self, TensorError> {
        check_size(dtype, shape)?;
        fn zeros<T: Element>(shape: &[usize]) -> HostArray {
            T::wrap_array(ArcArray::from_elem(IxDyn(shape), T::default()))
        }
        let host = with_element!(dtype, T => zeros::<T>(shape));
        Ok(Tensor::from_host(host))
    }

    fn from_host(host: HostArray) -> Self {
        Tensor {
            repr: Repr::Host(host),
        }
    }

    /// A tensor reading `range` of `backing` in place, without copying, when the host is
    /// little-endian and the range is aligned for the dtype; a decoded copy otherwise. Checks
    /// the length against the shape and every byte of a `BOOL` tensor.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use std::sync::Arc;
    /// use ckpt::{DType, Tensor};
    ///
    /// let bytes: Arc<Vec<u8>> = Arc::new([1.0f32, 2.0, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect());
    /// let t = Tensor::mapped(bytes.clone(), 4..12, DType::F32, &[2])?;
    /// assert_eq!(t.view().to_f64_vec()?, [2.0, 3.0]);
    /// assert!(Tensor::mapped(bytes, 0..12, DType::F32, &[2]).is_err()); // 12 bytes for 8
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mapped(
        backing: Arc<dyn Backing>,
        range: Range<usize>,
        dtype: DType,
        shape: &[usize],
    ) -> Result<Self, TensorError> {
        let expected = check_size(dtype, shape)?;
        let bytes = backing.bytes().get(range.clone()).unwrap_or(&[]);
        if bytes.len() != expected || range.len() != expected {
            return Err(TensorError::ByteLength {
                dtype,
                shape: shape.to_vec(),
                expected,
                actual: bytes.len(),
            });
        }
        fn castable<T: Element>(bytes: &[u8]) -> bool {
            T::cast_bytes(bytes).is_some()
        }
        let in_place = with_element!(dtype, T => castable::<T>(bytes));
        if !in_place {
            // Misaligned, big-endian host, or a bad bool byte, which `from_le_bytes` reports.
            return Tensor::from_le_bytes(dtype, shape, bytes);
        }
        Ok(Tensor {
            repr: Repr::Mapped(Mapped {
                backing,
                range,
                dtype,
                shape: shape.to_vec(),
            }),
        })
    }

    /// Whether the data is read in place from a file rather than held in memory of its own.
    pub fn is_mapped(&self) -> bool {
        matches!(self.repr, Repr::Mapped(_))
    }

    /// The ndarray storage, copying mapped data into memory of its own first; `None` for data
    /// on a GPU.
    fn host_mut(&mut self) -> Option<&mut HostArray> {
        if let Repr::Mapped(mapped) = &self.repr {
            *self = view::host_copy(&mapped.host_view());
        }
        match &mut self.repr {
            Repr::Host(host) => Some(host),
            Repr::Mapped(_) => unreachable!("mapped data was copied above"),
            #[cfg(feature = "cuda")]
            Repr::Cuda(_) => None,
        }
    }

    /// The host storage of a tensor in host memory of its own.
    #[cfg(any(feature = "cuda", feature = "candle"))]
    pub(crate) fn into_host(self) -> Option<HostArray> {
        match self.repr {
            Repr::Host(host) => Some(host),
            _ => None,
        }
    }

    /// An error for writing to a GPU tensor's elements from the host.
    fn on_device(&self) -> TensorError {
        TensorError::Device(DeviceError::Driver {
            device: self.device(),
            operation: "writing elements from the host",
            message: "the tensor is on a GPU; move it with `.to(Device::Cpu)` first".to_owned(),
        })
    }

    /// A tensor from elements in C order and a shape.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// # use ckpt::Tensor;
    /// let t = Tensor::from_vec(vec![1i64, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    /// assert_eq!(t.shape(), &[2, 3]);
    /// assert!(Tensor::from_vec(vec![1i64, 2], &[3]).is_err());
    /// ```
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Self, TensorError> {
        let len = data.len();
        let array = Array::from_shape_vec(IxDyn(shape), data).map_err(|_| TensorError::Shape {
            expected: format!("{len} elements"),
            actual: shape.to_vec(),
        })?;
        Ok(Self::from(array))
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Self {
        Self::from(ndarray::arr0(value))
    }

    /// Decodes C-contiguous little-endian bytes, as stored in checkpoint files.
    ///
    /// The length must be exactly the element count times the item size, and every byte of a
    /// `BOOL` tensor must be 0 or 1; the bytes need no particular alignment.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Self, TensorError> {
        let expected = check_size(dtype, shape)?;
        if bytes.len() != expected {
            return Err(TensorError::ByteLength {
                dtype,
                shape: shape.to_vec(),
                expected,
                actual: bytes.len(),
            });
        }
        fn decode<T: Element + NoUninit + bytemuck::AnyBitPattern>(
            shape: &[usize],
            bytes: &[u8],
        ) -> HostArray {
            let mut data: Vec<T> = bytemuck::pod_collect_to_vec(bytes);
            if cfg!(target_endian = "big") {
                for x in &mut data {
                    bytemuck::bytes_of_mut(x).reverse();
                }
            }
            // The length was checked against the shape above.
            let array =
                ArcArray::from_shape_vec(IxDyn(shape), data).expect("length checked against shape");
            T::wrap_array(array)
        }
        let host = with_element!(dtype, T => decode::<T>(shape, bytes), bool => {
            if let Some(index) = bytes.iter().position(|&b| b > 1) {
                return Err(TensorError::InvalidBool {
                    index,
                    byte: bytes[index],
                });
            }
            let data: Vec<bool> = bytes.iter().map(|&b| b == 1).collect();
            let array = ArcArray::from_shape_vec(IxDyn(shape), data)
                .expect("length checked against shape");
            HostArray::Bool(array)
        });
        Ok(Tensor::from_host(host))
    }

    /// A borrowed view of this tensor.
    pub fn view(&self) -> TensorView<'_> {
        match &self.repr {
            Repr::Host(host) => TensorView::host(host.view()),
            Repr::Mapped(mapped) => mapped.view(),
            #[cfg(feature = "cuda")]
            Repr::Cuda(storage) => TensorView {
                src: Src::Cuda(storage),
            },
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.view().dtype()
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        match &self.repr {
            Repr::Host(host) => dispatch!(host, HostArray, a => a.shape()),
            Repr::Mapped(mapped) => &mapped.shape,
            #[cfg(feature = "cuda")]
            Repr::Cuda(storage) => storage.shape(),
        }
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }

    /// The size of the data in bytes.
    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype().size_in_bytes()
    }

    /// The device the tensor lives on.
    pub fn device(&self) -> Device {
        self.view().device()
    }

    /// This tensor on `device`, as `tensor.to(device)` in PyTorch: a tensor already there is
    /// cloned, sharing its data; otherwise the data is copied, between host and GPU through
    /// pinned staging buffers (host memory stays bounded however large the tensor). A tensor
    /// read in place from a file is copied from the file straight to the GPU.
    ///
    /// Moving to a GPU needs the `cuda` feature and a working CUDA driver; without them the
    /// error says why, and never panics.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::{Device, Tensor};
    /// use ckpt::device::DeviceError;
    ///
    /// let t = Tensor::from(ndarray::array![1.0f32, 2.0]);
    /// assert_eq!(t.to(Device::Cpu)?, t);
    /// match t.to(Device::Cuda(0)) {
    ///     Ok(gpu) => assert_eq!(gpu.device(), Device::Cuda(0)),
    ///     Err(DeviceError::CudaUnavailable { reason, .. }) => println!("{reason}"),
    ///     Err(e) => println!("{e}"), // no such GPU here, or a driver error
    /// }
    /// # Ok::<(), DeviceError>(())
    /// ```
    pub fn to(&self, device: Device) -> Result<Tensor, DeviceError> {
        if device == self.device() {
            return Ok(self.clone());
        }
        crate::device::check(device)?;
        match device {
            Device::Cpu => self.view().to_tensor(),
            #[cfg(feature = "cuda")]
            Device::Cuda(ordinal) => {
                let storage = cuda::CudaStorage::upload(
                    ordinal,
                    self.dtype(),
                    self.shape(),
                    &self.view().to_le_bytes()?,
                )?;
                Ok(Tensor {
                    repr: Repr::Cuda(Arc::new(storage)),
                })
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => unreachable!("`check` refuses CUDA devices without the feature"),
        }
    }

    /// The data as a typed ndarray view, or an error if `T` is not the tensor's element type.
    pub fn array<T: Element>(&self) -> Result<ArrayViewD<'_, T>, TensorError> {
        let host = match &self.repr {
            Repr::Host(host) => host.view(),
            Repr::Mapped(mapped) => mapped.host_view(),
            #[cfg(feature = "cuda")]
            Repr::Cuda(storage) => {
                if self.dtype() != T::DTYPE {
                    // Before the GPU data is copied for nothing.
                    return Err(TensorError::DType {
                        expected: T::DTYPE,
                        actual: self.dtype(),
                    });
                }
                storage.host()?.view()
            }
        };
        T::unwrap_view(&host).ok_or(TensorError::DType {
            expected: T::DTYPE,
            actual: self.dtype(),
        })
    }

    /// The data as a typed mutable ndarray view; copies the data first if it is shared.
    pub fn array_mut<T: Element>(&mut self) -> Result<ArrayViewMutD<'_, T>, TensorError> {
        let dtype = self.dtype();
        let on_device = self.on_device();
        let host = self.host_mut().ok_or(on_device)?;
        T::unwrap_array_mut(host)
            .map(|a| a.view_mut())
            .ok_or(TensorError::DType {
                expected: T::DTYPE,
                actual: dtype,
            })
    }

    /// A copy of the data as an owned ndarray of element type `T` and dimensionality `D`.
    pub fn to_array<T: Element, D: Dimension>(&self) -> Result<Array<T, D>, TensorError> {
        self.view().to_array()
    }

    /// The data as C-contiguous little-endian bytes: borrowed when the layout allows, else
    /// copied; an error if a GPU holding the data fails to copy it to the host.
    pub fn to_le_bytes(&self) -> Result<Cow<'_, [u8]>, DeviceError> {
        self.view().to_le_bytes()
    }

    /// Whether both tensors read the same memory (clones of one tensor do).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        self.view().shares_storage(&other.view())
    }

    /// A copy converted to `dtype`, as `tensor.to(dtype)` in PyTorch: floats round to the nearest
    /// representable value, floats to integers truncate toward zero (saturating), and integers to
    /// narrower integers fail if a value does not fit. A tensor that already has `dtype` is cloned,
    /// sharing its data.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor, TensorError> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let mut out = Tensor::zeros(dtype, self.shape())?;
        let src = self.view();
        let dst = out.host_mut().expect("zeros are in host memory");
        dispatch!(dst, HostArray, dst => cast_into(&src, &mut dst.view_mut()))?;
        Ok(out.to(self.device())?)
    }

    /// Overwrites the elements with `src`'s, casting as [`Tensor::to_dtype`] does. The shapes
    /// must be equal. Writes in place when the data is not shared; otherwise replaces it, so
    /// clones keep the old values.
    pub fn copy_from(&mut self, src: &TensorView<'_>) -> Result<(), TensorError> {
        if src.shape() != self.shape() {
            return Err(TensorError::Shape {
                expected: format!("shape {:?}", self.shape()),
                actual: src.shape().to_vec(),
            });
        }
        #[cfg(feature = "cuda")]
        if let Repr::Cuda(storage) = &mut self.repr {
            let dtype = storage.dtype();
            let cast;
            let src = if src.dtype() == dtype {
                src.clone()
            } else {
                cast = src.to_tensor()?.to_dtype(dtype)?;
                cast.view()
            };
            let bytes = src.to_le_bytes()?;
            if let Some(storage) = Arc::get_mut(storage) {
                return Ok(storage.overwrite(&bytes)?);
            }
            let ordinal = storage.ordinal();
            let fresh = cuda::CudaStorage::upload(ordinal, dtype, src.shape(), &bytes)?;
            *storage = Arc::new(fresh);
            return Ok(());
        }
        let unique = match &self.repr {
            Repr::Host(host) => dispatch!(host, HostArray, a => a.is_unique()),
            Repr::Mapped(_) => false,
            #[cfg(feature = "cuda")]
            Repr::Cuda(_) => false,
        };
        if !unique && src.dtype() == self.dtype() {
            // Copy the source once, rather than the shared data and then the source.
            *self = src.to_tensor()?;
            return Ok(());
        }
        if !unique {
            *self = Tensor::zeros(self.dtype(), self.shape())?;
        }
        let dst = self
            .host_mut()
            .expect("host data: GPU tensors returned above");
        dispatch!(dst, HostArray, dst => cast_into(src, &mut dst.view_mut()))
    }

    /// The elements as writable little-endian bytes in C order, if they can be: a host tensor
    /// of a dtype other than `BOOL`. Shared or mapped data is copied first, so writing never
    /// shows through a clone. `None` for tensors on a GPU.
    pub fn contiguous_bytes_mut(&mut self) -> Option<&mut [u8]> {
        dispatch!(self.host_mut()?, HostArray, a => {
            if !a.is_standard_layout() {
                *a = a.as_standard_layout().into_owned().into_shared();
            }
            a.as_slice_mut().and_then(|s| crate::dtype::bytes_mut(s))
        })
    }
}

impl<T: Element, D: Dimension> From<Array<T, D>> for Tensor {
    /// Takes ownership of the array's data without copying it.
    fn from(array: Array<T, D>) -> Self {
        Tensor::from_host(T::wrap_array(array.into_dyn().into_shared()))
    }
}

impl<T: Element, D: Dimension> From<ArcArray<T, D>> for Tensor {
    /// Shares the array's data without copying it.
    fn from(array: ArcArray<T, D>) -> Self {
        Tensor::from_host(T::wrap_array(array.into_dyn()))
    }
}

impl PartialEq for Tensor {
    /// Equal dtype, shape and values (so a tensor holding NaN is not equal to itself, as with
    /// `torch.equal`).
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};
    use ndarray::{Array2, Ix1, Ix2, array, s};

    fn values<T: Element>(t: &Tensor) -> Vec<T> {
        t.array::<T>().unwrap().iter().copied().collect()
    }

    #[test]
    fn snapshots_of_large_tensors_copy_every_element_in_parallel_parts() {
        // 5 MiB and 3 odd elements: parts of 2 MiB and a short last one; then a large
        // non-contiguous view, copied serially in logical order.
        let n = (5 << 20) / 4 + 3;
        let a = ndarray::Array1::from_iter((0..n).map(|i| i as f32 * 0.25));
        let copy = TensorView::from(a.view()).to_owned_tensor().unwrap();
        assert_eq!(values::<f32>(&copy), a.to_vec());
        let m = Array2::from_shape_fn((1024, 1100), |(i, j)| (i * 1100 + j) as i32);
        let copy = TensorView::from(m.t()).to_owned_tensor().unwrap();
        assert_eq!(
            values::<i32>(&copy),
            m.t().iter().copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn array_round_trip_for_every_element_type() {
        fn round_trip<T: Element>(values: [T; 3]) {
            let t = Tensor::from(Array::from(values.to_vec()));
            assert_eq!(t.dtype(), T::DTYPE);
            assert_eq!(t.shape(), &[3]);
            let back: Array<T, Ix1> = t.to_array().unwrap();
            assert_eq!(back.to_vec(), values.to_vec());
        }
        round_trip([1.5f64, -2.0, 3.25]);
        round_trip([1.5f32, -2.0, 3.25]);
        round_trip([f16::from_f32(1.5), f16::ZERO, f16::MAX]);
        round_trip([bf16::from_f32(1.5), bf16::ONE, bf16::MIN]);
        round_trip([i64::MIN, 0, i64::MAX]);
        round_trip([i32::MIN, 0, i32::MAX]);
        round_trip([i16::MIN, 0, i16::MAX]);
        round_trip([i8::MIN, 0, i8::MAX]);
        round_trip([0u8, 7, 255]);
        round_trip([true, false, true]);
    }

    #[test]
    fn wrong_typed_access_is_an_error() {
        let t = Tensor::from(array![1.0f32, 2.0]);
        assert_eq!(
            t.to_array::<i64, Ix1>().unwrap_err(),
            TensorError::DType {
                expected: DType::I64,
                actual: DType::F32
            }
        );
        let err = t.to_array::<f32, Ix2>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch: expected 2 dimensions, got shape [2]"
        );
    }

    #[test]
    fn le_bytes_round_trip_and_layout() {
        let t = Tensor::from(array![[1.0f32, 2.0], [3.0, 4.0]]);
        let bytes = t.to_le_bytes().unwrap();
        assert!(matches!(bytes, Cow::Borrowed(_)));
        let expected: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(&*bytes, &expected[..]);
        let back = Tensor::from_le_bytes(DType::F32, &[2, 2], &bytes).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn non_contiguous_arrays_are_read_in_logical_order() {
        let a: Array2<i32> = array![[1, 2, 3], [4, 5, 6]];
        // A transposed (Fortran-order) owned array and a strided, reversed view.
        let t = Tensor::from(a.t().to_owned());
        assert_eq!(t.shape(), &[3, 2]);
        let expected: Vec<u8> = [1i32, 4, 2, 5, 3, 6]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(&*t.to_le_bytes().unwrap(), &expected[..]);

        let view = TensorView::from(a.slice(s![.., ..;-2]));
        assert!(!view.is_contiguous());
        let expected: Vec<u8> = [3i32, 1, 6, 4]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(&*view.to_le_bytes().unwrap(), &expected[..]);
        assert_eq!(
            view.to_tensor().unwrap().to_array::<i32, Ix2>().unwrap(),
            array![[3, 1], [6, 4]]
        );
    }

    #[test]
    fn from_le_bytes_checks_length_and_bools() {
        let err = Tensor::from_le_bytes(DType::F32, &[2, 3], &[0; 20]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "F32 tensor of shape [2, 3] needs 24 bytes, got 20"
        );
        let err = Tensor::from_le_bytes(DType::Bool, &[3], &[0, 1, 2]).unwrap_err();
        assert_eq!(err, TensorError::InvalidBool { index: 2, byte: 2 });
        let err = Tensor::from_le_bytes(DType::F64, &[usize::MAX, 2], &[]).unwrap_err();
        assert!(matches!(err, TensorError::SizeOverflow { .. }));
        // Unaligned input is fine.
        let bytes = [0u8, 0, 0, 128, 63];
        let t = Tensor::from_le_bytes(DType::F32, &[1], &bytes[1..]).unwrap();
        assert_eq!(t.array::<f32>().unwrap()[[0]], 1.0);
    }

    #[test]
    fn clones_share_and_copy_on_write() {
        let mut a = Tensor::from(array![1.0f64, 2.0]);
        let b = a.clone();
        assert!(a.shares_storage(&b));
        a.array_mut::<f64>().unwrap()[[0]] = 9.0;
        assert!(!a.shares_storage(&b));
        assert_eq!(b.array::<f64>().unwrap()[[0]], 1.0);
        assert_eq!(a.array::<f64>().unwrap()[[0]], 9.0);
    }

    #[test]
    fn copy_from_casts_floats_and_checks_ints() {
        let mut t = Tensor::from(array![0.0f32, 0.0]);
        t.copy_from(&Tensor::from(array![0.5f64, 1e300]).view())
            .unwrap();
        assert_eq!(values::<f32>(&t), [0.5, f32::INFINITY]);

        let mut i = Tensor::from(array![0i8, 0]);
        let err = i
            .copy_from(&Tensor::from(array![1i64, 300]).view())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot cast I64 to I8: value 300 at element 1 is out of range"
        );
        assert_eq!(values::<i8>(&i), [0, 0], "untouched on error");
        i.copy_from(&Tensor::from(array![-5i64, 100]).view())
            .unwrap();
        assert_eq!(values::<i8>(&i), [-5, 100]);
    }

    #[test]
    fn copy_from_a_shared_tensor_leaves_clones_alone() {
        let mut t = Tensor::from(array![1u8, 2]);
        let clone = t.clone();
        t.copy_from(&Tensor::from(array![7u8, 8]).view()).unwrap();
        assert_eq!(values::<u8>(&t), [7, 8]);
        assert_eq!(values::<u8>(&clone), [1, 2]);
    }

    #[test]
    fn to_dtype() {
        let t = Tensor::from(array![1.7f32, -2.2]);
        assert_eq!(
            t.to_dtype(DType::I32).unwrap(),
            Tensor::from(array![1i32, -2])
        );
        assert_eq!(
            t.to_dtype(DType::Bool).unwrap(),
            Tensor::from(array![true, true])
        );
        let bf = t.to_dtype(DType::BF16).unwrap();
        assert_eq!(bf.array::<bf16>().unwrap()[[0]], bf16::from_f32(1.7));
    }

    #[test]
    fn zeros_and_scalars() {
        let z = Tensor::zeros(DType::BF16, &[0, 4]).unwrap();
        assert_eq!(
            (z.numel(), z.nbytes(), z.to_le_bytes().unwrap().len()),
            (0, 0, 0)
        );
        let s = Tensor::scalar(3i64);
        assert_eq!((s.ndim(), s.numel()), (0, 1));
        assert_eq!(&*s.to_le_bytes().unwrap(), &3i64.to_le_bytes());
    }

    #[test]
    fn debug_shows_dtype_shape_and_values() {
        let t = Tensor::from(array![1i16, 2]);
        assert_eq!(format!("{t:?}"), "I16[2] [1, 2]");
    }

    #[test]
    fn write_le_bytes_counts_the_bytes_the_data_gives_whether_or_not_they_fit() {
        // Transposed, so the bytes come element by element in C order.
        let t = Tensor::from(array![[1u16, 2], [3, 4]].reversed_axes());
        let mut short = [0u8; 6];
        assert_eq!(t.view().write_le_bytes(&mut short).unwrap(), 8);
        assert_eq!(short, [1, 0, 3, 0, 2, 0]);
        let mut long = [9u8; 10];
        assert_eq!(t.view().write_le_bytes(&mut long).unwrap(), 8);
        assert_eq!(long, [1, 0, 3, 0, 2, 0, 4, 0, 9, 9]);
    }

    /// A foreign tensor of shape [2] (u8) that streams `given` bytes in pieces of 3.
    #[cfg(feature = "candle")]
    struct Streams {
        given: usize,
    }

    #[cfg(feature = "candle")]
    impl ForeignTensor for Streams {
        fn shape(&self) -> &[usize] {
            &[2]
        }

        fn device(&self) -> Device {
            Device::Cpu
        }

        fn stream_le_bytes(&self, sink: &mut dyn FnMut(&[u8])) -> Result<(), DeviceError> {
            let bytes: Vec<u8> = (1..=self.given as u8).collect();
            bytes.chunks(3).for_each(sink);
            Ok(())
        }

        fn storage_id(&self) -> Option<(usize, Vec<isize>)> {
            None
        }
    }

    #[cfg(feature = "candle")]
    #[test]
    fn write_le_bytes_of_streamed_data_counts_bytes_past_the_end_too() {
        for (given, written) in [(2, [1, 2, 0, 0]), (7, [1, 2, 3, 4])] {
            let view = TensorView::foreign(Streams { given }, DType::U8);
            let mut out = [0u8; 4];
            assert_eq!(view.write_le_bytes(&mut out).unwrap(), given);
            assert_eq!(out, written);
        }
    }
}
