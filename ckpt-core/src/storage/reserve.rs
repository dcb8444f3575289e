//! A temporary file whose space is reserved ahead of its writes, where that spares the commit
//! a flush.
//!
//! ext4 allocates a file's blocks late, at write-back ("delayed allocation"). When a file with
//! blocks still unallocated is renamed over an existing one, ext4 (`auto_da_alloc`, on by
//! default) allocates them and starts the file's whole write-back inside the `rename`, so that
//! a program that does not fsync finds something other than an empty file after a crash. For
//! a save without fsync that is most of a disk write-back of the checkpoint, paid in the call:
//! 0.7 to 7 s for 1.3 GiB on the development machine's disk, against 0.5 s for writing it.
//!
//! Space reserved with `fallocate(FALLOC_FL_KEEP_SIZE)` before the writes is allocated (as
//! unwritten extents, which read as zeros), so the writes leave no delayed allocation behind
//! and the rename has nothing to flush. The reservation runs ahead of the writes in large
//! steps and whatever the writes did not use is given back before the commit. It is made only
//! on ext4 and only for saves without fsync (a save with fsync has written everything back
//! before it renames); anywhere else, or when `fallocate` fails, the file is written as is.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use tempfile::NamedTempFile;

/// The least the reservation grows by once the writes pass it, so that small writes do not
/// each call `fallocate`.
const STEP: u64 = 64 << 20;

/// Reserved beyond the expected bytes at first, for what a format writes besides its tensors
/// (headers, padding); a little, so that small files and many saves at once on a nearly full
/// disk do not hold much space they will not use.
const MARGIN: u64 = 1 << 20;

/// A temporary file that reserves space ahead of what is written to it (see the module).
pub(crate) struct Reserved {
    file: NamedTempFile,
    /// Where the next write goes.
    position: u64,
    /// The file's length: the end of the furthest write.
    len: u64,
    /// Bytes from the start of the file whose space is reserved (or may be: a refused
    /// `fallocate` can leave part of its range allocated).
    reserved: u64,
    /// Whether to reserve more as the writes reach the end of the reservation: not on
    /// another file system, nor once `fallocate` has refused (a full disk, say).
    reserving: bool,
}

impl Reserved {
    /// Wraps `file`, reserving `expected` bytes (plus [`MARGIN`] and 1/256) if its file
    /// system gains from it and `reserve` is asked.
    pub(crate) fn new(file: NamedTempFile, expected: u64, reserve: bool) -> Self {
        let reserving = reserve && gains_from_reserving(file.as_file());
        let mut reserved = Reserved {
            file,
            position: 0,
            len: 0,
            reserved: 0,
            reserving,
        };
        reserved.reserve_to(
            expected
                .saturating_add(expected / 256)
                .saturating_add(MARGIN),
        );
        reserved
    }

    /// Gives back the space reserved past the file's end and returns the file.
    pub(crate) fn finish(self) -> io::Result<NamedTempFile> {
        if self.reserved > self.len {
            // ftruncate frees the blocks past the end, even at the same length.
            self.file.as_file().set_len(self.len)?;
        }
        Ok(self.file)
    }

    /// Reserves space up to `end` if reserving; past a first reservation, at least a step
    /// further.
    fn reserve_to(&mut self, end: u64) {
        let reserved = self.reserved;
        if !self.reserving || end <= reserved {
            return;
        }
        let step = if reserved == 0 {
            0
        } else {
            STEP.max(reserved / 4)
        };
        let end = end.max(reserved.saturating_add(step));
        // Refused, the writes go on unreserved, and fail themselves if the disk is full.
        self.reserving = allocate(self.file.as_file(), reserved, end - reserved).is_ok();
        self.reserved = end;
    }
}

impl Write for Reserved {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.reserve_to(self.position.saturating_add(buf.len() as u64));
        let written = self.file.write(buf)?;
        self.position += written as u64;
        self.len = self.len.max(self.position);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Reserved {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.position = self.file.seek(to)?;
        Ok(self.position)
    }
}

/// Whether `file`'s file system flushes on rename what a reservation avoids: ext4.
#[cfg(target_os = "linux")]
fn gains_from_reserving(file: &File) -> bool {
    /// `EXT4_SUPER_MAGIC` (also that of ext2 and ext3, whose files refuse `fallocate`).
    const EXT4: i128 = 0xEF53;
    // `f_type`'s integer type differs between architectures; every one widens to i128.
    rustix::fs::fstatfs(file).is_ok_and(|stat| i128::from(stat.f_type) == EXT4)
}

#[cfg(not(target_os = "linux"))]
fn gains_from_reserving(_: &File) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, offset, len)
        .map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn allocate(_: &File, _: u64, _: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes a file occupies on disk.
    #[cfg(unix)]
    fn occupied(file: &File) -> u64 {
        use std::os::unix::fs::MetadataExt;
        file.metadata().unwrap().blocks() * 512
    }

    #[test]
    fn writes_and_seeks_land_as_in_a_plain_file_and_the_spare_reservation_is_given_back() {
        // In the temporary directory: on ext4 (as on the development and CI machines) space
        // is really reserved; elsewhere the file is a plain one, and must read the same.
        let tmp = NamedTempFile::new().unwrap();
        let reserving = gains_from_reserving(tmp.as_file());
        // One MiB expected, three written: the reservation grows past the first.
        let mut file = Reserved::new(tmp, 1 << 20, true);
        assert_eq!(file.reserving, reserving);
        if reserving {
            assert!((2 << 20..3 << 20).contains(&file.reserved));
        }
        let block: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        for _ in 0..3 {
            file.write_all(&block).unwrap();
        }
        file.seek(SeekFrom::Start(5)).unwrap();
        file.write_all(b"patched").unwrap();
        file.seek(SeekFrom::End(0)).unwrap();
        file.write_all(b"tail").unwrap();
        if reserving {
            let reserved = file.reserved;
            assert!(reserved >= (2 << 20) + STEP);
            #[cfg(unix)]
            assert!(occupied(file.file.as_file()) >= reserved);
        }
        let tmp = file.finish().unwrap();
        let mut expected = [&block[..], &block[..], &block[..], b"tail"].concat();
        expected[5..12].copy_from_slice(b"patched");
        assert_eq!(std::fs::read(tmp.path()).unwrap(), expected);
        #[cfg(unix)]
        assert!(occupied(tmp.as_file()) < expected.len() as u64 + (1 << 20));
    }

    #[test]
    fn nothing_is_reserved_unless_asked() {
        let tmp = NamedTempFile::new().unwrap();
        let mut file = Reserved::new(tmp, 1 << 30, false);
        assert_eq!((file.reserved, file.reserving), (0, false));
        file.write_all(b"abc").unwrap();
        let tmp = file.finish().unwrap();
        assert_eq!(std::fs::read(tmp.path()).unwrap(), b"abc");
    }
}
