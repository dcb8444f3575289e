//! [`TensorView`]: a borrowed tensor.

use std::borrow::Cow;
use std::fmt;
#[cfg(any(feature = "cuda", feature = "candle"))]
use std::sync::Arc;

use bytemuck::NoUninit;
use ndarray::{Array, ArrayView, ArrayViewD, Dimension};
use rayon::iter::{IndexedParallelIterator, ParallelIterator};
use rayon::slice::{ParallelSlice, ParallelSliceMut};

#[cfg(feature = "candle")]
use super::foreign::{Foreign, ForeignTensor};
use super::{Tensor, TensorError};
use crate::device::{Device, DeviceError};
use crate::dtype::{DType, Element, HostView};

/// A borrowed tensor: a dtype, a shape and a strided view of someone else's data.
///
/// Model fields, loaded files and [`Tensor`]s all lend out `TensorView`s, which is how a
/// [`state_dict`](crate::StateDict::state_dict) avoids copying tensor data.
///
/// A view of a GPU tensor knows its dtype, shape and device without touching the GPU; methods
/// that read values (`array`, `to_le_bytes`, `to_tensor`) copy the data to host memory and
/// return an error if the GPU fails the copy (a lost device). `==` is `false` then, and
/// `Debug` never copies a GPU tensor: it shows the dtype, shape and device only.
///
/// A view of a candle tensor (the `candle` feature) holds a clone of it, not its lock: saving
/// reads the bytes in place under candle's lock for the time of one write, and the first typed
/// read (`array`, comparisons, casts) copies them to host memory, which the view then keeps
/// and reads from; `Debug` shows the dtype, shape and device.
#[derive(Clone)]
pub struct TensorView<'a> {
    pub(super) src: Src<'a>,
}

#[derive(Clone)]
pub(super) enum Src<'a> {
    Host(HostView<'a>),
    #[cfg(feature = "cuda")]
    Cuda(&'a Arc<super::cuda::CudaStorage>),
    /// Another library's tensor, owned (a clone), with its host copy once made.
    #[cfg(feature = "candle")]
    Foreign(Arc<Foreign>),
}

impl TensorView<'static> {
    /// A view of `dtype` and `shape` whose every element is zero, all of them one element in
    /// memory: what a load's checks see of a tensor whose data is not fetched yet (its dtype
    /// and shape; never its values, which only a copy would read). `None` if the shape's size
    /// overflows.
    pub(crate) fn placeholder(dtype: DType, shape: &[usize]) -> Option<Self> {
        fn zeros<T: Element>(shape: &[usize]) -> Option<HostView<'static>> {
            use ndarray::ShapeBuilder;
            // Zero bytes aligned for every element type, whose zero (or, for F8_E8M0, whose
            // code 0) is all zero bits: one element for the whole view.
            #[repr(align(16))]
            struct Zeros([u8; 16]);
            static ZEROS: Zeros = Zeros([0; 16]);
            let zero = T::cast_bytes(&ZEROS.0[..size_of::<T>()])?.first()?;
            let strides = vec![0; shape.len()];
            let shape = ndarray::IxDyn(shape).strides(ndarray::IxDyn(&strides));
            let view = ArrayView::from_shape(shape, std::slice::from_ref(zero)).ok()?;
            Some(T::wrap_view(view))
        }
        super::check_size(dtype, shape).ok()?;
        let host = with_element!(dtype, T => zeros::<T>(shape))?;
        Some(TensorView::host(host))
    }
}

impl<'a> TensorView<'a> {
    pub(super) fn host(host: HostView<'a>) -> Self {
        TensorView {
            src: Src::Host(host),
        }
    }

    /// A view of another library's tensor, which holds `tensor` (a clone sharing its data)
    /// and reads it as `dtype`, the dtype of the bytes it streams.
    #[cfg(feature = "candle")]
    pub(crate) fn foreign(tensor: impl ForeignTensor + 'static, dtype: DType) -> Self {
        let foreign: Arc<Foreign> = Arc::new(Foreign::new(tensor, dtype));
        TensorView {
            src: Src::Foreign(foreign),
        }
    }

    /// The data in host memory: borrowed, or for a GPU or foreign tensor its host copy, made
    /// on first use; an error if the device fails the copy.
    pub(super) fn host_view(&self) -> Result<HostView<'_>, DeviceError> {
        match &self.src {
            Src::Host(host) => Ok(host.clone()),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => Ok(storage.host()?.view()),
            #[cfg(feature = "candle")]
            Src::Foreign(foreign) => Ok(foreign.host()?.view()),
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
            #[cfg(feature = "candle")]
            Src::Foreign(foreign) => foreign.dtype,
        }
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        match &self.src {
            Src::Host(host) => dispatch!(host, HostView, v => v.shape()),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => storage.shape(),
            #[cfg(feature = "candle")]
            Src::Foreign(foreign) => foreign.tensor.shape(),
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
            #[cfg(feature = "candle")]
            Src::Foreign(foreign) => foreign.tensor.device(),
        }
    }

    /// A view of the same data borrowed for a shorter time.
    pub fn view(&self) -> TensorView<'_> {
        match &self.src {
            Src::Host(host) => {
                TensorView::host(dispatch!(host, HostView, v => crate::dtype::wrap_view(v.view())))
            }
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => TensorView {
                src: Src::Cuda(storage),
            },
            #[cfg(feature = "candle")]
            Src::Foreign(foreign) => TensorView {
                src: Src::Foreign(Arc::clone(foreign)),
            },
        }
    }

    /// Whether the elements are laid out in C order without gaps (GPU data, and other
    /// libraries' tensors as views read them, always are).
    pub fn is_contiguous(&self) -> bool {
        match &self.src {
            Src::Host(host) => dispatch!(host, HostView, v => v.is_standard_layout()),
            #[cfg(feature = "cuda")]
            Src::Cuda(_) => true,
            #[cfg(feature = "candle")]
            Src::Foreign(_) => true,
        }
    }

    /// The data as a typed ndarray view, or an error if `T` is not the element type, or if
    /// the GPU holding the data fails to copy it to the host.
    ///
    /// The view borrows this `TensorView`, which holds the host copy of a candle tensor's
    /// data; take it from a view that lives long enough (`let v = state["w"].array()?`).
    pub fn array<T: Element>(&self) -> Result<ArrayViewD<'_, T>, TensorError> {
        let wrong_dtype = || TensorError::DType {
            expected: T::DTYPE,
            actual: self.dtype(),
        };
        if self.dtype() != T::DTYPE {
            return Err(wrong_dtype()); // before a GPU tensor is copied for nothing
        }
        T::unwrap_view(&self.host_view()?).ok_or_else(wrong_dtype)
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

    /// An owned copy in host memory, laid out in C order; an error if the GPU holding the
    /// data fails the copy.
    pub fn to_tensor(&self) -> Result<Tensor, DeviceError> {
        match &self.src {
            Src::Host(host) => Ok(host_copy(host)),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => storage.to_host(),
            #[cfg(feature = "candle")]
            Src::Foreign(foreign) => Ok(Tensor::from_host(foreign.host()?.clone())),
        }
    }

    /// An owned tensor on the same device: a host copy, or for GPU data a tensor sharing it
    /// (GPU tensors copy on write too, so neither side sees the other's writes). What
    /// snapshots, such as a background save's, need: the file records the GPU. Another
    /// library's tensor becomes a host copy; an error if that library fails to give one.
    pub(crate) fn to_owned_tensor(&self) -> Result<Tensor, DeviceError> {
        match &self.src {
            Src::Host(host) => Ok(host_copy(host)),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => Ok(Tensor {
                repr: super::Repr::Cuda(Arc::clone(storage)),
            }),
            #[cfg(feature = "candle")]
            Src::Foreign(_) => self.to_tensor(),
        }
    }

    /// Calls `sink` with the little-endian bytes in order: at once for host data, one staging
    /// buffer at a time for GPU data (the GPU copies the next while `sink` runs).
    pub(crate) fn stream_le_bytes(&self, sink: &mut dyn FnMut(&[u8])) -> Result<(), DeviceError> {
        match &self.src {
            Src::Host(_) => {
                sink(&self.to_le_bytes()?);
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => storage.stream_le_bytes(sink),
            #[cfg(feature = "candle")]
            Src::Foreign(foreign) => match foreign.cached() {
                Some(host) => {
                    sink(&dispatch!(host.view(), HostView, v => le_bytes(v)));
                    Ok(())
                }
                None => foreign.tensor.stream_le_bytes(sink),
            },
        }
    }

    /// Writes the little-endian bytes in C order into `out`, as many as fit, and returns how
    /// many the data gave, written or not: host data element by element whatever its
    /// strides, without a copy of its own, and GPU or foreign data as
    /// [`stream_le_bytes`](TensorView::stream_le_bytes) gives it. A count other than
    /// `out.len()` means the data did not fill `out` or did not fit in it, which the caller
    /// reports. For memory the caller keeps, such as a background save's staging.
    pub(crate) fn write_le_bytes(&self, out: &mut [u8]) -> Result<usize, DeviceError> {
        match &self.src {
            Src::Host(host) => Ok(dispatch!(host, HostView, v => write_le(v, out))),
            #[cfg(any(feature = "cuda", feature = "candle"))]
            _ => {
                let mut given = 0;
                self.stream_le_bytes(&mut |piece| {
                    let at = given.min(out.len());
                    let end = (given + piece.len()).min(out.len());
                    out[at..end].copy_from_slice(&piece[..end - at]);
                    given += piece.len();
                })?;
                Ok(given)
            }
        }
    }

    /// Whether [`to_le_bytes`](TensorView::to_le_bytes) borrows the data rather than copying
    /// it, so that writers may hold the bytes of many tensors at once: host data, not GPU or
    /// foreign data, which writers stream with `stream_le_bytes` instead.
    pub(crate) fn lends_bytes(&self) -> bool {
        matches!(self.src, Src::Host(_))
    }

    /// The little-endian bytes in place, when [`to_le_bytes`](TensorView::to_le_bytes) would
    /// borrow them (host data, contiguous, on a little-endian machine); `None` where it would
    /// copy or download. Writers hash these on other threads while they write them.
    pub(crate) fn le_bytes_in_place(&self) -> Option<&'a [u8]> {
        match &self.src {
            Src::Host(host) => dispatch!(host, HostView, v => in_place(v.clone())),
            #[cfg(any(feature = "cuda", feature = "candle"))]
            _ => None,
        }
    }

    /// The data as C-contiguous little-endian bytes: borrowed when the view already is, else
    /// copied in logical (C) order whatever the strides. GPU data is copied through pinned
    /// staging buffers, and not kept; an error if the GPU fails the copy.
    pub fn to_le_bytes(&self) -> Result<Cow<'a, [u8]>, DeviceError> {
        match &self.src {
            Src::Host(host) => Ok(dispatch!(host, HostView, v => le_bytes(v.clone()))),
            #[cfg(feature = "cuda")]
            Src::Cuda(storage) => Ok(Cow::Owned(storage.to_le_bytes()?)),
            #[cfg(feature = "candle")]
            Src::Foreign(_) => {
                let mut bytes = Vec::with_capacity(self.nbytes());
                self.stream_le_bytes(&mut |piece| bytes.extend_from_slice(piece))?;
                Ok(Cow::Owned(bytes))
            }
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
            #[cfg(feature = "candle")]
            Src::Foreign(foreign) => {
                let (ptr, layout) = foreign.tensor.storage_id()?;
                (ptr, foreign.tensor.shape().to_vec(), layout)
            }
        };
        (self.numel() > 0).then_some(StorageId {
            ptr,
            dtype: self.dtype(),
            shape,
            strides,
        })
    }

    /// Every value as `f64` in C order (integers and bools converted exactly where `f64` can;
    /// complex numbers give their real parts).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, DeviceError> {
        Ok(self.f64_values()?.collect())
    }

    /// Every value as `f64`, in C order, without collecting them.
    pub fn f64_values(&self) -> Result<Box<dyn Iterator<Item = f64> + '_>, DeviceError> {
        Ok(dispatch!(self.host_view()?, HostView, v => Box::new(v.into_iter().map(|x| x.to_f64()))))
    }

    /// Every value as a complex number, in C order.
    fn complex_values(
        &self,
    ) -> Result<Box<dyn Iterator<Item = num_complex::Complex64> + '_>, DeviceError> {
        Ok(dispatch!(self.host_view()?, HostView, v => Box::new(v.into_iter().map(|x| x.to_c64()))))
    }

    /// The largest absolute difference between corresponding elements, compared as `f64`
    /// (complex numbers by the modulus of their difference):
    /// NaN if one side has a NaN where the other has not; empty tensors differ by 0. An error
    /// if the shapes differ.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::Tensor;
    ///
    /// let a = Tensor::from(ndarray::array![1.0f32, 2.0]);
    /// let b = Tensor::from(ndarray::array![1.5f64, 2.0]);
    /// assert_eq!(a.view().max_abs_diff(&b.view())?, 0.5);
    /// assert!(a.view().max_abs_diff(&Tensor::scalar(1.0f32).view()).is_err());
    /// # Ok::<(), ckpt::tensor::TensorError>(())
    /// ```
    pub fn max_abs_diff(&self, other: &TensorView<'_>) -> Result<f64, TensorError> {
        if self.shape() != other.shape() {
            return Err(TensorError::Shape {
                expected: format!("shape {:?}", self.shape()),
                actual: other.shape().to_vec(),
            });
        }
        let mut max = 0.0f64;
        // As complex numbers, so that a complex tensor's difference is its modulus; a real
        // number has no imaginary part.
        for (a, b) in self.complex_values()?.zip(other.complex_values()?) {
            let d = match (a.is_nan(), b.is_nan()) {
                (true, true) => 0.0,
                (false, false) if a == b => 0.0,
                _ => (a - b).norm(),
            };
            if d.is_nan() {
                return Ok(f64::NAN);
            }
            max = max.max(d);
        }
        Ok(max)
    }
}

/// An owned, C-ordered copy of host data.
pub(super) fn host_copy(host: &HostView<'_>) -> Tensor {
    dispatch!(host, HostView, v => Tensor::from(copy_of(v)))
}

/// Below this many bytes a copy stays on one thread; above, it goes in parts of this size
/// over the current rayon pool, so that one large tensor spreads over every core (the kernel
/// zeroes each new page as the copy first touches it, which one core alone does slowly).
const COPY_PART: usize = 2 << 20;

/// An owned copy of `view` in standard layout: contiguous data copied in parallel parts.
fn copy_of<T: Element>(view: &ArrayViewD<'_, T>) -> ndarray::ArrayD<T> {
    let size = size_of::<T>().max(1);
    let source = match view.to_slice() {
        Some(source) if source.len() * size >= 2 * COPY_PART => source,
        _ => return view.as_standard_layout().into_owned(),
    };
    let mut copy: Vec<T> = Vec::with_capacity(source.len());
    let part = COPY_PART / size;
    copy.spare_capacity_mut()
        .par_chunks_mut(part)
        .zip(source.par_chunks(part))
        .for_each(|(to, from)| {
            for (to, from) in to.iter_mut().zip(from) {
                to.write(*from);
            }
        });
    // SAFETY: the parts above cover the first `source.len()` elements, each written once.
    unsafe { copy.set_len(source.len()) };
    match ndarray::ArrayD::from_shape_vec(view.raw_dim(), copy) {
        Ok(array) => array,
        // The same shape and length: does not happen, and a serial copy would do.
        Err(_) => view.as_standard_layout().into_owned(),
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

fn in_place<T: NoUninit>(view: ArrayViewD<'_, T>) -> Option<&'_ [u8]> {
    if cfg!(target_endian = "little") {
        return view.to_slice().map(bytemuck::cast_slice);
    }
    None
}

fn le_bytes<T: NoUninit>(view: ArrayViewD<'_, T>) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little")
        && let Some(slice) = view.to_slice()
    {
        return Cow::Borrowed(bytemuck::cast_slice(slice));
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

/// Writes `view`'s little-endian bytes in C order into `out`, as many whole elements as fit,
/// and returns how many bytes the view has.
fn write_le<T: NoUninit>(view: &ArrayViewD<'_, T>, out: &mut [u8]) -> usize {
    let size = size_of::<T>();
    for (x, to) in view.iter().zip(out.chunks_exact_mut(size)) {
        to.copy_from_slice(bytemuck::bytes_of(x));
        if cfg!(target_endian = "big") {
            to.reverse();
        }
    }
    view.len() * size
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

impl PartialEq for TensorView<'_> {
    /// Equal dtype, shape and values; `false` if a GPU holding either side fails to copy it.
    fn eq(&self, other: &Self) -> bool {
        fn eq<T: Element>(a: &ArrayViewD<'_, T>, b: &TensorView<'_>) -> bool {
            b.array::<T>().is_ok_and(|b| a == b)
        }
        if self.dtype() != other.dtype() || self.shape() != other.shape() {
            return false; // before a GPU tensor is copied for nothing
        }
        match self.host_view() {
            Ok(host) => dispatch!(&host, HostView, a => eq(a, other)),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for TensorView<'_> {
    /// `F32[2, 3] [[...]]`: the dtype, the shape and the values; for a GPU tensor the device
    /// instead of the values, which would mean copying the whole tensor to the host.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?}", self.dtype(), self.shape())?;
        match &self.src {
            Src::Host(host) => {
                f.write_str(" ")?;
                dispatch!(host, HostView, v => fmt::Display::fmt(v, f))
            }
            #[cfg(feature = "cuda")]
            Src::Cuda(_) => write!(f, " on {}", self.device()),
            #[cfg(feature = "candle")]
            Src::Foreign(_) => write!(f, " (candle) on {}", self.device()),
        }
    }
}
