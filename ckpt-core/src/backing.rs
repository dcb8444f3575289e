//! The bytes loaded tensors read in place: a memory-mapped file, or the file read into memory.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::Error;
use crate::tensor::Backing;

impl Backing for Mmap {
    fn bytes(&self) -> &[u8] {
        self
    }

    fn release(&self, bytes: &[u8]) {
        let base = self.as_ptr() as usize;
        let start = bytes.as_ptr() as usize;
        if start < base || start + bytes.len() > base + self.len() {
            return;
        }
        // SAFETY: the map is a read-only shared mapping of a file (`Mmap::map`), so after
        // MADV_DONTNEED the next access re-reads the same bytes from the page cache: no reader
        // sees a change. Failure only means the pages stay resident, so it is ignored.
        let _ = unsafe {
            self.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start - base,
                bytes.len(),
            )
        };
    }
}

impl Backing for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Maps `path` into memory, or reads it when it cannot be mapped (empty files, pipes).
pub(crate) fn open(path: &Path, mmap: bool) -> Result<Arc<dyn Backing>, Error> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if mmap && len > 0 {
        // SAFETY: mapping a file is sound as long as no one truncates or rewrites it while it is
        // mapped. ckpt itself never modifies a file in place (saves write a new file and rename
        // it over the old one, which leaves existing mappings intact); documented on `load`.
        if let Ok(map) = unsafe { Mmap::map(&file) } {
            return Ok(Arc::new(map));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(Arc::new(bytes))
}
