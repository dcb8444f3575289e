//! [`Header`]: what a file holds, as its structure describes it, without its tensor data.

use crate::device::Device;
use crate::dtype::DType;
use crate::tensor::{TensorError, check_size};
use crate::value::Value;

/// A file's contents as its structure describes them: every tensor and plain value, read
/// without touching tensor data. What [`inspect`](crate::inspect) returns.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Header {
    /// The format's name: `"ckpt"`, `"safetensors"`, `"pytorch"`.
    pub format: &'static str,
    /// Every tensor, in file order; tensors stored once and referenced again (tied weights)
    /// appear once, under their first key.
    pub tensors: Vec<TensorInfo>,
    /// Every plain value (anything but a tensor, a list or a map) with its flattened key, in
    /// the order of the saved tree.
    pub values: Vec<(String, Value<'static>)>,
}

impl Header {
    /// A header of `format` listing `tensors` and `values`.
    pub fn new(
        format: &'static str,
        tensors: Vec<TensorInfo>,
        values: Vec<(String, Value<'static>)>,
    ) -> Self {
        Header {
            format,
            tensors,
            values,
        }
    }

    /// The total size of the tensor data in bytes.
    pub fn nbytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.nbytes).sum()
    }
}

/// A tensor as a file's structure describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TensorInfo {
    /// The flattened key of its first appearance.
    pub key: String,
    /// The element type.
    pub dtype: DType,
    /// The shape.
    pub shape: Vec<usize>,
    /// The device it was saved from (formats that record no device: the CPU).
    pub device: Device,
    /// The size of its data in bytes.
    pub nbytes: u64,
}

impl TensorInfo {
    /// A tensor saved from the CPU; an error if the shape's size overflows.
    pub fn new(
        key: impl Into<String>,
        dtype: DType,
        shape: Vec<usize>,
    ) -> Result<Self, TensorError> {
        let nbytes = check_size(dtype, &shape)? as u64;
        Ok(TensorInfo {
            key: key.into(),
            dtype,
            shape,
            device: Device::Cpu,
            nbytes,
        })
    }

    /// The same, saved from `device`.
    #[must_use]
    pub fn on(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
}
