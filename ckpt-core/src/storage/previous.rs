//! The file a save replaces, from the start of the save to the commit.
//!
//! A save keeps the previous file whole until the new one is renamed over it, so for a while
//! both are on the disk and, unless the previous one's pages are let go, both in memory. Two
//! costs follow, and this module avoids both:
//!
//! - Pages for the new file must come from memory no file is using: reclaimed from other
//!   files or, in a virtual machine that reports free memory to its host (Firecracker,
//!   balloon drivers with free page reporting), faulted back in from the host page by page,
//!   which on the development VM writes at 0.25 GB/s instead of 3 GB/s. So before writing,
//!   the previous file's clean cached pages are dropped (`POSIX_FADV_DONTNEED`): the file
//!   itself is untouched, a reader that maps it keeps its pages, and the new file is written
//!   into the memory the old one held, as a writer that truncates the old file in place would,
//!   without losing it if the save fails.
//! - Freeing a large file's blocks takes long (a good part of writing it); renaming over the
//!   file while it is open leaves that to the last close, done on a background thread.

use std::fs::File;
use std::path::Path;

/// The previous file at a save's target, if there is one.
pub(crate) struct Previous(Option<File>);

impl Previous {
    /// Opens the file at `path`, if any, and lets go of its cached pages.
    pub(crate) fn open(path: &Path) -> Self {
        let file = File::open(path).ok().filter(|file| {
            // A directory or a device is not a previous checkpoint; renaming over it fails
            // or replaces a name only, and either way nothing is to be let go.
            file.metadata().is_ok_and(|m| m.is_file())
        });
        if let Some(file) = &file {
            uncache(file);
        }
        Previous(file)
    }

    /// Called once the new file has replaced this one: frees its blocks on a background
    /// thread (or here, if no thread can be started).
    pub(crate) fn release(self) {
        if let Some(file) = self.0 {
            let _ = std::thread::Builder::new()
                .name("ckpt-release-old".to_owned())
                .spawn(move || drop(file));
        }
    }
}

/// Drops `file`'s clean cached pages; dirty ones are left (and written back) by the kernel.
#[cfg(target_os = "linux")]
fn uncache(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
}

#[cfg(not(target_os = "linux"))]
fn uncache(_: &File) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_file_stays_whole_and_readable_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.ckpt");
        let bytes: Vec<u8> = (0..(4u32 << 20)).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let previous = Previous::open(&path);
        assert!(previous.0.is_some());
        // Dropping the cache changes nothing a reader sees.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::write(dir.path().join("new"), b"new").unwrap();
        std::fs::rename(dir.path().join("new"), &path).unwrap();
        previous.release();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(Previous::open(&dir.path().join("absent")).0.is_none());
        assert!(Previous::open(dir.path()).0.is_none());
    }
}
