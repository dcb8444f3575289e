//! [`Leaf`]: a model field that holds one tensor, and the two kinds ckpt knows: [`Tensor`] and
//! owned ndarray arrays.

use ndarray::{ArrayBase, DataMut, DataOwned, Dimension};

use crate::device::{Device, DeviceError};
use crate::dtype::Element;
use crate::tensor::{Tensor, TensorError, TensorView, cast_into};

/// A model field that holds one tensor: a [`Tensor`](crate::Tensor) or an owned ndarray array.
pub trait Leaf {
    /// The current contents.
    fn view(&self) -> TensorView<'_>;

    /// Overwrites the contents with `src`, which has the same shape, casting as
    /// [`Tensor::to_dtype`](crate::Tensor::to_dtype) does.
    fn copy_from(&mut self, src: &TensorView<'_>) -> Result<(), TensorError>;

    /// The contents as writable little-endian bytes in C order, when the leaf can lend them
    /// (host memory, a dtype other than `BOOL`): lets loaders read a file straight into the
    /// model, in chunks, without an intermediate copy. `None` makes them use `copy_from`.
    fn contiguous_bytes_mut(&mut self) -> Option<&mut [u8]> {
        None
    }

    /// The device the contents live on.
    fn device(&self) -> Device {
        Device::Cpu
    }

    /// Whether the contents can move to `device`. By default only the CPU: the leaf holds
    /// host memory, as ndarray arrays do.
    fn can_move_to(&self, device: Device) -> bool {
        device == Device::Cpu
    }

    /// The first half of a move to `device`: a copy of the contents there, leaving them as
    /// they are, or `None` when there is nothing to copy. [`StateDict::to`](crate::StateDict::to) copies every leaf
    /// of a model before it hands any copy over with [`adopt`](Leaf::adopt), so that a
    /// failed move changes nothing. By default host memory stays where it is and the CPU is
    /// the only device accepted.
    fn copy_to(&self, device: Device) -> Result<Option<Tensor>, DeviceError> {
        if self.can_move_to(device) {
            Ok(None)
        } else {
            Err(DeviceError::HostOnly {
                keys: Vec::new(),
                device,
            })
        }
    }

    /// The second half of a move: takes the copy that [`copy_to`](Leaf::copy_to) made. Only
    /// ever given a copy this leaf returned, so a leaf that overrides one overrides both.
    ///
    /// # Panics
    ///
    /// By default, always: the default `copy_to` never returns a copy, so reaching this means
    /// `copy_to` was overridden without it, and the copy would be lost.
    fn adopt(&mut self, copy: Tensor) {
        drop(copy);
        unreachable!(
            "{} returns copies from `Leaf::copy_to` but does not override `Leaf::adopt`",
            std::any::type_name::<Self>()
        );
    }
}

impl Leaf for Tensor {
    fn view(&self) -> TensorView<'_> {
        Tensor::view(self)
    }

    fn copy_from(&mut self, src: &TensorView<'_>) -> Result<(), TensorError> {
        Tensor::copy_from(self, src)
    }

    fn contiguous_bytes_mut(&mut self) -> Option<&mut [u8]> {
        Tensor::contiguous_bytes_mut(self)
    }

    fn device(&self) -> Device {
        Tensor::device(self)
    }

    fn can_move_to(&self, _: Device) -> bool {
        true
    }

    fn copy_to(&self, device: Device) -> Result<Option<Tensor>, DeviceError> {
        if device == Tensor::device(self) {
            Ok(None)
        } else {
            Tensor::to(self, device).map(Some)
        }
    }

    fn adopt(&mut self, copy: Tensor) {
        *self = copy;
    }
}

/// Owned ndarray arrays (`Array<T, D>`, `ArcArray<T, D>`) are leaves, so a model of plain
/// ndarray fields derives `StateDict` unchanged.
impl<A, S, D> Leaf for ArrayBase<S, D>
where
    A: Element,
    S: DataOwned<Elem = A> + DataMut,
    D: Dimension,
{
    fn view(&self) -> TensorView<'_> {
        // The inherent `view` lives on the `ArrayRef` the array derefs to.
        TensorView::from((**self).view())
    }

    fn copy_from(&mut self, src: &TensorView<'_>) -> Result<(), TensorError> {
        if src.shape() != self.shape() {
            return Err(TensorError::Shape {
                expected: format!("shape {:?}", self.shape()),
                actual: src.shape().to_vec(),
            });
        }
        cast_into(src, &mut self.view_mut().into_dyn())
    }

    fn contiguous_bytes_mut(&mut self) -> Option<&mut [u8]> {
        // Only arrays already in C order: relayouting would change the field's strides.
        self.as_slice_mut().and_then(crate::dtype::bytes_mut)
    }
}
