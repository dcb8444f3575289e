//! What a directory holds: a complete sharded checkpoint, or the remains of a save that did
//! not finish ([`status`]), and removing those ([`clean`]).

use std::path::Path;

use super::Error;
use super::attempt::{self, ATTEMPT};
use super::manifest::{self, MARKER, Manifest};
use crate::storage::{self, Location, ObjectStoreOptions};

/// What a directory holds, by its commit marker and manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// A committed checkpoint of a job of `world_size` ranks.
    Complete {
        /// The ranks of the job that saved it.
        world_size: usize,
    },
    /// A save that did not commit: the manifests of ranks `present` (of the last save begun
    /// there), of a job of `world_size` ranks if a manifest says so.
    Incomplete {
        /// The ranks whose manifests are present.
        present: Vec<usize>,
        /// The job's size, if a manifest says it.
        world_size: Option<usize>,
        /// The ranks whose manifests are missing, if the job's size is known.
        missing: Vec<usize>,
    },
}

/// Whether the directory `dir` (a local one, or a URL's prefix) holds a complete sharded
/// checkpoint or an incomplete one.
pub fn status(dir: impl AsRef<Path>) -> Result<Status, Error> {
    status_with(dir, &ObjectStoreOptions::default())
}

/// [`status`], with how URLs are reached.
pub fn status_with(dir: impl AsRef<Path>, remote: &ObjectStoreOptions) -> Result<Status, Error> {
    status_of(&Location::from(dir.as_ref()), remote)
}

pub(super) fn status_of(dir: &Location, remote: &ObjectStoreOptions) -> Result<Status, Error> {
    let marker = dir.child(MARKER);
    if let Some(bytes) = manifest::read_small(&marker, remote)? {
        let metadata = manifest::parse_metadata(&marker, &bytes)?;
        return Ok(Status::Complete {
            world_size: metadata.world_size,
        });
    }
    let names = storage::dir::list(dir, remote).map_err(|e| Error::io(dir, e))?;
    let mut manifests: Vec<(usize, Manifest)> = names
        .iter()
        .filter_map(|n| manifest::manifest_rank(n))
        .filter_map(|rank| {
            let file = dir.child(&manifest::manifest_name(rank));
            let bytes = manifest::read_small(&file, remote).ok()??;
            Some((rank, manifest::parse_manifest(&file, &bytes, rank).ok()?))
        })
        .collect();
    manifests.sort_by_key(|(rank, _)| *rank);
    // The save under way (the one `save.json` names) says the job's size, else any
    // manifest; of that save, only its votes are present, not those an earlier one left.
    let named = attempt::named(dir, remote)?;
    let world_size = named
        .as_ref()
        .map(|n| n.world_size)
        .or_else(|| manifests.first().map(|(_, m)| m.world_size));
    let current = named.map(|n| n.save);
    let present: Vec<usize> = manifests
        .iter()
        .filter(|(_, m)| current.as_ref().is_none_or(|save| m.save == *save))
        .map(|(rank, _)| *rank)
        .collect();
    let missing = world_size
        .map(|n| (0..n).filter(|r| !present.contains(r)).collect())
        .unwrap_or_default();
    Ok(Status::Incomplete {
        present,
        world_size,
        missing,
    })
}

/// The error a load of an incomplete checkpoint gives.
pub(super) fn incomplete(dir: &Location, remote: &ObjectStoreOptions) -> Error {
    match status_of(dir, remote) {
        Ok(Status::Incomplete {
            present,
            world_size,
            missing,
        }) => Error::Incomplete {
            dir: dir.clone(),
            present,
            world_size,
            missing,
        },
        Ok(Status::Complete { .. }) => {
            Error::invalid(&dir.child(MARKER), "appeared during the load")
        }
        Err(e) => e,
    }
}

/// Removes what an unfinished save left in the directory `dir` (a local one, or a URL's
/// prefix): manifests, data files, the save's nonce and temporary files. Returns the names
/// removed. A complete checkpoint is refused ([`Error::Exists`]); the directory itself is
/// kept.
pub fn clean(dir: impl AsRef<Path>) -> Result<Vec<String>, Error> {
    clean_with(dir, &ObjectStoreOptions::default())
}

/// [`clean`], with how URLs are reached.
pub fn clean_with(
    dir: impl AsRef<Path>,
    remote: &ObjectStoreOptions,
) -> Result<Vec<String>, Error> {
    clean_at(&Location::from(dir.as_ref()), remote)
}

/// [`clean_with`] of a location.
pub(super) fn clean_at(dir: &Location, remote: &ObjectStoreOptions) -> Result<Vec<String>, Error> {
    if let Status::Complete { .. } = status_of(dir, remote)? {
        return Err(Error::Exists { dir: dir.clone() });
    }
    let mut removed = Vec::new();
    // Never the marker: one that appears now is a commit that raced this clean.
    for name in files_of(dir, remote)?.into_iter().filter(|n| n != MARKER) {
        let file = dir.child(&name);
        storage::dir::remove(&file, true, remote).map_err(|e| Error::io(&file, e))?;
        removed.push(name);
    }
    Ok(removed)
}

/// The names of the files in the directory `dir` (a local one, or a URL's prefix) that a
/// sharded save writes: the commit marker, the save's nonce, manifests, data files and
/// temporary files, sorted. Empty for a directory that holds no sharded checkpoint,
/// complete or not.
pub fn files(dir: impl AsRef<Path>) -> Result<Vec<String>, Error> {
    files_with(dir, &ObjectStoreOptions::default())
}

/// [`files`], with how URLs are reached.
pub fn files_with(
    dir: impl AsRef<Path>,
    remote: &ObjectStoreOptions,
) -> Result<Vec<String>, Error> {
    files_of(&Location::from(dir.as_ref()), remote)
}

fn files_of(dir: &Location, remote: &ObjectStoreOptions) -> Result<Vec<String>, Error> {
    let names = storage::dir::list(dir, remote).map_err(|e| Error::io(dir, e))?;
    Ok(names.into_iter().filter(|n| is_ours(n)).collect())
}

/// Whether a file named `name` is one a sharded save writes: the commit marker, the save's
/// nonce, a manifest, a data file, or a temporary file of one of them.
pub(super) fn is_ours(name: &str) -> bool {
    name == MARKER
        || name == ATTEMPT
        || (name.starts_with(&format!(".{ATTEMPT}")) && name.ends_with(".tmp"))
        || manifest::manifest_rank(name).is_some()
        || (name.starts_with("rank-") && name.ends_with(".ckpt"))
        || (name.starts_with(".rank-") && name.ends_with(".tmp"))
        || (name.starts_with(&format!(".{MARKER}")) && name.ends_with(".tmp"))
}
