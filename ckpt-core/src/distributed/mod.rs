//! ckpt's own sharded checkpoints, for multi-rank jobs: every rank [`save`]s its
//! [`Sharded`](crate::shard::Sharded) parts (and rank 0 the replicated tensors) into one
//! directory, or has a [`Saver`] save them in the background, and any job, of any number of
//! ranks and any sharding, [`load`]s it, each rank reading only the checksum blocks (or the
//! column tiles, for a rank that holds some columns) that overlap what it holds.
//!
//! ```text
//! step-100/
//!   rank-0.ckpt              rank 0's data: its parts and the replicated tensors (ckpt's format)
//!   rank-0.manifest.json     keys, dtypes, global shapes, chunks, byte offsets, checksums
//!   rank-1.ckpt
//!   rank-1.manifest.json
//!   save.json                the save's nonce, written first by rank 0
//!   checkpoint.json          the commit marker, written last by rank 0
//! ```
//!
//! The commit rule: rank 0 names the save with a random nonce (`save.json`); every rank
//! writes its data, then its manifest, each atomically, and the manifest carries the nonce;
//! rank 0 waits for every manifest of this save (or gathers them through a [`Coordinator`]),
//! checks that every tensor's chunks tile it and that the ranks agree on dtypes and shapes,
//! and writes `checkpoint.json`. A directory without it is never loaded: a killed save
//! leaves the previous checkpoint (in its own directory) as it was, and an incomplete
//! directory that [`status`] recognises and [`clean`] removes ([`scan`] finds them in a
//! run's directory), or that the next save reuses: the manifests the killed save left carry
//! its nonce, and count for nothing.
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
//!
//! A training loop keeps a [`Saver`]: its [`save`](Saver::save) blocks only while it copies
//! the rank's tensors into staging memory, which it keeps for the next save, and writes them
//! in the background; the next save, or [`Saver::wait`], reports the last one's error.
//!
//! ```
//! # use ckpt_core as ckpt;
//! use ckpt::distributed::{Job, Saver};
//! use ckpt::{SaveOptions, StateDict, Tensor};
//!
//! # let tmp = tempfile::tempdir()?;
//! let mut w = Tensor::zeros(ckpt::DType::F32, &[4])?;
//! let mut saver = Saver::new(Job::new(0, 1));
//! for step in 1..=2 {
//!     w.array_mut::<f32>()?.fill(step as f32); // a training step
//!     saver.save(&w.state_dict(), tmp.path().join(format!("step-{step}")), &SaveOptions::new())?;
//! }
//! saver.wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod attempt;
mod coordinator;
mod error;
mod index;
mod job;
mod layout;
mod load;
mod manifest;
mod save;
mod saver;
mod scan;
mod stage;
mod survey;
mod tiles;
mod whole;

pub use self::coordinator::{CoordinationError, Coordinator};
pub use self::error::{Error, Holding};
pub use self::job::{DEFAULT_BLOCK_SIZE, Job};
pub use self::layout::{Status, clean, clean_with, files, files_with, status, status_with};
pub use self::load::{Loaded, load, load_with};
pub use self::save::save;
pub use self::saver::{SaveHandle, Saver};
pub use self::scan::{Found, scan, scan_with};
pub use self::survey::{
    Damage, Summary, TensorSummary, Verified, inspect, inspect_with, verify, verify_with,
};
pub use self::whole::Whole;
