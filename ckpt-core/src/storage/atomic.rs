//! Atomic commits: a new file is written next to its target under a temporary name, then
//! renamed over it, so a failed or interrupted save never damages the previous file. An object
//! in a store is uploaded in parts and becomes visible whole when the upload completes
//! (`remote/upload.rs`).
//!
//! Temporaries are named `.NAME.ckpt-PID-RANDOM.tmp`: a save that was killed leaves one behind,
//! and the next save of the same target removes those whose process is gone.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

pub(crate) use super::commit::{Commit, CommitError};
use super::previous::Previous;
use super::reserve::Reserved;
use super::{Location, Sink};

/// Buffering of the temporary file: large enough that formats can write small pieces.
const BUFFER: usize = 1 << 20;

/// Writes a new object at `location` through `write`, then commits it: for a file, a temporary
/// file in the same directory renamed over the target; for an object in a store, a multipart
/// upload completed (or a single PUT, for small objects).
///
/// With `fsync`, the data is on disk before the rename and the rename before this returns. An
/// error or a crash at any point leaves either the old object or the new one, never a mix, and
/// no temporary file or unfinished upload after an error. `write` may be called twice for an
/// object store, with the same bytes expected both times (see `remote/upload.rs`).
pub(crate) fn write_atomically<E>(
    location: &Location,
    commit: &Commit<'_>,
    write: impl Fn(&mut dyn Sink) -> Result<(), E>,
) -> Result<(), CommitError<E>> {
    let path = match location {
        Location::Path(path) => path,
        #[cfg(feature = "object-store")]
        Location::Url(url) => return super::remote::write(url, commit, &write),
        #[cfg(not(feature = "object-store"))]
        Location::Url(url) => return Err(CommitError::Io(super::without_object_store(url))),
        Location::Memory(_) => {
            return Err(CommitError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "bytes in memory cannot be saved to; save to a file",
            )));
        }
    };
    let fsync = commit.fsync;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CommitError::Io(io::Error::other("the path names no file")))?;
    remove_stale(dir, name);
    let mut builder = tempfile::Builder::new();
    let prefix = temporary_prefix(name, Some(std::process::id()));
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As a plain `File::create` would: 0o666 less the umask, not tempfile's private 0o600.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder.tempfile_in(dir).map_err(CommitError::Io)?;
    let previous = Previous::open(path);
    // Without fsync, space is reserved ahead of the writes where that spares the rename a
    // flush (`reserve.rs`); a save with fsync writes everything back before it renames.
    let tmp = Reserved::new(tmp, commit.size_hint, !fsync);
    let mut sink = BufWriter::with_capacity(BUFFER, tmp);
    write(&mut sink).map_err(CommitError::Write)?;
    // Dropping the temporary file on any error below removes it.
    let tmp = sink
        .into_inner()
        .map_err(|e| CommitError::Io(e.into_error()))?
        .finish()
        .map_err(CommitError::Io)?;
    if fsync {
        tmp.as_file().sync_all().map_err(CommitError::Io)?;
    }
    tmp.persist(path).map_err(|e| CommitError::Io(e.error))?;
    previous.release();
    if fsync {
        sync_dir(dir).map_err(CommitError::Io)?;
    }
    Ok(())
}

/// `.NAME.ckpt-PID-`, or `.NAME.ckpt-` for the temporaries of any process.
fn temporary_prefix(name: &std::ffi::OsStr, pid: Option<u32>) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".ckpt-");
    if let Some(pid) = pid {
        prefix.push(format!("{pid}-"));
    }
    prefix
}

/// The temporary files in `dir` that saves of the file `name` left behind and whose process
/// has ended: saves that were killed. Only on Linux, where a process's liveness can be asked
/// of `/proc`; elsewhere none are reported.
fn stale_in(dir: &Path, name: &std::ffi::OsStr) -> Vec<PathBuf> {
    if !cfg!(target_os = "linux") {
        return Vec::new();
    }
    let prefix = temporary_prefix(name, None);
    let Some(prefix) = prefix.to_str() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file_name = entry.file_name();
            let rest = file_name.to_str()?.strip_prefix(prefix)?;
            rest.strip_suffix(".tmp")?;
            let pid: u32 = rest.split('-').next()?.parse().ok()?;
            let gone = pid != own && !Path::new(&format!("/proc/{pid}")).exists();
            gone.then(|| entry.path())
        })
        .collect()
}

/// Removes what [`stale_temporaries`] finds; a file that cannot be removed is left alone.
fn remove_stale(dir: &Path, name: &std::ffi::OsStr) {
    for stale in stale_in(dir, name) {
        let _ = std::fs::remove_file(stale);
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing here; the rename is durable once the OS flushes.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ObjectStoreOptions;

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed_by_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("model.ckpt");
        // A pid beyond the kernel's limit (4194304) never runs.
        let stale = dir.path().join(".model.ckpt.ckpt-4294967-abc.tmp");
        let alive = dir
            .path()
            .join(format!(".model.ckpt.ckpt-{}-xyz.tmp", std::process::id()));
        let other = dir.path().join(".other.ckpt.ckpt-4294967-abc.tmp");
        for f in [&stale, &alive, &other] {
            std::fs::write(f, b"partial").unwrap();
        }
        if cfg!(target_os = "linux") {
            assert_eq!(
                stale_in(dir.path(), "model.ckpt".as_ref()),
                std::slice::from_ref(&stale)
            );
        }
        let commit = Commit {
            fsync: false,
            remote: &ObjectStoreOptions::new(),
            size_hint: 3,
        };
        write_atomically::<io::Error>(&Location::Path(target.clone()), &commit, |sink| {
            std::io::Write::write_all(sink, b"new")
        })
        .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(stale.exists(), !cfg!(target_os = "linux"));
        assert!(alive.exists() && other.exists());
    }
}
