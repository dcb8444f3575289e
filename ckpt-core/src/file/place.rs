//! `map_location`: moving loaded tensors from the CPU, where formats read them, to the devices
//! `map_location` picks from the devices they were saved on.

use std::collections::HashMap;
use std::fmt;

use super::Error;
use crate::device::{Device, DeviceError, MapLocation};
use crate::state::KeyPath;
use crate::storage::Location;
use crate::tensor::{StorageId, Tensor};
use crate::value::{TensorCow, Value};

/// What loading does with the devices `map_location` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Moves each tensor there, as `torch.load` does.
    Move,
    /// Only checks that each device can be used: a load straight into a model copies into
    /// the model's tensors wherever they are, so moving first would copy twice.
    Check,
}

/// Places every tensor of `value`, saved on `saved[key]` (the CPU for keys not listed), where
/// `map_location` sends it. Tensors that share their data (tied weights) move once and stay
/// tied.
pub(crate) fn place(
    value: &mut Value<'static>,
    saved: &HashMap<String, Device>,
    location: &Location,
    map_location: &MapLocation,
    placement: Placement,
) -> Result<(), Error> {
    let mut moved: HashMap<(StorageId, Device), Tensor> = HashMap::new();
    let mut seen: HashMap<StorageId, Device> = HashMap::new();
    each_tensor(value, &mut KeyPath::new(), &mut |key, tensor| {
        let id = tensor.view().storage_id();
        // A tensor stored once and referenced again was saved where its first key says.
        let from = match id.as_ref().and_then(|id| seen.get(id)) {
            Some(&device) => device,
            None => saved.get(key).copied().unwrap_or(Device::Cpu),
        };
        if let Some(id) = &id {
            seen.entry(id.clone()).or_insert(from);
        }
        let target = map_location.resolve(key, from);
        if target == Device::Cpu {
            return Ok(());
        }
        let error = |e| placement_error(location, key, from, target, map_location, e);
        crate::device::check(target).map_err(error)?;
        if placement == Placement::Check {
            return Ok(());
        }
        if let Some(copy) = id.as_ref().and_then(|id| moved.get(&(id.clone(), target))) {
            *tensor = copy.clone();
            return Ok(());
        }
        // Onto a GPU straight from the mapped file, through the staging buffers.
        let copy = tensor.to(target).map_err(error)?;
        if let Some(id) = id {
            moved.insert((id, target), copy.clone());
        }
        *tensor = copy;
        Ok(())
    })
}

/// Checks that every tensor, saved on `saved[key]` (the CPU for keys not listed), could go
/// where `map_location` sends it: [`Placement::Check`] for tensors known by key alone.
pub(crate) fn check_placement<'k>(
    keys: impl IntoIterator<Item = &'k str>,
    saved: &HashMap<String, Device>,
    location: &Location,
    map_location: &MapLocation,
) -> Result<(), Error> {
    for key in keys {
        let from = saved.get(key).copied().unwrap_or(Device::Cpu);
        let target = map_location.resolve(key, from);
        if target != Device::Cpu {
            crate::device::check(target)
                .map_err(|e| placement_error(location, key, from, target, map_location, e))?;
        }
    }
    Ok(())
}

/// Whether a tensor of `value` goes to a GPU under `map_location`.
pub(crate) fn any_to_gpu(
    value: &Value<'_>,
    saved: &HashMap<String, Device>,
    map_location: &MapLocation,
) -> bool {
    value.tensors().iter().any(|(key, _)| {
        let from = saved.get(key).copied().unwrap_or(Device::Cpu);
        map_location.resolve(key, from).is_cuda()
    })
}

/// Calls `f` with every tensor of `value` and its flattened key, as
/// [`Value::tensors`](crate::Value::tensors) names it.
fn each_tensor(
    value: &mut Value<'static>,
    path: &mut KeyPath,
    f: &mut dyn FnMut(&str, &mut Tensor) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut descend =
        |path: &mut KeyPath, segment: &dyn fmt::Display, child: &mut Value<'static>| {
            path.push(segment);
            let result = each_tensor(child, path, f);
            path.pop();
            result
        };
    match value {
        Value::List(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                descend(path, &i, item)?;
            }
        }
        Value::Map(map) => {
            for (k, v) in map.iter_mut() {
                descend(path, k, v)?;
            }
        }
        Value::Tensor(cow) => {
            if let TensorCow::Borrowed(view) = cow {
                *cow = TensorCow::Owned(view.to_owned_tensor());
            }
            if let TensorCow::Owned(tensor) = cow {
                f(path.as_str(), tensor)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The error for a tensor that cannot go where `map_location` sent it.
pub(crate) fn placement_error(
    location: &Location,
    key: &str,
    saved: Device,
    target: Device,
    map_location: &MapLocation,
    error: DeviceError,
) -> Error {
    let reason = match &error {
        DeviceError::CudaUnavailable { reason, .. } => format!("CUDA is not available ({reason})"),
        DeviceError::NoSuchDevice { count, .. } => {
            format!("this machine has {count} CUDA device(s)")
        }
        _ => {
            return Error::Device {
                location: location.clone(),
                key: key.to_owned(),
                source: error,
            };
        }
    };
    Error::CudaUnavailable {
        location: location.clone(),
        key: key.to_owned(),
        saved,
        target,
        reason,
        chosen: !matches!(map_location, MapLocation::Saved),
    }
}
