//! A tensor's data on a GPU, held through the device layer's [`Gpu`] contexts.

use std::sync::{Arc, OnceLock};

use cudarc::driver::CudaSlice;

use super::{Tensor, TensorError};
use crate::device::DeviceError;
use crate::device::cuda::{Gpu, context, fill};
use crate::dtype::{DType, HostArray};

/// A tensor's data on a GPU: little-endian bytes in C order, as in files.
pub(crate) struct CudaStorage {
    gpu: Arc<Gpu>,
    /// `None` for empty tensors.
    data: Option<CudaSlice<u8>>,
    dtype: DType,
    shape: Vec<usize>,
    /// A host copy, made the first time host data is asked for (`array()`, comparisons).
    host: OnceLock<HostArray>,
}

impl CudaStorage {
    /// Copies `bytes` (a tensor's little-endian bytes) onto GPU `ordinal`.
    pub(crate) fn upload(
        ordinal: usize,
        dtype: DType,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<Self, DeviceError> {
        let gpu = context(ordinal)?;
        let data = gpu.upload(bytes)?;
        Ok(CudaStorage {
            gpu,
            data,
            dtype,
            shape: shape.to_vec(),
            host: OnceLock::new(),
        })
    }

    /// Overwrites the data in place with `bytes`, as long as the tensor's.
    pub(crate) fn overwrite(&mut self, bytes: &[u8]) -> Result<(), DeviceError> {
        self.host = OnceLock::new();
        match &mut self.data {
            Some(data) => self.gpu.overwrite(bytes, data),
            None => Ok(()),
        }
    }

    pub(crate) fn ordinal(&self) -> usize {
        self.gpu.ordinal()
    }

    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }

    pub(crate) fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Calls `sink` with the bytes, in order, one staging buffer at a time.
    pub(crate) fn stream_le_bytes(&self, sink: &mut dyn FnMut(&[u8])) -> Result<(), DeviceError> {
        match &self.data {
            Some(data) => self.gpu.download(data, sink),
            None => Ok(()),
        }
    }

    /// Copies the bytes into `out`, as long as the tensor's, through the staging buffers.
    fn download_into(&self, out: &mut [u8]) -> Result<(), DeviceError> {
        let mut at = 0;
        self.stream_le_bytes(&mut |chunk| {
            fill(&mut out[at..at + chunk.len()], chunk);
            at += chunk.len();
        })
    }

    /// The bytes, copied to the host through the staging buffers.
    pub(crate) fn to_le_bytes(&self) -> Result<Vec<u8>, DeviceError> {
        // Zeroed pages come from the kernel untouched; the copies fault them in.
        let mut out = vec![0; self.data.as_ref().map_or(0, CudaSlice::len)];
        self.download_into(&mut out)?;
        Ok(out)
    }

    /// A host copy of the data: downloaded straight into the new tensor's memory where its
    /// bytes can be lent (all dtypes but `BOOL`), else through a byte buffer.
    pub(crate) fn to_host(&self) -> Result<Tensor, DeviceError> {
        let host_error = |e: TensorError| match e {
            TensorError::Device(e) => e,
            other => DeviceError::Driver {
                device: self.gpu.device(),
                operation: "copying from the device",
                message: other.to_string(),
            },
        };
        let mut tensor = Tensor::zeros(self.dtype, &self.shape).map_err(host_error)?;
        if let Some(out) = tensor.contiguous_bytes_mut() {
            self.download_into(out)?;
            return Ok(tensor);
        }
        let bytes = self.to_le_bytes()?;
        Tensor::from_le_bytes(self.dtype, &self.shape, &bytes).map_err(host_error)
    }

    /// The host copy, made on first use and kept until the tensor is written; an error if the
    /// device fails the copy (a lost device).
    pub(crate) fn host(&self) -> Result<&HostArray, DeviceError> {
        if let Some(host) = self.host.get() {
            return Ok(host);
        }
        let tensor = self.to_host()?;
        let host = tensor.into_host().expect("to_host returns host tensors");
        // Another thread may have made it meanwhile: either copy is the same.
        Ok(self.host.get_or_init(|| host))
    }
}
