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
        let Some(start) = offset_in(self, bytes) else {
            return;
        };
        // SAFETY: the map is a read-only shared mapping of a file (`Mmap::map`), so after
        // MADV_DONTNEED the next access re-reads the same bytes from the page cache: no reader
        // sees a change. Failure only means the pages stay resident, so it is ignored.
        let _ = unsafe {
            self.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, bytes.len())
        };
    }

    fn prefetch(&self, bytes: &[u8]) {
        if let Some(start) = offset_in(self, bytes) {
            // One call faults the whole range in; on kernels without it, the pages fault in
            // one by one as they are read, which is only slower.
            #[cfg(target_os = "linux")]
            let _ = self.advise_range(memmap2::Advice::PopulateRead, start, bytes.len());
            #[cfg(not(target_os = "linux"))]
            let _ = self.advise_range(memmap2::Advice::WillNeed, start, bytes.len());
        }
    }
}

/// Where `bytes` starts within `map`, if it lies inside it.
fn offset_in(map: &Mmap, bytes: &[u8]) -> Option<usize> {
    let base = map.as_ptr() as usize;
    let start = bytes.as_ptr() as usize;
    (start >= base && start + bytes.len() <= base + map.len()).then(|| start - base)
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
