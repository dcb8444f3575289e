//! [`Paged`]: the [`Pager`] of loads from memory-mapped files into a model.

use std::borrow::Cow;
use std::sync::Arc;

use rayon::iter::{IndexedParallelIterator, ParallelIterator};
use rayon::slice::{ParallelSlice, ParallelSliceMut};

use super::threads;
use crate::loading::Pager;
use crate::state::Leaf;
use crate::tensor::{Backing, TensorError, TensorView};

/// Copy and release granularity: large enough for full-speed copies, small enough that the
/// threads, each holding one part of the file in memory, spread a tensor of a few MiB.
const PART: usize = 1 << 20;

/// Below this, a copy is made by the thread that asks for it: handing it to the pool would
/// cost more than the copy.
const PARALLEL_MIN: usize = 2 * PART;

/// Copies out of the mapped files `backings` into a model: in parts, each paged in with one
/// call before it is read and let go once copied, so that the files' pages do not stay
/// resident beside the model; copies of more than a few MiB spread over the pool of
/// `threads`.
pub(crate) struct Paged {
    backings: Vec<Arc<dyn Backing>>,
    threads: Option<usize>,
}

impl Paged {
    pub(crate) fn new(backings: Vec<Arc<dyn Backing>>, threads: Option<usize>) -> Self {
        Paged { backings, threads }
    }

    fn part(&self, to: &mut [u8], from: &[u8]) {
        self.prefetch(from);
        to.copy_from_slice(from);
        self.release(from);
    }
}

impl Pager for Paged {
    fn tensor(&self, leaf: &mut dyn Leaf, src: &TensorView<'_>) -> Result<(), TensorError> {
        if leaf.view().dtype() == src.dtype()
            && let Ok(Cow::Borrowed(from)) = src.to_le_bytes()
            && let Some(to) = leaf
                .contiguous_bytes_mut()
                .filter(|to| to.len() == from.len())
        {
            self.copy(to, from);
            return Ok(());
        }
        // Any other copy (a cast, a leaf that lends no bytes, such as a candle tensor) reads
        // the mapped range whole: map it in one go, and let its pages go once copied, so
        // memory stays near the model's size on this path too.
        let mapped = (src.lends_bytes() && src.is_contiguous())
            .then(|| src.to_le_bytes().ok())
            .flatten();
        if let Some(bytes) = &mapped {
            self.prefetch(bytes);
        }
        let copied = leaf.copy_from(src);
        if let Some(bytes) = &mapped {
            self.release(bytes);
        }
        copied
    }

    fn copy(&self, to: &mut [u8], from: &[u8]) {
        if to.len() < PARALLEL_MIN {
            to.chunks_mut(PART)
                .zip(from.chunks(PART))
                .for_each(|(to, from)| self.part(to, from));
        } else {
            threads::run(self.threads, || {
                to.par_chunks_mut(PART)
                    .zip(from.par_chunks(PART))
                    .for_each(|(to, from)| self.part(to, from));
            });
        }
    }

    fn prefetch(&self, bytes: &[u8]) {
        self.backings.iter().for_each(|b| b.prefetch(bytes));
    }

    fn release(&self, bytes: &[u8]) {
        self.backings.iter().for_each(|b| b.release(bytes));
    }
}
