//! [`Job`]: this process's place in a multi-rank job, and how its ranks agree.

use std::time::Duration;

use super::coordinator::{DEFAULT_TIMEOUT, POLL};
use super::{Coordinator, Error};

/// The checksum block of a save by default: small enough that a rank reading a slice of a
/// tensor reads little beyond it (at most one block at each end of each contiguous run,
/// under 10% of a run of 5 MiB), large enough that the checksums are a few bytes per
/// 256 KiB of data.
pub const DEFAULT_BLOCK_SIZE: u64 = 256 << 10;

/// This process's rank in a job of `world_size` ranks, and how the ranks agree on a save.
///
/// By default they agree through the checkpoint's storage: every rank's manifest is its
/// vote, rank 0 (the coordinator) waits for all of them and commits, the others wait for the
/// commit, each for at most [`timeout`](Job::timeout). A job with its own collective library
/// gives it as a [`Coordinator`] instead.
#[derive(Clone, Copy)]
pub struct Job<'c> {
    pub(super) rank: usize,
    pub(super) world_size: usize,
    pub(super) coordinator: Option<&'c dyn Coordinator>,
    pub(super) timeout: Duration,
    pub(super) poll: Duration,
    pub(super) block_size: u64,
    /// A digest of the job's run id, which every rank of the job shares, if it has one.
    pub(super) run: Option<u64>,
}

impl<'c> Job<'c> {
    /// Rank `rank` of `world_size`, coordinating through storage.
    pub fn new(rank: usize, world_size: usize) -> Self {
        Job {
            rank,
            world_size,
            coordinator: None,
            timeout: DEFAULT_TIMEOUT,
            poll: POLL,
            block_size: DEFAULT_BLOCK_SIZE,
            run: None,
        }
    }

    /// The rank and world of `coordinator`, which the ranks agree through.
    pub fn with_coordinator(coordinator: &'c dyn Coordinator) -> Self {
        Job {
            coordinator: Some(coordinator),
            ..Job::new(coordinator.rank(), coordinator.world_size())
        }
    }

    /// How long ranks coordinating through storage wait for one another (10 minutes by
    /// default).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The size of the blocks the data's checksums cover ([`DEFAULT_BLOCK_SIZE`]); at least
    /// 4 KiB.
    #[must_use]
    pub fn block_size(mut self, bytes: u64) -> Self {
        self.block_size = bytes.max(4096);
        self
    }

    /// The id of this run of the job, the same on every rank and new for every launch (a
    /// launcher's job id: `TORCHELASTIC_RUN_ID`, `SLURM_JOB_ID`). Ranks coordinating through
    /// storage then agree only with ranks of the same run: a rank left running after its job
    /// was killed never votes in the save of a job launched after it into the same directory
    /// (without a run id, storage alone cannot tell two such jobs apart).
    #[must_use]
    pub fn run_id(mut self, id: &str) -> Self {
        self.run = Some(xxhash_rust::xxh3::xxh3_64(id.as_bytes()));
        self
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many ranks the job has.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    pub(super) fn check(&self) -> Result<(), Error> {
        let problem = if self.world_size == 0 {
            "a job has at least one rank"
        } else if self.rank >= self.world_size {
            "the rank is not below the world size"
        } else {
            return Ok(());
        };
        Err(Error::Job {
            rank: self.rank,
            world_size: self.world_size,
            problem,
        })
    }
}
