//! What a commit needs to know, and how it fails: shared by local files (`atomic.rs`) and
//! object stores (`remote/`).

use std::io;

use super::ObjectStoreOptions;

/// Why an atomic write failed: the writer's own error, or the file system's.
#[derive(Debug)]
pub(crate) enum CommitError<E> {
    /// The writer failed; nothing was committed.
    Write(E),
    /// Creating, syncing or renaming the file failed; nothing was committed.
    Io(io::Error),
}

/// How a write is committed.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "object-store"), allow(dead_code))]
pub(crate) struct Commit<'a> {
    /// Whether a local file's data and rename reach the disk before the commit returns.
    pub(crate) fsync: bool,
    /// How an object store is reached and uploaded to.
    pub(crate) remote: &'a ObjectStoreOptions,
    /// About how many bytes will be written (the tensor data), to size upload parts.
    pub(crate) size_hint: u64,
}
