//! [`Error`]: why a sharded save or load failed, naming the directory, the file, the rank and
//! the key it is about.

use std::io;
use std::time::Duration;

use super::CoordinationError;
use crate::dtype::DType;
use crate::loading::LoadError;
use crate::shard::ShardError;
use crate::storage::Location;

/// Why a sharded save or load failed. The previous checkpoint is never damaged and a model
/// is never half loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory holds no commit marker: a save that has not finished, or was killed.
    #[error(
        "{dir}: an incomplete sharded checkpoint (no checkpoint.json): manifests of rank(s) {present:?} are present{}",
        missing_ranks(*world_size, missing)
    )]
    Incomplete {
        /// The directory.
        dir: Location,
        /// The ranks whose manifests it holds.
        present: Vec<usize>,
        /// The job's size, if a manifest says it.
        world_size: Option<usize>,
        /// The ranks whose manifests it lacks, if the job's size is known.
        missing: Vec<usize>,
    },
    /// A save into a directory that already holds a complete checkpoint.
    #[error("{dir}: already holds a complete sharded checkpoint; save into a new directory")]
    Exists {
        /// The directory.
        dir: Location,
    },
    /// The coordinator waited for every rank's manifest in vain.
    #[error(
        "{dir}: rank(s) {missing:?} of {world_size} wrote no manifest for this save within {waited:?}{}; the checkpoint is not committed",
        stale_ranks(stale)
    )]
    MissingRanks {
        /// The directory.
        dir: Location,
        /// The ranks that did not finish.
        missing: Vec<usize>,
        /// Those of them whose manifest in the directory is of another save (one that was
        /// killed), and no vote of this one.
        stale: Vec<usize>,
        /// The job's size.
        world_size: usize,
        /// How long the coordinator waited.
        waited: Duration,
    },
    /// A rank waited in vain for the coordinator (rank 0) to begin the save, by writing
    /// `save.json`.
    #[error(
        "{dir}: the coordinator (rank 0) did not begin this save (no save.json for a job of this size) within {waited:?}"
    )]
    NotStarted {
        /// The directory.
        dir: Location,
        /// How long the rank waited.
        waited: Duration,
    },
    /// A rank waited for the coordinator's commit in vain.
    #[error("{dir}: the coordinator (rank 0) did not commit within {waited:?}")]
    NotCommitted {
        /// The directory.
        dir: Location,
        /// How long the rank waited.
        waited: Duration,
    },
    /// The ranks of a save through a coordinator name different directories: a rank a save
    /// behind the others (its `Saver` skipped one), or a job whose ranks disagree on the
    /// path. Every rank fails alike, before anything is written.
    #[error(
        "the ranks of this save name different directories: {}; every rank must save into one, named alike (a rank whose save was skipped is a save behind); nothing was saved",
        directories(dirs)
    )]
    DirectoriesDiffer {
        /// Each directory named (a local one made absolute, a URL without its secrets), with
        /// the ranks that name it, in the order of their first rank.
        dirs: Vec<(String, Vec<usize>)>,
    },
    /// A manifest, the metadata or a data file is not what a sharded checkpoint writes.
    #[error("{file}: {problem}")]
    Invalid {
        /// The file.
        file: Location,
        /// What is wrong.
        problem: String,
    },
    /// The ranks' chunks of a tensor do not tile it (a gap, an overlap, another shape).
    #[error("{dir}: the chunks of \"{key}\" saved by the ranks do not tile it: {error}")]
    Tiling {
        /// The directory.
        dir: Location,
        /// The key.
        key: String,
        /// How they fail to.
        #[source]
        error: Box<ShardError>,
    },
    /// Two ranks hold one tensor with different dtypes or global shapes.
    #[error(
        "{dir}: \"{key}\" is {} of shape {:?} on rank {} but {} of shape {:?} on rank {}",
        first.dtype, first.shape, first.rank, second.dtype, second.shape, second.rank
    )]
    Disagree {
        /// The directory.
        dir: Location,
        /// The key.
        key: String,
        /// What one rank holds.
        first: Box<Holding>,
        /// What another rank holds.
        second: Box<Holding>,
    },
    /// A replicated tensor is held by ranks other than the coordinator, which alone writes
    /// replicated tensors.
    #[error(
        "{dir}: \"{key}\" is a whole tensor on rank(s) {ranks:?} but not on rank 0, which writes the replicated tensors; hold it on rank 0 too, or make it a Sharded with a whole chunk"
    )]
    NotReplicated {
        /// The directory.
        dir: Location,
        /// The key.
        key: String,
        /// The ranks that hold it.
        ranks: Vec<usize>,
    },
    /// A block of tensor data does not match its checksum.
    #[error(
        "{file}: the data of \"{key}\" is damaged: bytes {start}..{end} do not match their checksum"
    )]
    Damaged {
        /// The data file.
        file: Location,
        /// The key whose data the block holds.
        key: String,
        /// Where the block starts in the file.
        start: u64,
        /// Where it ends.
        end: u64,
    },
    /// This rank's state cannot be saved.
    #[error("{dir}: {}cannot be saved: {problem}", key.as_deref().map(|k| format!("\"{k}\" ")).unwrap_or_default())]
    State {
        /// The directory.
        dir: Location,
        /// The key, if the problem is one tensor's.
        key: Option<String>,
        /// What is wrong.
        problem: String,
    },
    /// The job is not a job: a rank outside the world, a world of none.
    #[error("rank {rank} of a job of {world_size}: {problem}")]
    Job {
        /// The rank.
        rank: usize,
        /// The world size.
        world_size: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// The storage refused a read or write.
    #[error("{location}: {source}")]
    Io {
        /// The file.
        location: Location,
        /// What it said.
        #[source]
        source: io::Error,
    },
    /// Writing a data file failed.
    #[error(transparent)]
    Write(#[from] crate::file::Error),
    /// The job's coordinator failed.
    #[error("the coordinator failed: {0}")]
    Coordination(#[from] CoordinationError),
    /// The checkpoint does not fit the model (missing or unexpected keys in a strict load,
    /// shapes, dtypes), in `load_state_dict`'s words.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// What one rank holds of a tensor: its dtype and global shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The rank.
    pub rank: usize,
    /// The dtype it gives.
    pub dtype: DType,
    /// The global shape it gives.
    pub shape: Vec<u64>,
}

fn missing_ranks(world_size: Option<usize>, missing: &[usize]) -> String {
    match world_size {
        Some(n) => format!("; of a job of {n}, rank(s) {missing:?} are missing"),
        None => "; no manifest says how many ranks the job has".to_owned(),
    }
}

fn directories(dirs: &[(String, Vec<usize>)]) -> String {
    dirs.iter()
        .map(|(dir, ranks)| format!("rank(s) {ranks:?} name {dir}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn stale_ranks(stale: &[usize]) -> String {
    if stale.is_empty() {
        String::new()
    } else {
        format!(
            " (the manifests of rank(s) {stale:?} there are of another save, one that did not finish)"
        )
    }
}

impl Error {
    pub(super) fn io(location: &Location, source: io::Error) -> Self {
        Error::Io {
            location: location.clone(),
            source,
        }
    }

    pub(super) fn invalid(file: &Location, problem: impl Into<String>) -> Self {
        Error::Invalid {
            file: file.clone(),
            problem: problem.into(),
        }
    }
}
