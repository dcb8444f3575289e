//! Saves whose ranks agree through a [`Coordinator`] the job provides, here one over threads
//! of one process: the votes are gathered, not read back from the directory.

use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use ckpt::distributed::{self, CoordinationError, Coordinator, Job, Status};
use ckpt::shard::Chunk;
use ckpt::{DType, SaveOptions, StateDict, StateDictOptions, Tensor};

use super::reshard::{Net, save_job};
use super::{holds, parts, whole, zeros};

/// The collectives over threads: a barrier, and an all-gather through shared slots.
pub(crate) struct Threads {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<u8>>>,
}

impl Threads {
    /// One coordinator per rank of a job of `world_size`.
    pub(crate) fn job(world_size: usize) -> Vec<Threads> {
        let shared = Arc::new(Shared {
            barrier: Barrier::new(world_size),
            slots: Mutex::new(vec![Vec::new(); world_size]),
        });
        (0..world_size)
            .map(|rank| Threads {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }
}

impl Coordinator for Threads {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.slots.lock().unwrap().len()
    }

    fn barrier(&self) -> Result<(), CoordinationError> {
        self.shared.barrier.wait();
        Ok(())
    }

    fn all_gather(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CoordinationError> {
        self.shared.slots.lock().unwrap()[self.rank] = bytes.to_vec();
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().unwrap().clone();
        // No rank gives its next buffer before every rank has taken this one.
        self.shared.barrier.wait();
        Ok(all)
    }
}

const SHAPE: [u64; 2] = [40, 6];

fn states(seed: u64, ranks: u64) -> Vec<Net> {
    Chunk::split(&SHAPE, 0, ranks)
        .unwrap()
        .into_iter()
        .map(|c| Net {
            w: parts(seed, &SHAPE, vec![c]),
            b: whole(seed + 1, &[6]),
        })
        .collect()
}

fn save_coordinated(dir: &Path, states: &[Net]) {
    let coordinators = Threads::job(states.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = states
            .iter()
            .zip(&coordinators)
            .map(|(net, coordinator)| {
                s.spawn(move || {
                    let job = Job::with_coordinator(coordinator);
                    distributed::save(&net.state_dict(), dir, &job, &SaveOptions::new())
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
}

#[test]
fn ranks_with_a_coordinator_commit_over_a_killed_saves_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-3");
    // A save through storage, killed before its commit, left every rank's files.
    save_job(&dir, &states(1, 3))
        .into_iter()
        .for_each(|r| r.unwrap());
    std::fs::remove_file(dir.join("checkpoint.json")).unwrap();

    save_coordinated(&dir, &states(2, 3));
    assert_eq!(
        distributed::status(&dir).unwrap(),
        Status::Complete { world_size: 3 }
    );
    // Loaded by a job of two, each rank its rows.
    for (rank, chunk) in Chunk::split(&SHAPE, 0, 2).unwrap().into_iter().enumerate() {
        let mut net = Net {
            w: zeros(&SHAPE, vec![chunk]),
            b: Tensor::zeros(DType::F32, &[6]).unwrap(),
        };
        distributed::load(&mut net, &dir, &StateDictOptions::new()).unwrap();
        assert!(holds(&net.w, 2), "rank {rank} of 2");
        assert_eq!(net.b, whole(3, &[6]));
    }
}

#[test]
fn a_coordinated_save_into_a_committed_directory_is_refused_on_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-1");
    save_coordinated(&dir, &states(1, 2));
    let coordinators = Threads::job(2);
    let states = states(2, 2);
    let dir = &dir;
    let errors: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = states
            .iter()
            .zip(&coordinators)
            .map(|(net, c)| {
                s.spawn(move || {
                    let job = Job::with_coordinator(c).timeout(Duration::from_secs(5));
                    distributed::save(&net.state_dict(), dir, &job, &SaveOptions::new())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for err in errors {
        let err = err.unwrap_err();
        assert!(
            err.to_string()
                .contains("already holds a complete sharded checkpoint"),
            "{err}"
        );
    }
}

#[test]
fn ranks_naming_different_directories_all_fail_and_nothing_is_saved() {
    let tmp = tempfile::tempdir().unwrap();
    // Rank 1 is a save behind: it saves step-1 while rank 0 saves step-2.
    let dirs = [tmp.path().join("step-2"), tmp.path().join("step-1")];
    let coordinators = Threads::job(2);
    let states = states(1, 2);
    let errors: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = states
            .iter()
            .zip(&coordinators)
            .zip(&dirs)
            .map(|((net, c), dir)| {
                s.spawn(move || {
                    let job = Job::with_coordinator(c).timeout(Duration::from_secs(5));
                    distributed::save(&net.state_dict(), dir, &job, &SaveOptions::new())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expected = format!(
        "rank(s) [0] name {}, rank(s) [1] name {}",
        dirs[0].display(),
        dirs[1].display()
    );
    for (rank, err) in errors.into_iter().enumerate() {
        let err = err.unwrap_err();
        assert!(
            matches!(&err, distributed::Error::DirectoriesDiffer { dirs } if dirs.len() == 2),
            "rank {rank}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&expected), "rank {rank}: {message}");
        assert!(message.contains("different directories"), "{message}");
    }
    // Neither directory holds anything a save writes, let alone a commit.
    for dir in &dirs {
        assert_eq!(
            distributed::files(dir).unwrap(),
            Vec::<String>::new(),
            "{}",
            dir.display()
        );
    }
}
