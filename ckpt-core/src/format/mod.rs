//! File formats: ckpt's own (`native`); PyTorch's and safetensors' are read and written too.

pub(crate) mod native;
