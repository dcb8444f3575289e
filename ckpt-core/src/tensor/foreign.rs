//! Tensors of other libraries, read where they are: [`ForeignTensor`], and what a
//! [`TensorView`](super::TensorView) of one keeps.
//!
//! Their data sits behind the other library's lock (candle's storage is an `RwLock`), so it
//! cannot be lent for a view's whole lifetime without blocking that library's writers: a view
//! holding the lock while an optimizer step ran on the same thread would hang. So a view never
//! holds it: writers stream the bytes under the lock for as long as one write takes, and typed
//! reads (`array`, comparisons, casts) copy them to host memory once, which the view keeps.

use std::sync::OnceLock;

use super::Tensor;
use crate::device::{Device, DeviceError};
use crate::dtype::{DType, HostArray};

/// A tensor of another library that views read in place: its shape and device without
/// touching the data, its bytes lent for the time of a callback.
pub(crate) trait ForeignTensor: Send + Sync {
    /// The size of each dimension.
    fn shape(&self) -> &[usize];

    /// Where the data lives.
    fn device(&self) -> Device;

    /// Calls `sink` with the little-endian bytes of the elements in C order, in one or more
    /// pieces that together are the whole tensor: borrowed where the library lets them be,
    /// copied to host memory piece by piece where they are not (device memory).
    fn stream_le_bytes(&self, sink: &mut dyn FnMut(&[u8])) -> Result<(), DeviceError>;

    /// What identifies the memory this tensor reads: an address no other live allocation has
    /// and the layout within it, equal for two tensors exactly when they read the same
    /// elements in the same order; `None` if that cannot be told.
    fn storage_id(&self) -> Option<(usize, Vec<isize>)>;
}

/// A foreign tensor as a view holds it, with the dtype its bytes have and the host copy that
/// typed reads make.
pub(super) struct Foreign<T: ?Sized = dyn ForeignTensor> {
    pub(super) dtype: DType,
    host: OnceLock<HostArray>,
    pub(super) tensor: T,
}

impl<T: ForeignTensor> Foreign<T> {
    pub(super) fn new(tensor: T, dtype: DType) -> Self {
        Foreign {
            dtype,
            host: OnceLock::new(),
            tensor,
        }
    }
}

impl Foreign {
    /// The host copy, made on first use and kept from then on.
    pub(super) fn host(&self) -> Result<&HostArray, DeviceError> {
        if let Some(host) = self.host.get() {
            return Ok(host);
        }
        let host = self.to_host()?;
        // Another thread may have made it meanwhile: either copy is the same.
        Ok(self.host.get_or_init(|| host))
    }

    /// The host copy if one was made.
    pub(super) fn cached(&self) -> Option<&HostArray> {
        self.host.get()
    }

    /// A fresh host copy, streamed straight into the new array's memory.
    fn to_host(&self) -> Result<HostArray, DeviceError> {
        let shape = self.tensor.shape();
        let wrong_length = |got: usize| DeviceError::Foreign {
            device: self.tensor.device(),
            message: format!(
                "while copying a tensor to host memory: a {} tensor of shape {shape:?} gave {got} bytes, not {}",
                self.dtype,
                shape.iter().product::<usize>() * self.dtype.size_in_bytes()
            ),
        };
        let mut tensor = Tensor::zeros(self.dtype, shape).map_err(|e| DeviceError::Foreign {
            device: self.tensor.device(),
            message: format!("while allocating host memory: {e}"),
        })?;
        match tensor.contiguous_bytes_mut() {
            Some(out) => {
                let mut at = 0;
                let mut overflow = false;
                self.tensor.stream_le_bytes(&mut |piece| {
                    match out.get_mut(at..at + piece.len()) {
                        Some(to) => to.copy_from_slice(piece),
                        None => overflow = true,
                    }
                    at += piece.len();
                })?;
                if overflow || at != out.len() {
                    return Err(wrong_length(at));
                }
            }
            None => {
                let mut bytes = Vec::new();
                self.tensor
                    .stream_le_bytes(&mut |piece| bytes.extend_from_slice(piece))?;
                tensor = Tensor::from_le_bytes(self.dtype, shape, &bytes)
                    .map_err(|_| wrong_length(bytes.len()))?;
            }
        }
        Ok(tensor
            .into_host()
            .expect("zeros and decoded bytes are in host memory"))
    }
}
