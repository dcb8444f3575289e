//! [`DeviceError`]: what can go wrong placing tensors on a device.

use core::fmt;

use super::Device;

/// What went wrong placing tensors on a device: no CUDA here, no such GPU, a driver failure,
/// or a model field that cannot leave host memory.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// CUDA cannot be used on this machine, or by this build of ckpt.
    #[error("cannot use {device}: CUDA is not available ({reason})")]
    CudaUnavailable {
        /// The device that was asked for.
        device: Device,
        /// Why: no driver library, no device, or a build without the `cuda` feature.
        reason: String,
    },
    /// CUDA works, but there is no GPU with this ordinal.
    #[error("cannot use {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{}", count.saturating_sub(1))]
    NoSuchDevice {
        /// The device that was asked for.
        device: Device,
        /// How many CUDA devices there are.
        count: usize,
    },
    /// The CUDA driver reported an error (out of memory, a lost device).
    #[error("CUDA error on {device} while {operation}: {message}")]
    Driver {
        /// The device concerned.
        device: Device,
        /// What ckpt was doing.
        operation: &'static str,
        /// What the driver said.
        message: String,
    },
    /// Another library (candle) failed to hand over or take a tensor's data.
    #[error("error on {device} {message}")]
    Foreign {
        /// Where the data lives.
        device: Device,
        /// What ckpt was doing and what the library said: `while copying a candle tensor to
        /// host memory: ...`.
        message: String,
    },
    /// Fields that cannot move, such as ndarray arrays (host memory only) or candle tensors
    /// (which candle moves), were asked to move; nothing was moved.
    #[error(
        "cannot move {} to {device}: these fields stay where they are (ndarray arrays live in host memory: make them `ckpt::Tensor` to move them to a GPU; candle tensors move with candle's `to_device`)",
        Quoted(keys)
    )]
    HostOnly {
        /// The key paths of the fields that cannot move.
        keys: Vec<String>,
        /// Where they were asked to go.
        device: Device,
    },
    /// Moving a model failed at one of its tensors; the model was left where it was.
    #[error("cannot move \"{key}\" to {device}, so the model was left where it was: {source}")]
    Moving {
        /// The key path of the tensor that could not move.
        key: String,
        /// Where the model was asked to go.
        device: Device,
        /// Why the tensor could not move.
        #[source]
        source: Box<DeviceError>,
    },
}

/// `"a", "b"`.
struct Quoted<'a>(&'a [String]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{key:?}")?;
        }
        Ok(())
    }
}
