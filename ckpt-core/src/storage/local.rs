//! Local files as sources: memory-mapped, so that loaded tensors read the file in place, or
//! read into memory. Only regular files: a FIFO, a character device such as `/dev/zero` or a
//! directory is refused before anything is read, so no path can make a load hang or read
//! without end.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use super::Location;
use super::memory::Held;
use crate::tensor::Backing;

impl Backing for Mmap {
    fn bytes(&self) -> &[u8] {
        self
    }

    fn release(&self, bytes: &[u8]) {
        let Some(start) = offset_in(self, bytes) else {
            return;
        };
        // Reading a page maps more than it: the pages around it (fault-around) and, where
        // the page cache holds the file in large folios (ext4 and XFS read ahead into folios
        // of up to 2 MiB), the rest of the folio. Let go of the aligned AROUND-sized blocks
        // that hold the range, or every range read leaves up to a folio resident at each
        // end: hundreds of MiB over a load of many tensors (measured: a resharding load's peak
        // above its model went from 188-246 MiB to 16 MiB). Pages of those blocks another
        // thread is reading fault in again, from the page cache.
        let base = self.as_ptr() as usize;
        let from = ((base + start) & !(AROUND - 1)).max(base);
        let to = (base + start + bytes.len())
            .next_multiple_of(AROUND)
            .min(base + self.len());
        let (start, len) = (from - base, to - from);
        // SAFETY: the map is a read-only shared mapping of a file (`Mmap::map`), so after
        // MADV_DONTNEED the next access re-reads the same bytes from the page cache: no reader
        // sees a change. Failure only means the pages stay resident, so it is ignored.
        let _ =
            unsafe { self.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
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

/// The blocks [`Backing::release`] lets go of whole: the largest folio of the page cache on
/// x86-64 and arm64 with 4 KiB pages.
const AROUND: usize = 2 << 20;

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

/// Opens the file at `path` once: memory-mapped when `mmap` asks and the file can be mapped,
/// otherwise read whole into memory (at most the length it had when opened).
pub(crate) fn open(path: &Path, mmap: bool) -> io::Result<Held> {
    // Before opening: opening a FIFO for reading blocks until a writer comes.
    regular(&std::fs::metadata(path)?)?;
    let mut file = File::open(path)?;
    // And what was opened, in case the path was replaced in between.
    let metadata = file.metadata()?;
    regular(&metadata)?;
    let location = Location::Path(path.to_owned());
    let len = metadata.len();
    if mmap && len > 0 {
        // SAFETY: mapping a file is sound as long as no one truncates or rewrites it while it is
        // mapped. ckpt itself never modifies a file in place (saves write a new file and rename
        // it over the old one, which leaves existing mappings intact); documented on `load`.
        if let Ok(map) = unsafe { Mmap::map(&file) } {
            return Ok(Held::new(location, Arc::new(map)));
        }
    }
    let size = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "file larger than memory"))?;
    let mut bytes = Vec::with_capacity(size);
    // The length read when opening bounds the read: a file that grows meanwhile is not
    // followed, and one that shrinks reads short, which the formats report as truncated.
    file.by_ref().take(len).read_to_end(&mut bytes)?;
    Ok(Held::new(location, Arc::new(bytes)))
}

/// Refuses anything but a regular file, saying what it is.
fn regular(metadata: &std::fs::Metadata) -> io::Result<()> {
    if metadata.is_file() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "not a regular file but {}; checkpoints are read from regular files only",
            kind_of(metadata)
        ),
    ))
}

/// What a non-regular file is, in words.
fn kind_of(metadata: &std::fs::Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Source;

    #[test]
    fn special_files_are_refused_before_reading() {
        for (path, kind) in [("/dev/zero", "a character device"), ("/", "a directory")] {
            if !Path::new(path).exists() {
                continue;
            }
            let err = open(Path::new(path), true).err().expect(path);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(kind), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.ckpt");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            panic!("mkfifo is needed for this test (coreutils)");
        }
        // Opening it would block forever if the check came after the open.
        let err = open(&fifo, true).err().expect("a FIFO is refused");
        assert!(err.to_string().contains("a FIFO (named pipe)"), "{err}");
    }

    #[test]
    fn files_open_mapped_or_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        for mmap in [true, false] {
            let source = open(&path, mmap).unwrap();
            assert_eq!(source.len(), 10);
            let mut buf = [0; 3];
            source.read_at(7, &mut buf).unwrap();
            assert_eq!(&buf, b"789");
            assert!(source.read_at(8, &mut buf).is_err());
        }
    }
}
