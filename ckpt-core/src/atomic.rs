//! Atomic file replacement: a failed or interrupted save never damages the previous file.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::Error;

/// Writes a new file next to `path`, then renames it over `path`. `write` gets the temporary
/// file and its path (for writers that only take paths).
///
/// The temporary file lives in the same directory, so the rename is atomic; with `fsync`, the
/// data is on disk before the rename and the rename is on disk before this returns. An error
/// or a crash at any point leaves either the old file or the new one, never a mix, and no
/// temporary file after an error.
pub(crate) fn write_atomically(
    path: &Path,
    fsync: bool,
    write: impl FnOnce(&mut File, &Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let err = |e| Error::io(path, e);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(io::Error::other("the path names no file")))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As a plain `File::create` would: 0o666 less the umask, not tempfile's private 0o600.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(err)?;
    let tmp_path = tmp.path().to_owned();
    write(tmp.as_file_mut(), &tmp_path)?;
    if fsync {
        // Through the path: a writer given only the path may have replaced the file.
        File::open(&tmp_path)
            .and_then(|f| f.sync_all())
            .map_err(err)?;
    }
    // Replacing a file frees the old one's blocks inside the rename, which for a large
    // checkpoint takes as long as writing a good part of it; holding the old file open moves that
    // work to the last close, done on a background thread.
    let previous = File::open(path).ok();
    tmp.persist(path).map_err(|e| err(e.error))?;
    if let Some(previous) = previous {
        let _ = std::thread::Builder::new()
            .name("ckpt-release-old".to_owned())
            .spawn(move || drop(previous));
    }
    if fsync {
        sync_dir(dir).map_err(err)?;
    }
    Ok(())
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
