//! Devices: where a tensor lives ([`Device`]), what can go wrong there ([`DeviceError`]),
//! where loaded tensors go ([`MapLocation`]), and, with the `cuda` feature, the CUDA driver.

#[cfg(feature = "cuda")]
pub mod cuda;
mod error;
mod location;

use core::fmt;
use core::str::FromStr;

pub use self::error::DeviceError;
pub use self::location::{DeviceFn, MapLocation, ParseMapLocationError};

/// A device, written as PyTorch writes it: `"cpu"`, `"cuda:0"`.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::device::Device;
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

/// Checks that `device` can hold tensors here: always for the CPU; for a GPU, CUDA must load
/// and the ordinal must exist.
pub(crate) fn check(device: Device) -> Result<(), DeviceError> {
    match device {
        Device::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => cuda::context(ordinal).map(drop),
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
