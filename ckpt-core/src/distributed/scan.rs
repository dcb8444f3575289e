//! [`scan`]: the sharded checkpoints of a run's directory (`run/step-100/`, `run/step-200/`,
//! ...), committed or left by saves that did not finish, as `ckpt clean` lists them.

use std::path::Path;

use super::Error;
use super::layout::{Status, clean_at, is_ours, status_of};
use crate::storage::Listing;
use crate::storage::dir::listing;
use crate::storage::{Location, ObjectStoreOptions};

/// A directory holding (the files of) a sharded checkpoint, as [`scan`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Found {
    /// The directory: the one scanned, or one of its sub-directories (at a URL, with the
    /// trailing slash that names a directory).
    pub dir: Location,
    /// Committed, or what a save left.
    pub status: Status,
    /// The files a sharded save writes that it holds, with their sizes in bytes, sorted.
    pub files: Vec<(String, u64)>,
}

impl Found {
    /// The bytes of its files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, len)| len).sum()
    }

    /// Removes what an unfinished save left there, as [`clean_with`](super::clean_with)
    /// does, and returns the names removed; a committed checkpoint is refused
    /// ([`Error::Exists`]).
    pub fn clean(&self, remote: &ObjectStoreOptions) -> Result<Vec<String>, Error> {
        clean_at(&self.dir, remote)
    }
}

/// The sharded checkpoints in the directory `dir` (a local one, or a URL's prefix) and in
/// its sub-directories, one level down (a run's `step-100/`, `step-200/`, ...): each
/// directory that holds files a sharded save writes, committed or not, `dir` first and then
/// the others by name. Other directories are left out.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::distributed::{self, Job, Status};
/// use ckpt::{SaveOptions, StateDict, Tensor};
///
/// # let run = tempfile::tempdir()?;
/// let w = Tensor::zeros(ckpt::DType::F32, &[4])?;
/// distributed::save(&w.state_dict(), run.path().join("step-1"), &Job::new(0, 1), &SaveOptions::new())?;
/// let found = distributed::scan(run.path())?;
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].status, Status::Complete { world_size: 1 });
/// assert_eq!(found[0].dir.path(), Some(run.path().join("step-1").as_path()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scan(dir: impl AsRef<Path>) -> Result<Vec<Found>, Error> {
    scan_with(dir, &ObjectStoreOptions::default())
}

/// [`scan`], with how URLs are reached.
pub fn scan_with(dir: impl AsRef<Path>, remote: &ObjectStoreOptions) -> Result<Vec<Found>, Error> {
    let dir = Location::from(dir.as_ref());
    let top = listing(&dir, remote).map_err(|e| Error::io(&dir, e))?;
    let mut found = Vec::new();
    let subs: Vec<Location> = top
        .dirs
        .iter()
        .map(|name| dir.sub_directory(name))
        .collect();
    if let Some(here) = found_in(&dir, top, remote)? {
        found.push(here);
    }
    for sub in subs {
        let listed = listing(&sub, remote).map_err(|e| Error::io(&sub, e))?;
        if let Some(there) = found_in(&sub, listed, remote)? {
            found.push(there);
        }
    }
    Ok(found)
}

/// The checkpoint in `dir`, which holds `listed`, if it holds files a sharded save writes.
fn found_in(
    dir: &Location,
    listed: Listing,
    remote: &ObjectStoreOptions,
) -> Result<Option<Found>, Error> {
    let files: Vec<(String, u64)> = listed
        .files
        .into_iter()
        .filter(|(name, _)| is_ours(name))
        .collect();
    if files.is_empty() {
        return Ok(None);
    }
    Ok(Some(Found {
        dir: dir.clone(),
        status: status_of(dir, remote)?,
        files,
    }))
}
