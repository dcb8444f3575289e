//! Tensors: dynamically typed n-dimensional arrays, and borrowed views of them.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytemuck::NoUninit;
use ndarray::{ArcArray, Array, ArrayView, ArrayViewD, ArrayViewMutD, Dimension, IxDyn, Zip};

use crate::device::DeviceError;
use crate::element::Element;
use crate::storage::{HostArray, HostView};
use crate::{DType, DTypeKind, Device};

/// What went wrong when building, converting or casting a tensor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// A typed access asked for another element type than the tensor holds.
    #[error("dtype mismatch: the tensor holds {actual}, not {expected}")]
    DType {
        /// The dtype that was asked for.
        expected: DType,
        /// The tensor's dtype.
        actual: DType,
    },
    /// The shape does not fit the requested dimensionality or data length.
    #[error("shape mismatch: expected {expected}, got shape {actual:?}")]
    Shape {
        /// What was expected, in words.
        expected: String,
        /// The shape that was found.
        actual: Vec<usize>,
    },
    /// The number of elements or bytes of a shape does not fit in `usize`.
    #[error("shape {shape:?} of {dtype} is too large: its size in bytes overflows")]
    SizeOverflow {
        /// The element type.
        dtype: DType,
        /// The shape whose size overflowed.
        shape: Vec<usize>,
    },
    /// A byte buffer's length is not the shape's element count times the item size.
    #[error("{dtype} tensor of shape {shape:?} needs {expected} bytes, got {actual}")]
    ByteLength {
        /// The element type.
        dtype: DType,
        /// The shape.
        shape: Vec<usize>,
        /// Element count × item size.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A byte of a `BOOL` tensor is neither 0 nor 1.
    #[error("invalid BOOL value {byte:#04x} at element {index}: must be 0 or 1")]
    InvalidBool {
        /// Index of the element in C order.
        index: usize,
        /// The offending byte.
        byte: u8,
    },
    /// An integer value does not fit the target type of a cast.
    #[error("cannot cast {from} to {to}: value {value} at element {index} is out of range")]
    OutOfRange {
        /// The source dtype.
        from: DType,
        /// The target dtype.
        to: DType,
        /// The value that does not fit.
        value: i128,
        /// Index of the element in C order.
        index: usize,
    },
    /// The tensor is on a device that cannot do what was asked, or could not be reached.
    #[error("{0}")]
    Device(#[from] DeviceError),
}

/// A tensor: a dtype, a shape and reference-counted storage, in host memory or, with the
/// `cuda` feature, on a GPU ([`Tensor::to`]).
///
/// Clones are cheap and share data; writing through [`Tensor::array_mut`] copies first when the
/// data is shared (copy on write), so a clone never changes behind your back.
///
/// ```
/// use ckpt_core::{DType, Tensor};
/// use ndarray::array;
///
/// let t = Tensor::from(array![[1.0f32, 2.0], [3.0, 4.0]]);
/// assert_eq!(t.dtype(), DType::F32);
/// assert_eq!(t.shape(), &[2, 2]);
/// assert_eq!(t.to_le_bytes().len(), 16);
///
/// let back: ndarray::Array2<f32> = t.to_array().unwrap();
/// assert_eq!(back[[1, 0]], 3.0);
/// assert!(t.to_array::<i64, ndarray::Ix2>().is_err()); // wrong dtype: an error, not a panic
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
    Cuda(Arc<crate::cuda::CudaStorage>),
}

/// Bytes that tensors can borrow for as long as they live: a memory-mapped file, a buffer.
pub(crate) trait Backing: Send + Sync + 'static {
    fn bytes(&self) -> &[u8];

    /// A hint that `bytes`, a part of [`Backing::bytes`], will not be read again soon, so its
    /// pages may leave resident memory (they stay readable).
    fn release(&self, bytes: &[u8]) {
        let _ = bytes;
    }

    /// A hint that `bytes` will be read next: map them in one go rather than page by page.
    fn prefetch(&self, bytes: &[u8]) {
        let _ = bytes;
    }
}

#[derive(Clone)]
struct Mapped {
    backing: Arc<dyn Backing>,
    range: Range<usize>,
    dtype: DType,
    shape: Vec<usize>,
}

impl Mapped {
    fn view(&self) -> TensorView<'_> {
        let bytes = self.backing.bytes().get(self.range.clone()).unwrap_or(&[]);
        fn view<'a, T: Element>(bytes: &'a [u8], shape: &[usize]) -> HostView<'a> {
            // `Tensor::mapped` checked the length, alignment and bool bytes of this range, and
            // backings are immutable, so the cast and the shape cannot fail.
            let elements = T::cast_bytes(bytes).expect("mapped range checked at construction");
            let array = ArrayViewD::from_shape(IxDyn(shape), elements)
                .expect("mapped length checked at construction");
            T::wrap_view(array)
        }
        let shape = &self.shape;
        TensorView::host(match self.dtype {
            DType::F64 => view::<f64>(bytes, shape),
            DType::F32 => view::<f32>(bytes, shape),
            DType::F16 => view::<half::f16>(bytes, shape),
            DType::BF16 => view::<half::bf16>(bytes, shape),
            DType::I64 => view::<i64>(bytes, shape),
            DType::I32 => view::<i32>(bytes, shape),
            DType::I16 => view::<i16>(bytes, shape),
            DType::I8 => view::<i8>(bytes, shape),
            DType::U8 => view::<u8>(bytes, shape),
            DType::Bool => view::<bool>(bytes, shape),
        })
    }
}

/// A borrowed tensor: a dtype, a shape and a strided view of someone else's data.
///
/// Model fields, loaded files and [`Tensor`]s all lend out `TensorView`s, which is how a
/// [`state_dict`](crate::StateDict::state_dict) avoids copying tensor data.
///
/// A view of a GPU tensor knows its dtype, shape and device without touching the GPU; methods
/// that read values (`array`, `to_le_bytes`, comparisons) copy the data to host memory, and
/// panic if the GPU fails the copy (a lost device), which [`Tensor::to`] reports as an error.
#[derive(Clone)]
pub struct TensorView<'a> {
    src: Src<'a>,
}

#[derive(Clone)]
enum Src<'a> {
    Host(HostView<'a>),
    #[cfg(feature = "cuda")]
    Cuda(&'a Arc<crate::cuda::CudaStorage>),
}

impl Tensor {
    /// A tensor of `dtype` and `shape` filled with zeros (`false` for `BOOL`).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Self, TensorError> {
        check_size(dtype, shape)?;
        fn zeros<T: Element>(shape: &[usize]) -> HostArray {
            T::wrap_array(ArcArray::from_elem(IxDyn(shape), T::default()))
        }
        let host = match dtype {
            DType::F64 => zeros::<f64>(shape),
            DType::F32 => zeros::<f32>(shape),
            DType::F16 => zeros::<half::f16>(shape),
            DType::BF16 => zeros::<half::bf16>(shape),
            DType::I64 => zeros::<i64>(shape),
            DType::I32 => zeros::<i32>(shape),
            DType::I16 => zeros::<i16>(shape),
            DType::I8 => zeros::<i8>(shape),
            DType::U8 => zeros::<u8>(shape),
            DType::Bool => zeros::<bool>(shape),
        };
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
    pub(crate) fn mapped(
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
        let in_place = match dtype {
            DType::F64 => castable::<f64>(bytes),
            DType::F32 => castable::<f32>(bytes),
            DType::F16 => castable::<half::f16>(bytes),
            DType::BF16 => castable::<half::bf16>(bytes),
            DType::I64 => castable::<i64>(bytes),
            DType::I32 => castable::<i32>(bytes),
            DType::I16 => castable::<i16>(bytes),
            DType::I8 => castable::<i8>(bytes),
            DType::U8 => castable::<u8>(bytes),
            DType::Bool => castable::<bool>(bytes),
        };
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
            let copy = mapped.view().to_tensor();
            *self = copy;
        }
        match &mut self.repr {
            Repr::Host(host) => Some(host),
            Repr::Mapped(_) => unreachable!("mapped data was copied above"),
            #[cfg(feature = "cuda")]
            Repr::Cuda(_) => None,
        }
    }

    /// The host storage of a tensor in host memory of its own.
    #[cfg(feature = "cuda")]
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
    /// # use ckpt_core::Tensor;
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
        let host = match dtype {
            DType::F64 => decode::<f64>(shape, bytes),
            DType::F32 => decode::<f32>(shape, bytes),
            DType::F16 => decode::<half::f16>(shape, bytes),
            DType::BF16 => decode::<half::bf16>(shape, bytes),
            DType::I64 => decode::<i64>(shape, bytes),
            DType::I32 => decode::<i32>(shape, bytes),
            DType::I16 => decode::<i16>(shape, bytes),
            DType::I8 => decode::<i8>(shape, bytes),
            DType::U8 => decode::<u8>(shape, bytes),
            DType::Bool => {
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
            }
        };
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
    /// use ckpt_core::{Device, DeviceError, Tensor};
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
            Device::Cpu => Ok(self.view().to_tensor_checked()?),
            #[cfg(feature = "cuda")]
            Device::Cuda(ordinal) => {
                let storage = crate::cuda::CudaStorage::upload(
                    ordinal,
                    self.dtype(),
                    self.shape(),
                    &self.view().try_le_bytes()?,
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
        self.view().array()
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

    /// The data as C-contiguous little-endian bytes: borrowed when the layout allows, else copied.
    pub fn to_le_bytes(&self) -> Cow<'_, [u8]> {
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
                cast = src.to_tensor_checked()?.to_dtype(dtype)?;
                cast.view()
            };
            let bytes = src.try_le_bytes()?;
            if let Some(storage) = Arc::get_mut(storage) {
                return Ok(storage.overwrite(&bytes)?);
            }
            let ordinal = storage.ordinal();
            let fresh = crate::cuda::CudaStorage::upload(ordinal, dtype, src.shape(), &bytes)?;
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
            *self = src.to_tensor();
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
            a.as_slice_mut().and_then(|s| crate::element::bytes_mut(s))
        })
    }
}

impl<'a> TensorView<'a> {
    fn host(host: HostView<'a>) -> Self {
        TensorView {
            src: Src::Host(host),
        }
    }

    /// The data in host memory: borrowed, or for a GPU tensor its host copy, made on first use.
    ///
    /// # Panics
    ///
    /// If the GPU fails the copy; [`try_host_view`](Self::try_host_view) reports that instead.
    fn host_view(&self) -> HostView<'a> {
        self.try_host_view().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`host_view`](Self::host_view), with a GPU's failure as an error.
    fn try_host_view(&self) -> Result<HostView<'a>, DeviceError> {
        match &self.src {
            Src::Host(host) => Ok(host.clone()),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => Ok(storage.host()?.view()),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        fn dtype_of<T: Element>(_: &ArrayViewD<'_, T>) -> DType {
            T::DTYPE
        }
        match &self.src {
            Src::Host(host) => dispatch!(host, HostView, v => dtype_of(v)),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => storage.dtype(),
        }
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        match &self.src {
            Src::Host(host) => dispatch!(host, HostView, v => v.shape()),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => storage.shape(),
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

    /// The device the data lives on.
    pub fn device(&self) -> Device {
        match &self.src {
            Src::Host(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => Device::Cuda(storage.ordinal()),
        }
    }

    /// A view of the same data borrowed for a shorter time.
    pub fn view(&self) -> TensorView<'_> {
        match &self.src {
            Src::Host(host) => TensorView::host(
                dispatch!(host, HostView, v => crate::element::wrap_view(v.view())),
            ),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => TensorView {
                src: Src::Cuda(storage),
            },
        }
    }

    /// Whether the elements are laid out in C order without gaps (GPU data always is).
    pub fn is_contiguous(&self) -> bool {
        match &self.src {
            Src::Host(host) => dispatch!(host, HostView, v => v.is_standard_layout()),
            #[cfg(feature = "cuda")]
            Src::Cuda(_) => true,
        }
    }

    /// The data as a typed ndarray view, or an error if `T` is not the element type, or if
    /// the GPU holding the data fails to copy it to the host.
    pub fn array<T: Element>(&self) -> Result<ArrayViewD<'a, T>, TensorError> {
        let wrong_dtype = || TensorError::DType {
            expected: T::DTYPE,
            actual: self.dtype(),
        };
        if self.dtype() != T::DTYPE {
            return Err(wrong_dtype()); // before a GPU tensor is copied for nothing
        }
        T::unwrap_view(&self.try_host_view()?).ok_or_else(wrong_dtype)
    }

    /// A copy of the data as an owned ndarray of element type `T` and dimensionality `D`.
    pub fn to_array<T: Element, D: Dimension>(&self) -> Result<Array<T, D>, TensorError> {
        let view = self.array::<T>()?;
        let shape = view.shape().to_vec();
        let view = view
            .into_dimensionality::<D>()
            .map_err(|_| TensorError::Shape {
                expected: match D::NDIM {
                    Some(n) => format!("{n} dimensions"),
                    None => "any dimensions".to_owned(),
                },
                actual: shape,
            })?;
        Ok(view.to_owned())
    }

    /// An owned copy in host memory, laid out in C order.
    pub fn to_tensor(&self) -> Tensor {
        dispatch!(&self.host_view(), HostView, v => Tensor::from(v.as_standard_layout().into_owned()))
    }

    /// An owned tensor on the same device: a host copy, or for GPU data a tensor sharing it
    /// (GPU tensors copy on write too, so neither side sees the other's writes). What
    /// snapshots, such as a background save's, need: the file records the GPU.
    pub(crate) fn to_owned_tensor(&self) -> Tensor {
        match &self.src {
            Src::Host(_) => self.to_tensor(),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => Tensor {
                repr: Repr::Cuda(Arc::clone(storage)),
            },
        }
    }

    /// [`to_tensor`](TensorView::to_tensor), with a GPU's failure as an error.
    fn to_tensor_checked(&self) -> Result<Tensor, DeviceError> {
        match &self.src {
            Src::Host(_) => Ok(self.to_tensor()),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => Ok(storage.to_host()?),
        }
    }

    /// The data as C-contiguous little-endian bytes: borrowed when the view already is, else
    /// copied in logical (C) order whatever the strides. GPU data is copied through pinned
    /// staging buffers, and not kept.
    pub fn to_le_bytes(&self) -> Cow<'a, [u8]> {
        self.try_le_bytes().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Calls `sink` with the little-endian bytes in order: at once for host data, one staging
    /// buffer at a time for GPU data (the GPU copies the next while `sink` runs).
    pub(crate) fn stream_le_bytes(&self, sink: &mut dyn FnMut(&[u8])) -> Result<(), DeviceError> {
        match &self.src {
            Src::Host(_) => {
                sink(&self.try_le_bytes()?);
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => storage.stream_le_bytes(sink),
        }
    }

    /// [`to_le_bytes`](TensorView::to_le_bytes), with a GPU's failure as an error.
    pub(crate) fn try_le_bytes(&self) -> Result<Cow<'a, [u8]>, DeviceError> {
        match &self.src {
            Src::Host(host) => Ok(dispatch!(host, HostView, v => le_bytes(v.clone()))),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => Ok(Cow::Owned(storage.to_le_bytes()?)),
        }
    }

    /// Whether both views read the same memory: the same address, dtype, shape and strides.
    pub fn shares_storage(&self, other: &TensorView<'_>) -> bool {
        self.storage_id()
            .is_some_and(|id| Some(id) == other.storage_id())
    }

    /// What identifies the memory this view reads, for storing tied tensors once; `None` for
    /// empty tensors, which have no memory to share.
    pub(crate) fn storage_id(&self) -> Option<StorageId> {
        fn id<T>(v: &ArrayViewD<'_, T>) -> (usize, Vec<usize>, Vec<isize>) {
            (
                v.as_ptr() as usize,
                v.shape().to_vec(),
                v.strides().to_vec(),
            )
        }
        let (ptr, shape, strides) = match &self.src {
            Src::Host(host) => dispatch!(host, HostView, v => id(v)),
            // Clones of a GPU tensor share one storage.
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => (
                Arc::as_ptr(storage) as usize,
                storage.shape().to_vec(),
                Vec::new(),
            ),
        };
        (self.numel() > 0).then_some(StorageId {
            ptr,
            dtype: self.dtype(),
            shape,
            strides,
        })
    }

    /// Every value as `f64` in C order (integers and bools converted exactly where `f64` can).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.f64_values().collect()
    }

    /// Every value as `f64`, in C order, without collecting them.
    pub fn f64_values(&self) -> Box<dyn Iterator<Item = f64> + '_> {
        dispatch!(self.host_view(), HostView, v => Box::new(v.into_iter().map(|x| x.to_f64())))
    }

    /// The largest absolute difference between corresponding elements, compared as `f64`:
    /// `None` if the shapes differ, NaN if one side has a NaN where the other has not. Empty
    /// tensors differ by 0.
    ///
    /// ```
    /// # use ckpt_core::Tensor;
    /// let a = Tensor::from(ndarray::array![1.0f32, 2.0]);
    /// let b = Tensor::from(ndarray::array![1.5f64, 2.0]);
    /// assert_eq!(a.view().max_abs_diff(&b.view()), Some(0.5));
    /// ```
    pub fn max_abs_diff(&self, other: &TensorView<'_>) -> Option<f64> {
        if self.shape() != other.shape() {
            return None;
        }
        let mut max = 0.0f64;
        for (a, b) in self.f64_values().zip(other.f64_values()) {
            let d = match (a.is_nan(), b.is_nan()) {
                (true, true) => 0.0,
                (false, false) if a == b => 0.0,
                _ => (a - b).abs(),
            };
            if d.is_nan() {
                return Some(f64::NAN);
            }
            max = max.max(d);
        }
        Some(max)
    }

    /// Checks that every value fits `dtype` when cast as [`Tensor::copy_from`] would cast it.
    pub fn check_cast(&self, dtype: DType) -> Result<(), TensorError> {
        fn check<S: Element>(src: &ArrayViewD<'_, S>, to: DType) -> Result<(), TensorError> {
            // Only integer targets can be out of range: float targets saturate to ±inf and bool
            // targets test for non-zero, as PyTorch does.
            if to.kind() != DTypeKind::Int || S::DTYPE.kind() == DTypeKind::Float {
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
        dispatch!(&self.host_view(), HostView, v => check(v, dtype))
    }
}

/// The memory a view reads: equal ids read the same elements in the same order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StorageId {
    ptr: usize,
    dtype: DType,
    shape: Vec<usize>,
    strides: Vec<isize>,
}

fn int_range(dtype: DType) -> (i128, i128) {
    match dtype {
        DType::I64 => (i64::MIN.into(), i64::MAX.into()),
        DType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::U8 => (u8::MIN.into(), u8::MAX.into()),
        DType::Bool => (0, 1),
        DType::F64 | DType::F32 | DType::F16 | DType::BF16 => (i128::MIN, i128::MAX),
    }
}

/// The size in bytes of a tensor of `dtype` and `shape`, or an error if it overflows `usize`.
pub(crate) fn check_size(dtype: DType, shape: &[usize]) -> Result<usize, TensorError> {
    shape
        .iter()
        .try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
        .filter(|&n| isize::try_from(n).is_ok())
        .ok_or_else(|| TensorError::SizeOverflow {
            dtype,
            shape: shape.to_vec(),
        })
}

fn le_bytes<T: NoUninit>(view: ArrayViewD<'_, T>) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        if let Some(slice) = view.to_slice() {
            return Cow::Borrowed(bytemuck::cast_slice(slice));
        }
    }
    let mut out = Vec::with_capacity(view.len() * size_of::<T>());
    for x in view.iter() {
        let bytes = bytemuck::bytes_of(x);
        if cfg!(target_endian = "little") {
            out.extend_from_slice(bytes);
        } else {
            out.extend(bytes.iter().rev());
        }
    }
    Cow::Owned(out)
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
            _ => Zip::from(dst)
                .and(src)
                .for_each(|d, s| *d = T::from_f64(s.to_f64())),
        }
    }
    dispatch!(&src.host_view(), HostView, s => convert(s, dst));
    Ok(())
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

impl<'a, T: Element, D: Dimension> From<ArrayView<'a, T, D>> for TensorView<'a> {
    fn from(view: ArrayView<'a, T, D>) -> Self {
        TensorView::host(T::wrap_view(view.into_dyn()))
    }
}

impl<'a> From<&'a Tensor> for TensorView<'a> {
    fn from(tensor: &'a Tensor) -> Self {
        tensor.view()
    }
}

impl PartialEq for Tensor {
    /// Equal dtype, shape and values (so a tensor holding NaN is not equal to itself, as with
    /// `torch.equal`).
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl PartialEq for TensorView<'_> {
    fn eq(&self, other: &Self) -> bool {
        fn eq<T: Element>(a: &ArrayViewD<'_, T>, b: &TensorView<'_>) -> bool {
            b.array::<T>().is_ok_and(|b| a == b)
        }
        dispatch!(&self.host_view(), HostView, a => eq(a, other))
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

impl fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?} ", self.dtype(), self.shape())?;
        if self.device() != Device::Cpu {
            write!(f, "({}) ", self.device())?;
        }
        dispatch!(&self.host_view(), HostView, v => fmt::Display::fmt(v, f))
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
        let bytes = t.to_le_bytes();
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
        assert_eq!(&*t.to_le_bytes(), &expected[..]);

        let view = TensorView::from(a.slice(s![.., ..;-2]));
        assert!(!view.is_contiguous());
        let expected: Vec<u8> = [3i32, 1, 6, 4]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(&*view.to_le_bytes(), &expected[..]);
        assert_eq!(
            view.to_tensor().to_array::<i32, Ix2>().unwrap(),
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
        assert_eq!((z.numel(), z.nbytes(), z.to_le_bytes().len()), (0, 0, 0));
        let s = Tensor::scalar(3i64);
        assert_eq!((s.ndim(), s.numel()), (0, 1));
        assert_eq!(&*s.to_le_bytes(), &3i64.to_le_bytes());
    }

    #[test]
    fn debug_shows_dtype_shape_and_values() {
        let t = Tensor::from(array![1i16, 2]);
        assert_eq!(format!("{t:?}"), "I16[2] [1, 2]");
    }
}
