//! PyTorch Distributed Checkpoint directories: [`save`] one from a single process, or from
//! several ranks in `torch.distributed.checkpoint.save`'s steps: every rank's [`plan_rank`],
//! the coordinator's [`dedup`] of the plans (so that a replicated tensor is written once),
//! every rank's [`write_rank`] of its plan, and the coordinator's [`commit`]. Loading one into one process is
//! [`load`](crate::load) of the directory; into one rank of another sharding,
//! [`load_shards`].
//!
//! A multi-rank save, each rank holding half the rows of `w` and all of `b`, which only one
//! of them writes:
//!
//! ```
//! # use ckpt_core as ckpt;
//! use std::collections::HashMap;
//! use ckpt::shard::Chunk;
//! use ckpt::{SaveOptions, Tensor, dict};
//!
//! # let tmp = tempfile::tempdir()?;
//! let dir = tmp.path().join("step-7");
//! let options = SaveOptions::new();
//! let b = Tensor::from_vec(vec![0.5f32, -0.5], &[2])?;
//! let halves = Chunk::split(&[4, 2], 0, 2)?; // rows 0..2 and 2..4 of a 4 × 2 tensor
//! let mut states = Vec::new();
//! for (rank, half) in halves.into_iter().enumerate() {
//!     let start = rank as f32 * 4.0;
//!     let rows = Tensor::from_vec((0..4).map(|i| start + i as f32).collect(), &[2, 2])?;
//!     states.push((dict! { "w" => rows, "b" => &b }, HashMap::from([("w".to_owned(), half)])));
//! }
//! // In a real job each rank runs its steps and sends what they return (serde-serializable)
//! // to the coordinator, which sends each rank its plan back.
//! let mut plans = Vec::new();
//! for (rank, (state, chunks)) in states.iter().enumerate() {
//!     plans.push(ckpt::dcp::plan_rank(state, &dir, rank, chunks)?);
//! }
//! let plans = ckpt::dcp::dedup(&plans); // `b` is kept by one rank only
//! let mut parts = Vec::new();
//! for ((state, _), plan) in states.iter().zip(&plans) {
//!     parts.push(ckpt::dcp::write_rank(state, &dir, plan, &options)?);
//! }
//! ckpt::dcp::commit(&dir, &parts, &options)?; // writes .metadata: the checkpoint exists now
//!
//! let loaded = ckpt::load(&dir)?;
//! let w = loaded["w"].as_tensor().unwrap();
//! assert_eq!((w.shape(), w.to_f64_vec()?), (&[4, 2][..], vec![0., 1., 2., 3., 4., 5., 6., 7.]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use super::{Error, LoadOptions, SaveOptions};
use crate::format::dcp as format;
pub use crate::format::dcp::{Dcp, DcpError, RankPlan, RankWrite};
use crate::shard::Chunk;
use crate::storage::atomic::Commit;
use crate::storage::{self, Location};
use crate::tensor::Tensor;
use crate::value::Value;

/// Saves `value` as a DCP checkpoint of one rank in the directory `dir` (made if missing),
/// which `torch.distributed.checkpoint.load` reads into any number of ranks and
/// `dcp_to_torch_save` turns into a `.pt` file. Keys are flattened as DCP flattens a state
/// dict (`model.0.weight`, `optim.state.0.exp_avg`), with their nesting recorded.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Tensor, dict};
///
/// # let tmp = tempfile::tempdir()?;
/// let dir = tmp.path().join("ckpt");
/// ckpt::dcp::save(dict! { "model" => dict! { "w" => Tensor::scalar(1.5f32) } }, &dir)?;
/// assert!(dir.join(".metadata").exists() && dir.join("__0_0.distcp").exists());
/// assert_eq!(ckpt::load(&dir)?["model"]["w"].as_tensor().unwrap().to_f64_vec()?, [1.5]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save<'a>(value: impl Into<Value<'a>>, dir: impl AsRef<Path>) -> Result<(), Error> {
    save_with(value, dir, &SaveOptions::default())
}

/// [`save`] with options: fsync, and how a directory at a URL is reached.
pub fn save_with<'a>(
    value: impl Into<Value<'a>>,
    dir: impl AsRef<Path>,
    options: &SaveOptions,
) -> Result<(), Error> {
    let value = value.into();
    let plan = plan_rank(&value, dir.as_ref(), 0, &HashMap::new())?;
    let part = write_rank(&value, dir.as_ref(), &plan, options)?;
    commit(dir, &[part], options)
}

/// The first step of a multi-rank save, on every rank: what the rank holds of `value`, for
/// the coordinator's [`dedup`]. A tensor whose flattened key is in `chunks` is that chunk of
/// a larger tensor (a row shard, a block of a 2-D mesh); every other tensor is whole. The
/// state is checked here as [`write_rank`] will write it (a dict at the root, no two entries
/// flattening to one key, each chunk the size of its tensor); `dir` is the checkpoint that
/// errors name.
pub fn plan_rank(
    value: &Value<'_>,
    dir: impl AsRef<Path>,
    rank: usize,
    chunks: &HashMap<String, Chunk>,
) -> Result<RankPlan, Error> {
    let dir = Location::from(dir.as_ref());
    if let Some((key, defect)) = value.first_defect() {
        return Err(Error::Unsupported {
            location: dir,
            key: (!key.is_empty()).then_some(key),
            problem: format!("cannot be saved: {defect}"),
        });
    }
    Ok(format::plan(&dir, rank, value, chunks)?)
}

/// The second step, on the coordinator once every rank's [`plan_rank`] has reached it: each
/// item several ranks hold (a replicated tensor, one chunk on two ranks, a value every rank
/// has) is kept in one plan only, so that its bytes are written once. The rank is chosen as
/// PyTorch's `DefaultSavePlanner` chooses it: items in the order they first appear, each
/// given to the holder with the fewest bytes given so far, the lowest rank on a tie, so that
/// replicated tensors spread over the ranks by size. The plans come back in the order given;
/// send each rank its own.
pub fn dedup(plans: &[RankPlan]) -> Vec<RankPlan> {
    format::dedup(plans)
}

/// The third step, on every rank: writes `__{rank}_0.distcp` into `dir` with the items of
/// `value` that the rank's `plan` (from [`dedup`]) keeps, and returns what it wrote, for the
/// coordinator's [`commit`]. `value` must be the state the plan was made from.
///
/// An old `.metadata` in `dir` is removed first, so the directory is not a checkpoint again
/// until [`commit`] writes the new one.
pub fn write_rank(
    value: &Value<'_>,
    dir: impl AsRef<Path>,
    plan: &RankPlan,
    options: &SaveOptions,
) -> Result<RankWrite, Error> {
    let dir = Location::from(dir.as_ref());
    if let Some((key, defect)) = value.first_defect() {
        return Err(Error::Unsupported {
            location: dir,
            key: (!key.is_empty()).then_some(key),
            problem: format!("cannot be saved: {defect}"),
        });
    }
    let commit = Commit {
        fsync: options.fsync,
        remote: &options.object_store,
        size_hint: 0,
    };
    Ok(format::write_rank(&dir, plan, value, &commit)?)
}

/// The last step, on the coordinator once every rank's [`write_rank`] has returned: checks
/// the parts against one another (one dtype and global shape per tensor, chunks that tile it
/// exactly) and writes `.metadata`, atomically and last. Until it returns, `dir` is no
/// checkpoint. An item several parts hold (plans that were not deduplicated) is named from
/// the lowest rank; the other copies stay unused in their files.
pub fn commit(
    dir: impl AsRef<Path>,
    parts: &[RankWrite],
    options: &SaveOptions,
) -> Result<(), Error> {
    let dir = Location::from(dir.as_ref());
    let commit = Commit {
        fsync: options.fsync,
        remote: &options.object_store,
        size_hint: 0,
    };
    Ok(format::commit(&dir, parts, &commit)?)
}

/// Resharded load, for one rank of a job whose sharding differs from the one that saved: the
/// part `chunk` of each tensor `wanted` names (a row block, a column block, any box of the
/// global tensor), read only from the items of the saved chunks that overlap it, and from
/// each only the bytes of the overlap: memory-mapped local files are touched only there, and
/// an object store is asked for those byte ranges (several GETs at once), not whole items.
/// An item whose tensor is not stored in C order (which DCP does not write) is read whole. Each key must be a tensor of
/// the checkpoint whose global shape is the chunk's, as `dcp.load` requires.
///
/// ```
/// # use ckpt_core as ckpt;
/// use std::collections::HashMap;
/// use ckpt::shard::Chunk;
/// use ckpt::{LoadOptions, Tensor, dict};
///
/// # let tmp = tempfile::tempdir()?;
/// let dir = tmp.path().join("ckpt");
/// let w = Tensor::from_vec((0..12).map(|i| i as f32).collect(), &[3, 4])?;
/// ckpt::dcp::save(dict! { "w" => &w }, &dir)?;
///
/// // Rank 1 of 2, sharded by columns: columns 2..4.
/// let mine = Chunk::split(&[3, 4], 1, 2)?.remove(1);
/// let wanted = HashMap::from([("w".to_owned(), mine)]);
/// let local = ckpt::dcp::load_shards(&dir, &wanted, &LoadOptions::new())?;
/// assert_eq!(local["w"].view().to_f64_vec()?, [2., 3., 6., 7., 10., 11.]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_shards(
    dir: impl AsRef<Path>,
    wanted: &HashMap<String, Chunk>,
    options: &LoadOptions,
) -> Result<HashMap<String, Tensor>, Error> {
    let dir = Location::from(dir.as_ref());
    let metadata = format::metadata_of(&dir).unwrap_or_else(|| dir.child(format::METADATA));
    let source = storage::open(&metadata, options.mmap, &options.object_store)
        .map_err(|e| Error::io(&metadata, e))?;
    let opened = format::open(source, options.mmap, &options.object_store)?;
    wanted
        .iter()
        .map(|(key, chunk)| Ok((key.clone(), opened.shard(key, chunk)?)))
        .collect()
}
