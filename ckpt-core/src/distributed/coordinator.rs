//! [`Coordinator`]: how the ranks of a job agree, when the job has its own collective library.

use std::time::Duration;

/// The collective operations a sharded save needs, over a job's own communication library
/// (NCCL through cudarc, MPI, a framework's process group): implement it and hand it to
/// [`Job::with_coordinator`](super::Job::with_coordinator).
///
/// Without one, ranks agree through the checkpoint's storage itself (see
/// [`Job`](super::Job)), which needs nothing but the directory.
///
/// A save calls the collectives several times, in the same order on every rank (today an
/// all-gather of rank 0's save nonce and every rank's directory, one of the manifests, then
/// a barrier), as a collective library's operations are called: each call is a new
/// operation, never a repeat of the last. Ranks whose directories differ (one a save behind
/// the others) all fail with [`Error::DirectoriesDiffer`](super::Error::DirectoriesDiffer).
pub trait Coordinator: Send + Sync {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;

    /// How many ranks the job has.
    fn world_size(&self) -> usize;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<(), CoordinationError>;

    /// Gives `bytes` (a rank's manifest, a few kilobytes) to every rank and returns every
    /// rank's, indexed by rank.
    fn all_gather(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CoordinationError>;
}

/// Why a collective operation failed, as the coordinator reports it.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct CoordinationError {
    what: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl CoordinationError {
    /// A failure described in words.
    pub fn new(what: impl Into<String>) -> Self {
        CoordinationError {
            what: what.into(),
            source: None,
        }
    }

    /// A failure with the library's own error as its cause.
    pub fn with_source(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        CoordinationError {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// How long ranks coordinating through storage wait for one another by default.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How often they look.
pub(super) const POLL: Duration = Duration::from_millis(20);
