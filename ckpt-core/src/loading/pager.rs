//! [`Pager`]: how the writing half of a load moves bytes from the source into the model, so
//! that a load from memory-mapped files can page each part of them in before reading it, let
//! it go once copied, and spread large copies over a pool of threads.

use std::ops::Range;

use crate::state::Leaf;
use crate::tensor::{TensorError, TensorView};

/// How a load copies what it checked into the model. The defaults copy in place with one
/// thread and leave the source's memory alone: what a state dict in memory needs.
pub(crate) trait Pager {
    /// Copies the checked tensor `src`, of the leaf's shape, into `leaf`: every write but
    /// those of parts filled straight from a source in host memory, which use the other
    /// methods.
    fn tensor(&self, leaf: &mut dyn Leaf, src: &TensorView<'_>) -> Result<(), TensorError> {
        leaf.copy_from(src)
    }

    /// Copies `from` into `to`, of the same length: one long run of a part.
    fn copy(&self, to: &mut [u8], from: &[u8]) {
        to.copy_from_slice(from);
    }

    /// A hint that `bytes` of the source will be read next.
    fn prefetch(&self, bytes: &[u8]) {
        let _ = bytes;
    }

    /// A hint that `bytes` of the source will not be read again.
    fn release(&self, bytes: &[u8]) {
        let _ = bytes;
    }
}

/// The default [`Pager`].
pub(crate) struct InMemory;

impl Pager for InMemory {}

/// Below this, runs are copied one after another, and the source is paged in and out in
/// spans of about this size rather than run by run.
pub(crate) const SPAN: usize = 1 << 20;

/// Copies runs of bytes (ranges of `from` and of `to`, `from`'s ascending) with a
/// [`Pager`]: a long run by [`Pager::copy`]; short ones one by one, with `from` paged in a
/// span ahead and let go a span behind, so that a column of a large part costs a few calls
/// per MiB rather than two per run, and holds only a few MiB of `from` at a time.
pub(crate) struct Runs<'r> {
    pager: &'r dyn Pager,
    from: &'r [u8],
    to: &'r mut [u8],
    /// The bytes of `from` paged in and not yet let go.
    window: Range<usize>,
}

impl<'r> Runs<'r> {
    pub(crate) fn new(pager: &'r dyn Pager, from: &'r [u8], to: &'r mut [u8]) -> Self {
        Runs {
            pager,
            from,
            to,
            window: 0..0,
        }
    }

    /// Copies `from[s]` into `to[d]`.
    pub(crate) fn copy(&mut self, s: Range<usize>, d: Range<usize>) {
        if s.len() >= 2 * SPAN {
            self.release(self.window.clone());
            self.window = s.end..s.end;
            self.pager.copy(&mut self.to[d], &self.from[s]);
            return;
        }
        if s.end > self.window.end {
            if s.start >= self.window.end {
                // A gap: what was paged in lies behind for good.
                self.release(self.window.clone());
                self.window = s.start..s.start;
            }
            let end = s.end.max(self.window.end + SPAN).min(self.from.len());
            self.pager.prefetch(&self.from[self.window.end..end]);
            self.window.end = end;
        }
        self.to[d].copy_from_slice(&self.from[s.clone()]);
        if s.start - self.window.start >= SPAN {
            self.release(self.window.start..s.start);
            self.window.start = s.start;
        }
    }

    fn release(&self, bytes: Range<usize>) {
        if !bytes.is_empty() {
            self.pager.release(&self.from[bytes]);
        }
    }
}

impl Drop for Runs<'_> {
    /// Lets go of what is still paged in.
    fn drop(&mut self) {
        self.release(self.window.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Counts what is paged in and let go, and the most held at once.
    #[derive(Default)]
    struct Counting {
        held: RefCell<(usize, usize)>,
        long_copies: RefCell<usize>,
    }

    impl Pager for Counting {
        fn copy(&self, to: &mut [u8], from: &[u8]) {
            *self.long_copies.borrow_mut() += 1;
            to.copy_from_slice(from);
        }
        fn prefetch(&self, bytes: &[u8]) {
            let mut held = self.held.borrow_mut();
            held.0 += bytes.len();
            held.1 = held.1.max(held.0);
        }
        fn release(&self, bytes: &[u8]) {
            self.held.borrow_mut().0 -= bytes.len();
        }
    }

    #[test]
    fn short_runs_are_paged_in_and_out_a_span_at_a_time() {
        // Column 1 of 3 of a 4096-row tensor of 1 KiB columns: 4096 runs, 12 MiB of source.
        let (row, col) = (3 << 10, 1 << 10);
        let from: Vec<u8> = (0..4096 * row).map(|i| (i % 251) as u8).collect();
        let mut to = vec![0u8; 4096 * col];
        let pager = Counting::default();
        let mut runs = Runs::new(&pager, &from, &mut to);
        for r in 0..4096 {
            runs.copy(r * row + col..r * row + 2 * col, r * col..(r + 1) * col);
        }
        drop(runs);
        let expected: Vec<u8> = (0..4096)
            .flat_map(|r| from[r * row + col..r * row + 2 * col].to_vec())
            .collect();
        assert_eq!(to, expected);
        let (held, most) = *pager.held.borrow();
        assert_eq!(held, 0, "everything paged in is let go");
        assert!(most <= 3 * SPAN, "held at most {most} bytes at once");
        assert_eq!(*pager.long_copies.borrow(), 0);
    }

    #[test]
    fn long_runs_are_copied_by_the_pager_and_gaps_let_go() {
        let from: Vec<u8> = (0..8 * SPAN).map(|i| (i % 253) as u8).collect();
        let mut to = vec![0u8; 4 * SPAN + 10];
        let pager = Counting::default();
        let mut runs = Runs::new(&pager, &from, &mut to);
        runs.copy(0..5, 0..5);
        runs.copy(SPAN * 3..SPAN * 3 + 5, 5..10);
        runs.copy(4 * SPAN..8 * SPAN, 10..4 * SPAN + 10);
        drop(runs);
        assert_eq!(&to[..5], &from[..5]);
        assert_eq!(&to[5..10], &from[3 * SPAN..3 * SPAN + 5]);
        assert_eq!(&to[10..], &from[4 * SPAN..]);
        assert_eq!(pager.held.borrow().0, 0);
        assert_eq!(*pager.long_copies.borrow(), 1);
    }
}
