//! [`Saver`]: sharded saves in the background, for training loops, through staging memory
//! kept from one save to the next.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::stage::{Staged, Staging};
use super::{Coordinator, Error, Job, save};
use crate::file::SaveOptions;
use crate::state::TensorMap;
use crate::storage::Location;

/// Saves a rank's part of sharded checkpoints in the background: [`save`](Saver::save) copies
/// the rank's tensors into staging memory and returns, and a thread of the saver writes
/// them as [`distributed::save`](super::save) does while training goes on.
///
/// The saver keeps its staging memory from one save to the next: a save of a model whose
/// tensors have the sizes they had allocates nothing, and the memory held is this rank's
/// bytes and a little (64 bytes per tensor; up to 32 MiB more after the model shrank), which
/// [`staging_bytes`](Saver::staging_bytes) tells. One save runs at a time: the next
/// [`save`](Saver::save) first waits for the last and reports its error.
///
/// The background save owns its way of agreeing with the other ranks: through the
/// checkpoint's storage ([`Saver::new`]), or through the job's own [`Coordinator`], shared
/// with the saver ([`Saver::with_coordinator`]).
///
/// ```
/// # use ckpt_core as ckpt;
/// use std::collections::BTreeMap;
/// use ckpt::distributed::{self, Job, Saver};
/// use ckpt::{SaveOptions, StateDict, StateDictOptions, Tensor};
///
/// # let tmp = tempfile::tempdir()?;
/// let mut net = BTreeMap::from([("w".to_owned(), Tensor::from(ndarray::array![1.0f32, 2.0]))]);
/// let mut saver = Saver::new(Job::new(0, 1)); // rank 0 of a job of one
/// let step = tmp.path().join("step-1");
/// saver.save(&net.state_dict(), &step, &SaveOptions::new())?; // returns once staged
/// net.get_mut("w").unwrap().array_mut::<f32>()?[[0]] = 9.0; // training goes on meanwhile
/// saver.wait()?; // the last save's error, if it failed
///
/// let mut loaded = BTreeMap::from([("w".to_owned(), Tensor::from(ndarray::array![0.0f32, 0.0]))]);
/// distributed::load(&mut loaded, &step, &StateDictOptions::new())?;
/// assert_eq!(loaded["w"].view().to_f64_vec()?, [1.0, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Saver {
    job: Job<'static>,
    coordinator: Option<Arc<dyn Coordinator>>,
    staging: Staging,
    running: Option<Running>,
}

/// The save in the background.
struct Running {
    dir: PathBuf,
    thread: JoinHandle<Result<(), Error>>,
}

impl Saver {
    /// A saver for `job`, whose ranks agree through the checkpoint's storage (see [`Job`]),
    /// or through a coordinator that lives as long as the program. A coordinator the saves
    /// cannot borrow for that long is shared with [`Saver::with_coordinator`] instead.
    pub fn new(job: Job<'static>) -> Self {
        Saver {
            job,
            coordinator: None,
            staging: Staging::new(),
            running: None,
        }
    }

    /// A saver for the rank and world of `coordinator`, which the ranks agree through; the
    /// saver and its background saves share it. Its collectives run on the background
    /// thread while training goes on, so where the library allows one communicator only one
    /// thread at a time, give the saver one of its own (as PyTorch's `async_save` is given a
    /// process group of its own).
    pub fn with_coordinator(coordinator: Arc<dyn Coordinator>) -> Self {
        Saver {
            job: Job::new(coordinator.rank(), coordinator.world_size()),
            coordinator: Some(coordinator),
            staging: Staging::new(),
            running: None,
        }
    }

    /// The size of the blocks the data's checksums cover (see [`Job::block_size`]).
    #[must_use]
    pub fn block_size(mut self, bytes: u64) -> Self {
        self.job = self.job.block_size(bytes);
        self
    }

    /// Saves this rank's part of a sharded checkpoint into `dir` in the background, as
    /// [`distributed::save`](super::save) does, every rank of the job naming the same `dir`.
    ///
    /// First waits for the last save and returns its error if it failed (this save is then
    /// not started: call again to make it). Then copies this rank's tensors (its parts of
    /// the sharded ones, and on rank 0 the whole ones) into the staging memory, on ckpt's
    /// threads (`CKPT_THREADS`, else every core), and returns: the model may change from
    /// here on, and the checkpoint holds the values it had at the call. Nothing is written
    /// before the call returns; the background save makes the directory, writes and
    /// commits, and its errors come from [`SaveHandle::wait`], [`Saver::wait`] or the next
    /// save.
    ///
    /// A state dict that cannot be saved (duplicate keys, a part of the wrong shape) and a
    /// job that is no job are refused here, before anything is copied.
    pub fn save(
        &mut self,
        state: &TensorMap<'_>,
        dir: impl AsRef<Path>,
        options: &SaveOptions,
    ) -> Result<SaveHandle<'_>, Error> {
        self.wait()?;
        self.job.check()?;
        let dir = dir.as_ref().to_owned();
        let location = Location::from(dir.as_path());
        let staged = Staged::copy(state, &location, self.job.rank, &mut self.staging)?;

        let (settings, coordinator) = (self.job, self.coordinator.clone());
        let (thread_dir, options) = (dir.clone(), options.clone());
        let thread = std::thread::Builder::new()
            .name(format!("ckpt-save-rank-{}", settings.rank))
            .spawn(move || {
                let job = Job {
                    coordinator: coordinator.as_deref().or(settings.coordinator),
                    ..settings
                };
                let state = staged.state(&Location::from(thread_dir.as_path()))?;
                save(&state, &thread_dir, &job, &options)
            })
            .map_err(|e| Error::io(&location, e))?;
        self.running = Some(Running { dir, thread });
        Ok(SaveHandle { saver: self })
    }

    /// Waits for the last save, if one is running or finished unreported, and returns its
    /// result; `Ok` when there is none. Dropping the saver waits too, but drops the error.
    pub fn wait(&mut self) -> Result<(), Error> {
        let Some(Running { dir, thread }) = self.running.take() else {
            return Ok(());
        };
        thread.join().unwrap_or_else(|_| {
            Err(Error::io(
                &Location::from(dir.as_path()),
                std::io::Error::other("the background save panicked"),
            ))
        })
    }

    /// Whether the last save has finished (or none was made), so that
    /// [`wait`](Saver::wait) and the next [`save`](Saver::save) return without waiting.
    pub fn is_finished(&self) -> bool {
        self.running
            .as_ref()
            .is_none_or(|running| running.thread.is_finished())
    }

    /// The staging memory held, in bytes.
    pub fn staging_bytes(&self) -> usize {
        self.staging.capacity()
    }

    /// The staging memory, for tests of its reuse.
    #[cfg(test)]
    pub(super) fn staging(&self) -> &Staging {
        &self.staging
    }
}

impl Drop for Saver {
    /// Waits for the last save, so that it is committed (or has failed) before the staging
    /// memory goes; its error is dropped: call [`wait`](Saver::wait) to see it.
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

impl fmt::Debug for Saver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saver")
            .field("rank", &self.job.rank)
            .field("world_size", &self.job.world_size)
            .field("coordinator", &self.coordinator.is_some())
            .field("staging_bytes", &self.staging_bytes())
            .field("saving", &self.running.as_ref().map(|r| &r.dir))
            .finish()
    }
}

/// The save a [`Saver::save`] started, running in the background. Dropping it leaves the
/// save running: the saver reports its result then, at its next save or wait.
pub struct SaveHandle<'s> {
    saver: &'s mut Saver,
}

impl SaveHandle<'_> {
    /// Waits for the save to be committed on every rank, and returns its result.
    pub fn wait(self) -> Result<(), Error> {
        self.saver.wait()
    }

    /// Whether the save has finished (committed or failed).
    pub fn is_finished(&self) -> bool {
        self.saver.is_finished()
    }

    /// The directory being written.
    pub fn dir(&self) -> &Path {
        self.saver
            .running
            .as_ref()
            .map_or(Path::new(""), |running| running.dir.as_path())
    }
}

impl fmt::Debug for SaveHandle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaveHandle")
            .field("dir", &self.dir())
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{Chunk, Sharded};
    use crate::{DType, StateDictOptions, Tensor};

    #[test]
    fn a_second_save_of_the_same_model_reuses_the_staging_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let chunk = Chunk::whole(vec![3, 2]).unwrap();
        let values = |seed: f32| (0..6).map(|i| seed + i as f32).collect::<Vec<_>>();
        let part = Tensor::from_vec(values(0.0), &[3, 2]).unwrap();
        let mut w = Sharded::new(DType::F32, vec![3, 2], vec![(chunk, part)]).unwrap();
        let mut saver = Saver::new(Job::new(0, 1));
        let options = SaveOptions::new().fsync(false);
        for (step, seed) in [(1, 0.0), (2, 10.0)] {
            if let Some((_, part)) = w.parts_mut().next() {
                *part = Tensor::from_vec(values(seed), &[3, 2]).unwrap();
            }
            let mut state = TensorMap::new();
            state.insert_sharded_unique("w".to_owned(), &w);
            saver
                .save(&state, tmp.path().join(format!("step-{step}")), &options)
                .unwrap();
        }
        let address = saver.staging().address();
        saver.wait().unwrap();
        assert_eq!(saver.staging().allocations(), 1);
        assert_eq!(saver.staging_bytes(), 24);

        for (step, seed) in [(1, 0.0), (2, 10.0)] {
            let zeros = Tensor::zeros(DType::F32, &[3, 2]).unwrap();
            let mut model = std::collections::BTreeMap::from([("w".to_owned(), zeros)]);
            let dir = tmp.path().join(format!("step-{step}"));
            super::super::load(&mut model, &dir, &StateDictOptions::new()).unwrap();
            let saved = model["w"].view().to_f64_vec().unwrap();
            let expected: Vec<f64> = values(seed).into_iter().map(f64::from).collect();
            assert_eq!(saved, expected);
        }
        // A third save, after the others have finished, still writes into the same memory.
        let mut state = TensorMap::new();
        state.insert_sharded_unique("w".to_owned(), &w);
        let handle = saver
            .save(&state, tmp.path().join("step-3"), &options)
            .unwrap();
        handle.wait().unwrap();
        assert_eq!(saver.staging().address(), address);
        assert_eq!(saver.staging().allocations(), 1);
    }

    #[test]
    fn savers_and_their_saves_may_move_between_threads() {
        fn send<T: Send>() {}
        send::<Saver>();
        send::<SaveHandle<'_>>();
    }
}
