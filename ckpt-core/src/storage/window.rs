//! [`Window`]: a byte range of another source, read as an object of its own — an item of a
//! PyTorch Distributed Checkpoint, a whole `torch.save` archive in a range of a `.distcp` file.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use super::{Location, Source};
use crate::tensor::Backing;

/// The bytes `range` of `inner`, as a source whose offsets start at the range's start. Errors
/// name the file the range lies in.
pub(crate) struct Window {
    inner: Arc<dyn Source>,
    range: Range<u64>,
}

impl Window {
    /// The range `range` of `inner`; an error if it does not lie inside.
    pub(crate) fn new(inner: Arc<dyn Source>, range: Range<u64>) -> io::Result<Self> {
        if range.start > range.end || range.end > inner.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "bytes {}..{} lie beyond the end ({} bytes)",
                    range.start,
                    range.end,
                    inner.len()
                ),
            ));
        }
        Ok(Window { inner, range })
    }
}

impl Source for Window {
    fn location(&self) -> &Location {
        self.inner.location()
    }

    fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len()) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at offset {offset} run past the end of a range of {} bytes",
                    buf.len(),
                    self.len()
                ),
            ));
        }
        self.inner.read_at(self.range.start + offset, buf)
    }

    fn backing(&self) -> Option<Arc<dyn Backing>> {
        let whole = self.inner.backing()?;
        // In range of an in-memory object, so the bounds fit in `usize`.
        let range = self.range.start as usize..self.range.end as usize;
        Some(Arc::new(Part { whole, range }))
    }
}

/// A range of a backing, lent as a backing of its own: tensors read from a window borrow the
/// memory map of the whole file.
struct Part {
    whole: Arc<dyn Backing>,
    range: Range<usize>,
}

impl Backing for Part {
    fn bytes(&self) -> &[u8] {
        self.whole.bytes().get(self.range.clone()).unwrap_or(&[])
    }

    fn release(&self, bytes: &[u8]) {
        self.whole.release(bytes);
    }

    fn prefetch(&self, bytes: &[u8]) {
        self.whole.prefetch(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::Held;

    #[test]
    fn reads_and_lends_its_range_only() {
        let whole: Arc<dyn Source> = Arc::new(Held::from_vec("f", b"0123456789".to_vec()));
        let window = Window::new(Arc::clone(&whole), 3..7).unwrap();
        assert_eq!(window.len(), 4);
        let mut buf = [0; 2];
        window.read_at(2, &mut buf).unwrap();
        assert_eq!(&buf, b"56");
        assert!(window.read_at(3, &mut buf).is_err());
        assert_eq!(window.backing().unwrap().bytes(), b"3456");
        assert!(Window::new(whole, 8..11).is_err());
    }
}
