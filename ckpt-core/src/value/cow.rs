//! [`TensorCow`]: a tensor in a checkpoint tree, owned or borrowed.

use std::fmt;

use crate::device::DeviceError;
use crate::tensor::{Tensor, TensorView};

/// A tensor in a [`Value`](super::Value): owned (loaded from a file) or borrowed (from a model's
/// `state_dict()`, about to be saved).
#[derive(Clone)]
pub enum TensorCow<'a> {
    /// An owned tensor.
    Owned(Tensor),
    /// A borrowed view.
    Borrowed(TensorView<'a>),
}

impl TensorCow<'_> {
    /// A view of the tensor.
    pub fn view(&self) -> TensorView<'_> {
        match self {
            TensorCow::Owned(t) => t.view(),
            TensorCow::Borrowed(v) => v.view(),
        }
    }

    /// The tensor, copying a borrowed one; an error if a device fails the copy.
    pub fn into_owned(self) -> Result<Tensor, DeviceError> {
        match self {
            TensorCow::Owned(t) => Ok(t),
            TensorCow::Borrowed(v) => v.to_owned_tensor(),
        }
    }
}

impl fmt::Debug for TensorCow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

impl PartialEq for TensorCow<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}
