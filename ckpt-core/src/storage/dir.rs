//! Directories of objects, for checkpoints made of several files (a PyTorch Distributed
//! Checkpoint): whether a location is one, its children and sub-directories, making one, and
//! removing a child before it is replaced.

use std::io;

use super::{Listing, Location, ObjectStoreOptions};

impl Location {
    /// The object named `name` inside this directory.
    pub(crate) fn child(&self, name: &str) -> Location {
        match self {
            Location::Path(path) => Location::Path(path.join(name)),
            Location::Url(url) => Location::Url(url.child(name)),
            Location::Memory(dir) => Location::Memory(format!("{dir}/{name}")),
        }
    }

    /// The directory named `name` inside this one; at a URL, with the trailing slash that
    /// names a directory (`s3://b/run/` and `step-1` give `s3://b/run/step-1/`).
    pub(crate) fn sub_directory(&self, name: &str) -> Location {
        match self {
            Location::Url(url) => Location::Url(url.child(&format!("{name}/"))),
            other => other.child(name),
        }
    }
}

/// Whether `location` names a directory: a local one, or a URL ending in `/` (object stores
/// have no directories, only names sharing a prefix).
pub(crate) fn is_directory(location: &Location) -> bool {
    match location {
        Location::Path(path) => path.is_dir(),
        Location::Url(url) => url.file_name().is_none(),
        Location::Memory(_) => false,
    }
}

/// Makes the directory `location` and its parents, for a local one; an object store needs
/// none.
pub(crate) fn create_dir(location: &Location) -> io::Result<()> {
    match location {
        Location::Path(path) => std::fs::create_dir_all(path),
        Location::Url(_) => Ok(()),
        Location::Memory(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "bytes in memory cannot hold a directory; save to a directory",
        )),
    }
}

/// Removes the object at `location` if it exists, and with `fsync` makes the removal durable
/// (the directory synced), so that a checkpoint whose marker file is removed before its data
/// is rewritten is never seen with the new data under the old marker.
pub(crate) fn remove(
    location: &Location,
    fsync: bool,
    remote: &ObjectStoreOptions,
) -> io::Result<()> {
    match location {
        Location::Path(path) => {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
            if fsync {
                sync_parent(path)?;
            }
            Ok(())
        }
        #[cfg(feature = "object-store")]
        Location::Url(url) => super::remote::remove(url, remote),
        #[cfg(not(feature = "object-store"))]
        Location::Url(url) => {
            let _ = remote;
            Err(super::without_object_store(url))
        }
        Location::Memory(_) => Ok(()),
    }
}

/// Syncs the directory holding `path`, so that renames and removals in it are durable.
pub(crate) fn sync_parent(path: &std::path::Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Whether an object exists at `location`.
pub(crate) fn exists(location: &Location, remote: &ObjectStoreOptions) -> io::Result<bool> {
    match location {
        Location::Path(path) => path.try_exists(),
        _ => match super::open(location, true, remote) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
    }
}

/// The names of the files in the directory `location`, sorted: a local directory's, or the
/// objects directly under an object store's prefix.
pub(crate) fn list(location: &Location, remote: &ObjectStoreOptions) -> io::Result<Vec<String>> {
    Ok(listing(location, remote)?
        .files
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// The files and sub-directories of the directory `location`: a local directory's (symbolic
/// links are neither), or what lies directly under an object store's prefix.
pub(crate) fn listing(location: &Location, remote: &ObjectStoreOptions) -> io::Result<Listing> {
    match location {
        Location::Path(path) => {
            let _ = remote;
            let mut listed = Listing {
                files: Vec::new(),
                dirs: Vec::new(),
            };
            for entry in std::fs::read_dir(path)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if kind.is_file() {
                    listed.files.push((name, entry.metadata()?.len()));
                } else if kind.is_dir() {
                    listed.dirs.push(name);
                }
            }
            listed.files.sort();
            listed.dirs.sort();
            Ok(listed)
        }
        #[cfg(feature = "object-store")]
        Location::Url(url) => super::remote::listing(url, remote),
        #[cfg(not(feature = "object-store"))]
        Location::Url(url) => Err(super::without_object_store(url)),
        Location::Memory(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "bytes in memory are no directory",
        )),
    }
}
