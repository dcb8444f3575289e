//! `model.to(device)`: every tensor moves, or none does.

use std::collections::HashMap;

use super::StateDict;
use crate::device::{Device, DeviceError};
use crate::state::{KeyPath, Leaf, Role};
use crate::tensor::Tensor;

/// Moves every tensor of `model`, non-persistent buffers included, to `device`: checked first,
/// then copied whole before anything is replaced (see [`StateDict::to`]).
pub(super) fn move_to<M: StateDict + ?Sized>(
    model: &mut M,
    device: Device,
) -> Result<(), DeviceError> {
    let mut host_only = Vec::new();
    model.visit_mut(
        &mut KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, leaf: &mut dyn Leaf, _: Role| {
            if !leaf.can_move_to(device) {
                host_only.push(key.to_owned());
            }
        },
    );
    if !host_only.is_empty() {
        return Err(DeviceError::HostOnly {
            keys: host_only,
            device,
        });
    }
    crate::device::check(device)?;
    let mut copies = Vec::new();
    // Tied tensors (clones sharing their data, as an embedding and an output layer may)
    // are copied once and stay tied, as PyTorch's shared parameters do.
    let mut tied = HashMap::new();
    let mut failure = None;
    model.visit_mut(
        &mut KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, leaf: &mut dyn Leaf, _: Role| {
            if failure.is_some() {
                return;
            }
            let id = leaf.view().storage_id();
            if let Some(copy) = id.as_ref().and_then(|id| tied.get(id)) {
                copies.push((key.to_owned(), Some(Tensor::clone(copy))));
                return;
            }
            match leaf.copy_to(device) {
                Ok(copy) => {
                    if let (Some(id), Some(copy)) = (id, &copy) {
                        tied.insert(id, copy.clone());
                    }
                    copies.push((key.to_owned(), copy));
                }
                Err(source) => {
                    failure = Some(DeviceError::Moving {
                        key: key.to_owned(),
                        device,
                        source: Box::new(source),
                    });
                }
            }
        },
    );
    if let Some(err) = failure {
        return Err(err); // dropping `copies` frees them
    }
    // The second walk meets the same leaves in the same order: nothing changed between.
    let mut copies = copies.into_iter();
    model.visit_mut(
        &mut KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, leaf: &mut dyn Leaf, _: Role| {
            if let Some((copied, copy)) = copies.next() {
                debug_assert_eq!(copied, key, "visit_mut walked the model differently");
                if let Some(copy) = copy {
                    leaf.adopt(copy);
                }
            }
        },
    );
    Ok(())
}
