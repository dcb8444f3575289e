//! Tensors that read shared bytes in place: a memory-mapped file, a buffer.

use std::ops::Range;
use std::sync::Arc;

use ndarray::{ArrayViewD, IxDyn};

use super::TensorView;
use crate::dtype::{DType, Element, HostView};

/// Bytes that tensors can borrow for as long as they live: a memory-mapped file, a buffer.
/// [`Tensor::mapped`](super::Tensor::mapped) makes a tensor that reads them in place.
///
/// The bytes must not change while any tensor borrows them.
pub trait Backing: Send + Sync + 'static {
    /// All the bytes.
    fn bytes(&self) -> &[u8];

    /// A hint that `bytes`, a part of [`Backing::bytes`], will not be read again soon, so its
    /// pages may leave resident memory (they stay readable).
    fn release(&self, bytes: &[u8]) {
        let _ = bytes;
    }

    /// A hint that `bytes` will be read next: map them in one go rather than page by page.
    fn prefetch(&self, bytes: &[u8]) {
        let _ = bytes;
    }
}

#[derive(Clone)]
pub(super) struct Mapped {
    pub(super) backing: Arc<dyn Backing>,
    pub(super) range: Range<usize>,
    pub(super) dtype: DType,
    pub(super) shape: Vec<usize>,
}

impl Mapped {
    pub(super) fn view(&self) -> TensorView<'_> {
        TensorView::host(self.host_view())
    }

    pub(super) fn host_view(&self) -> HostView<'_> {
        let bytes = self.backing.bytes().get(self.range.clone()).unwrap_or(&[]);
        fn view<'a, T: Element>(bytes: &'a [u8], shape: &[usize]) -> HostView<'a> {
            // `Tensor::mapped` checked the length, alignment and bool bytes of this range, and
            // backings are immutable, so the cast and the shape cannot fail.
            let elements = T::cast_bytes(bytes).expect("mapped range checked at construction");
            let array = ArrayViewD::from_shape(IxDyn(shape), elements)
                .expect("mapped length checked at construction");
            T::wrap_view(array)
        }
        let shape = &self.shape;
        with_element!(self.dtype, T => view::<T>(bytes, shape))
    }
}
