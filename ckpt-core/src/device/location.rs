//! `map_location`: where loaded tensors go, from the device each was saved on.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::{Device, ParseDeviceError};

/// Where to put each loaded tensor, as `torch.load`'s `map_location`: the device it was saved
/// on (the default), one device for all, a table from saved to new devices, or a function of
/// the tensor's key and saved device.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::device::{Device, MapLocation};
///
/// let all = MapLocation::from(Device::Cpu);
/// assert_eq!(all.resolve("fc.weight", Device::Cuda(1)), Device::Cpu);
///
/// let table: MapLocation = "cuda:1->cuda:0, cuda:2->cpu".parse().unwrap();
/// assert_eq!(table.resolve("w", Device::Cuda(1)), Device::Cuda(0));
/// assert_eq!(table.resolve("w", Device::Cuda(3)), Device::Cuda(3)); // unlisted: unchanged
///
/// let f = MapLocation::with_fn(|key, saved| if key.starts_with("head.") { Device::Cpu } else { saved });
/// assert_eq!(f.resolve("head.bias", Device::Cuda(0)), Device::Cpu);
/// ```
#[derive(Clone, Default)]
pub enum MapLocation {
    /// Each tensor goes back to the device it was saved on.
    #[default]
    Saved,
    /// Every tensor goes to this device.
    To(Device),
    /// Saved devices listed here are replaced; others are kept.
    Table(Vec<(Device, Device)>),
    /// The device is computed from the key and the saved device.
    Fn(DeviceFn),
}

/// A function from a tensor's key and saved device to the device it loads onto.
pub type DeviceFn = Arc<dyn Fn(&str, Device) -> Device + Send + Sync>;

impl MapLocation {
    /// A map computed by `f(key, saved_device)`.
    pub fn with_fn(f: impl Fn(&str, Device) -> Device + Send + Sync + 'static) -> Self {
        MapLocation::Fn(Arc::new(f))
    }

    /// Where the tensor under `key`, saved on `saved`, goes.
    pub fn resolve(&self, key: &str, saved: Device) -> Device {
        match self {
            MapLocation::Saved => saved,
            MapLocation::To(device) => *device,
            MapLocation::Table(table) => table
                .iter()
                .find(|(from, _)| *from == saved)
                .map_or(saved, |(_, to)| *to),
            MapLocation::Fn(f) => f(key, saved),
        }
    }
}

impl From<Device> for MapLocation {
    fn from(device: Device) -> Self {
        MapLocation::To(device)
    }
}

impl<const N: usize> From<[(Device, Device); N]> for MapLocation {
    fn from(table: [(Device, Device); N]) -> Self {
        MapLocation::Table(table.to_vec())
    }
}

impl fmt::Debug for MapLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapLocation::Saved => f.write_str("Saved"),
            MapLocation::To(device) => write!(f, "To({device})"),
            MapLocation::Table(table) => f
                .debug_map()
                .entries(table.iter().map(|(a, b)| (a.to_string(), b.to_string())))
                .finish(),
            MapLocation::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

/// The error returned when a string is not a map location.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid map_location {text:?}: {source}; expected a device (\"cpu\", \"cuda:0\") or mappings like \"cuda:1->cuda:0, cuda:2->cpu\""
)]
pub struct ParseMapLocationError {
    text: String,
    source: ParseDeviceError,
}

impl FromStr for MapLocation {
    type Err = ParseMapLocationError;

    /// A device (`"cpu"`) or a comma-separated table (`"cuda:1->cuda:0, cuda:2->cpu"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |source| ParseMapLocationError {
            text: s.to_owned(),
            source,
        };
        if !s.contains("->") {
            return s.trim().parse().map(MapLocation::To).map_err(err);
        }
        s.split(',')
            .map(|pair| {
                let (from, to) = pair.split_once("->").unwrap_or((pair, ""));
                Ok((
                    from.trim().parse().map_err(err)?,
                    to.trim().parse().map_err(err)?,
                ))
            })
            .collect::<Result<_, _>>()
            .map(MapLocation::Table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tables_and_devices() {
        let table: MapLocation = "cuda:1->cuda:0,cuda:0->cpu".parse().unwrap();
        assert_eq!(
            format!("{table:?}"),
            r#"{"cuda:1": "cuda:0", "cuda:0": "cpu"}"#
        );
        assert_eq!(table.resolve("k", Device::Cuda(0)), Device::Cpu);
        assert!(matches!(
            "cuda:2".parse(),
            Ok(MapLocation::To(Device::Cuda(2)))
        ));
        let err = "cuda:1->gpu".parse::<MapLocation>().unwrap_err();
        assert!(err.to_string().contains("\"gpu\""), "{err}");
        assert!("cuda:1->".parse::<MapLocation>().is_err());
        assert!("".parse::<MapLocation>().is_err());
    }

    #[test]
    fn saved_keeps_and_arrays_build_tables() {
        assert_eq!(
            MapLocation::Saved.resolve("k", Device::Cuda(3)),
            Device::Cuda(3)
        );
        let m = MapLocation::from([(Device::Cuda(1), Device::Cuda(0))]);
        assert_eq!(m.resolve("k", Device::Cuda(1)), Device::Cuda(0));
    }
}
