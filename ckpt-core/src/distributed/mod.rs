//! ckpt's own sharded checkpoints, for multi-rank jobs: every rank [`save`]s its
//! [`Sharded`](crate::shard::Sharded) parts (and rank 0 the replicated tensors) into one
//! directory, and any job, of any number of ranks and any sharding, [`load`]s it, each rank
//! reading only the blocks that overlap what it holds.
//!
//! ```text
//! step-100/
//!   rank-0.ckpt              rank 0's data: its parts and the replicated tensors (ckpt's format)
//!   rank-0.manifest.json     keys, dtypes, global shapes, chunks, byte offsets, block checksums
//!   rank-1.ckpt
//!   rank-1.manifest.json
//!   checkpoint.json          the commit marker, written last by rank 0
//! ```
//!
//! The commit rule: every rank writes its data, then its manifest, each atomically; rank 0
//! waits for every manifest (or gathers them through a [`Coordinator`]), checks that every
//! tensor's chunks tile it and that the ranks agree on dtypes and shapes, and writes
//! `checkpoint.json`. A directory without it is never loaded: a killed save leaves the
//! previous checkpoint (in its own directory) as it was, and an incomplete directory that
//! [`status`] recognises and [`clean`] removes.
//!
//! Outside a job, [`inspect`] lists a checkpoint from its manifests, [`verify`] checks every
//! block of its data, and [`Whole`] reads it one global tensor at a time, whole, to
//! consolidate it into one file (`ckpt convert DIR model.safetensors`).
//!
//! Two ranks, in one process for the example (a real job runs one per process), save a
//! tensor split by rows; one process loads it whole:
//!
//! ```
//! # use ckpt_core as ckpt;
//! use ckpt::distributed::{self, Job};
//! use ckpt::shard::{Chunk, Sharded};
//! use ckpt::{DType, SaveOptions, StateDict, StateDictOptions, Tensor};
//!
//! # let tmp = tempfile::tempdir()?;
//! let dir = tmp.path().join("step-1");
//! let rows = Chunk::split(&[4, 2], 0, 2)?;
//! let ranks: Vec<_> = (0..2)
//!     .map(|rank| {
//!         let local = Tensor::from_vec((0..4).map(|i| (rank * 4 + i) as f32).collect(), &[2, 2])?;
//!         Ok(Sharded::new(DType::F32, vec![4, 2], vec![(rows[rank].clone(), local)])?)
//!     })
//!     .collect::<Result<_, Box<dyn std::error::Error>>>()?;
//! std::thread::scope(|s| {
//!     for (rank, w) in ranks.iter().enumerate() {
//!         let dir = &dir;
//!         s.spawn(move || {
//!             distributed::save(&w.state_dict(), dir, &Job::new(rank, 2), &SaveOptions::new())
//!         });
//!     }
//! });
//!
//! let mut whole = Tensor::zeros(DType::F32, &[4, 2])?;
//! distributed::load(&mut whole, &dir, &StateDictOptions::new())?;
//! assert_eq!(whole.view().to_f64_vec()?, [0., 1., 2., 3., 4., 5., 6., 7.]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod coordinator;
mod error;
mod index;
mod job;
mod layout;
mod load;
mod manifest;
mod save;
mod survey;
mod whole;

pub use self::coordinator::{CoordinationError, Coordinator};
pub use self::error::{Error, Holding};
pub use self::job::{DEFAULT_BLOCK_SIZE, Job};
pub use self::layout::{Status, clean, files, status};
pub use self::load::{Loaded, load, load_with};
pub use self::save::save;
pub use self::survey::{Damage, Summary, TensorSummary, Verified, inspect, verify};
pub use self::whole::Whole;
