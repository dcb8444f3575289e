//! Where a tensor lives.

use core::fmt;
use core::str::FromStr;

/// A device, written as PyTorch writes it: `"cpu"`, `"cuda:0"`.
///
/// ```
/// use ckpt_core::Device;
///
/// assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
/// assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
/// assert_eq!(Device::Cpu.to_string(), "cpu");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    /// Host memory.
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl Device {
    /// Whether this is a CUDA device.
    pub const fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

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
    /// Fields that can only hold host memory, such as ndarray arrays, were asked to move to
    /// a GPU; nothing was moved.
    #[error(
        "cannot move {} to {device}: ndarray fields live in host memory; make them `ckpt::Tensor` to move them to a GPU",
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

/// Checks that `device` can hold tensors here: always for the CPU; for a GPU, CUDA must load
/// and the ordinal must exist.
pub(crate) fn check(device: Device) -> Result<(), DeviceError> {
    match device {
        Device::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => crate::cuda::context(ordinal).map(drop),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(DeviceError::CudaUnavailable {
            device,
            reason: "ckpt was built without its `cuda` feature".to_owned(),
        }),
    }
}

/// The error returned when a string names no [`Device`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid device {0:?}: expected \"cpu\", \"cuda\" or \"cuda:N\"")]
pub struct ParseDeviceError(String);

impl FromStr for Device {
    type Err = ParseDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDeviceError(s.to_owned());
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            other => {
                let ordinal = other.strip_prefix("cuda:").ok_or_else(err)?;
                // `usize::from_str` accepts a leading '+', which PyTorch does not.
                if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                ordinal.parse().map(Device::Cuda).map_err(|_| err())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        for (text, device) in [
            ("cpu", Device::Cpu),
            ("cuda:0", Device::Cuda(0)),
            ("cuda:7", Device::Cuda(7)),
        ] {
            assert_eq!(text.parse::<Device>(), Ok(device));
            assert_eq!(device.to_string(), text);
        }
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda:x", "CPU", ""] {
            let err = bad.parse::<Device>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
