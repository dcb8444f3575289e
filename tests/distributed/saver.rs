//! Background saves through a `Saver`: ranks in threads, coordinating through the directory
//! or through a coordinator of the job's own; the values of the call, whatever the model does
//! after; failures reported by the next call; staging memory kept and bounded.

use std::path::Path;
use std::sync::{Arc, Barrier, RwLock};
use std::time::Duration;

use ckpt::distributed::{self, CoordinationError, Coordinator, Error, Job, Saver, Status};
use ckpt::shard::Chunk;
use ckpt::{DType, SaveOptions, StateDict, StateDictOptions, Tensor};

use super::coordinated::Threads;
use super::reshard::Net;
use super::{holds, parts, whole, zeros};

const SHAPE: [u64; 2] = [512, 96];

fn options() -> SaveOptions {
    SaveOptions::new().fsync(false)
}

fn net(seed: u64, chunk: Chunk) -> Net {
    Net {
        w: parts(seed, &SHAPE, vec![chunk]),
        b: whole(seed + 1, &[SHAPE[1]]),
    }
}

/// Overwrites the model's values in place with those of `seed`, as an optimizer step would.
fn step(net: &mut Net, seed: u64) {
    let chunks: Vec<Chunk> = net.w.parts().iter().map(|(c, _)| c.clone()).collect();
    let next = parts(seed, &SHAPE, chunks);
    for ((_, part), (_, new)) in net.w.parts_mut().zip(next.parts()) {
        part.copy_from(&new.view()).unwrap();
    }
    net.b
        .copy_from(&whole(seed + 1, &[SHAPE[1]]).view())
        .unwrap();
}

/// Loads `dir` into 3 ranks by rows and checks that each holds the values of `seed`.
fn check_three_ranks_load(dir: &Path, seed: u64) {
    for (rank, chunk) in Chunk::split(&SHAPE, 0, 3).unwrap().into_iter().enumerate() {
        let mut model = Net {
            w: zeros(&SHAPE, vec![chunk]),
            b: Tensor::zeros(DType::F32, &[SHAPE[1] as usize]).unwrap(),
        };
        distributed::load(&mut model, dir, &StateDictOptions::new()).unwrap();
        assert!(holds(&model.w, seed), "{}: rank {rank} of 3", dir.display());
        let b = whole(seed + 1, &[SHAPE[1]]);
        assert_eq!(model.b.to_le_bytes().unwrap(), b.to_le_bytes().unwrap());
    }
}

#[test]
fn four_ranks_save_twice_in_the_background_and_three_load_the_values_of_each_call() {
    let tmp = tempfile::tempdir().unwrap();
    let (step1, step2) = (tmp.path().join("step-1"), tmp.path().join("step-2"));
    let rows = Chunk::split(&SHAPE, 0, 4).unwrap();
    std::thread::scope(|s| {
        for (rank, chunk) in rows.into_iter().enumerate() {
            let (step1, step2) = (&step1, &step2);
            s.spawn(move || {
                let mut net = net(1, chunk);
                let job = Job::new(rank, 4).timeout(Duration::from_secs(60));
                let mut saver = Saver::new(job);
                saver.save(&net.state_dict(), step1, &options()).unwrap();
                // Training goes on at once: the checkpoint keeps the values of the call.
                step(&mut net, 2);
                // Waits for the first save, which may still be writing, then stages.
                saver.save(&net.state_dict(), step2, &options()).unwrap();
                step(&mut net, 3);
                saver.wait().unwrap();
            });
        }
    });
    for (dir, seed) in [(&step1, 1), (&step2, 2)] {
        assert_eq!(
            distributed::status(dir).unwrap(),
            Status::Complete { world_size: 4 }
        );
        check_three_ranks_load(dir, seed);
    }
}

/// The coordinator over threads of `coordinated.rs`, whose gathers wait while `gate` is
/// held for writing.
struct Gated {
    threads: Threads,
    gate: Arc<RwLock<()>>,
}

impl Coordinator for Gated {
    fn rank(&self) -> usize {
        self.threads.rank()
    }

    fn world_size(&self) -> usize {
        self.threads.world_size()
    }

    fn barrier(&self) -> Result<(), CoordinationError> {
        self.threads.barrier()
    }

    fn all_gather(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CoordinationError> {
        let _open = self
            .gate
            .read()
            .map_err(|_| CoordinationError::new("the gate is poisoned"))?;
        self.threads.all_gather(bytes)
    }
}

#[test]
fn a_save_through_a_shared_coordinator_returns_before_the_ranks_have_agreed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-1");
    let gate = Arc::new(RwLock::new(()));
    let closed = gate.write().unwrap();
    let staged = Barrier::new(5);
    std::thread::scope(|s| {
        let ranks: Vec<_> = Chunk::split(&SHAPE, 0, 4)
            .unwrap()
            .into_iter()
            .zip(Threads::job(4))
            .enumerate()
            .map(|(rank, (chunk, threads))| {
                let (gate, dir, staged) = (Arc::clone(&gate), &dir, &staged);
                s.spawn(move || {
                    let mut net = net(5, chunk);
                    let coordinator = Arc::new(Gated { threads, gate });
                    let mut saver = Saver::with_coordinator(coordinator);
                    let handle = saver.save(&net.state_dict(), dir, &options()).unwrap();
                    // The gather cannot have happened: the save runs on in the background.
                    let running = !handle.is_finished();
                    step(&mut net, 9);
                    staged.wait();
                    assert!(running, "rank {rank}");
                    assert_eq!(handle.dir(), dir.as_path());
                    handle.wait()
                })
            })
            .collect();
        staged.wait();
        let status = distributed::status(&dir);
        drop(closed);
        assert!(!matches!(status, Ok(Status::Complete { .. })), "{status:?}");
        for rank in ranks {
            rank.join().unwrap().unwrap();
        }
    });
    assert_eq!(
        distributed::status(&dir).unwrap(),
        Status::Complete { world_size: 4 }
    );
    check_three_ranks_load(&dir, 5);
}

#[test]
fn a_failed_background_save_is_reported_by_the_next_save_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    // A file where the checkpoint's directory should be: the background save fails.
    let blocked = tmp.path().join("step-1");
    std::fs::write(&blocked, b"not a directory").unwrap();
    let chunk = Chunk::whole(SHAPE.to_vec()).unwrap();
    let net = net(1, chunk);
    let mut saver = Saver::new(Job::new(0, 1));
    // The call itself writes nothing, so it cannot fail here.
    saver.save(&net.state_dict(), &blocked, &options()).unwrap();
    let err = saver
        .save(&net.state_dict(), tmp.path().join("step-2"), &options())
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&blocked.display().to_string()),
        "{err}"
    );
    // Reported once; the failed call started nothing, and the next one saves.
    assert!(saver.wait().is_ok());
    assert!(!tmp.path().join("step-2").exists());
    saver
        .save(&net.state_dict(), tmp.path().join("step-2"), &options())
        .unwrap();
    saver.wait().unwrap();
    check_three_ranks_load(&tmp.path().join("step-2"), 1);

    // A save into a complete checkpoint is refused, and the handle's wait says so.
    let handle = saver
        .save(&net.state_dict(), tmp.path().join("step-2"), &options())
        .unwrap();
    let err = handle.wait().unwrap_err();
    assert!(matches!(err, Error::Exists { .. }), "{err}");
    assert!(err.to_string().contains("step-2"), "{err}");
    assert!(saver.wait().is_ok(), "reported once");
}

#[test]
fn a_state_that_cannot_be_saved_is_refused_by_the_call() {
    let tmp = tempfile::tempdir().unwrap();
    let chunk = Chunk::split(&SHAPE, 0, 2).unwrap().remove(0);
    let mut net = net(1, chunk);
    if let Some((_, part)) = net.w.parts_mut().next() {
        *part = Tensor::zeros(DType::F32, &[3]).unwrap();
    }
    let mut saver = Saver::new(Job::new(0, 2));
    let err = saver
        .save(&net.state_dict(), tmp.path().join("step-1"), &options())
        .unwrap_err();
    assert!(err.to_string().contains("\"w\" cannot be saved"), "{err}");
    assert!(!tmp.path().join("step-1").exists());
    assert_eq!(saver.staging_bytes(), 0);

    let err = Saver::new(Job::new(2, 2))
        .save(&net.state_dict(), tmp.path().join("step-1"), &options())
        .unwrap_err();
    assert!(matches!(err, Error::Job { .. }), "{err}");
}

#[test]
fn staging_memory_is_this_ranks_bytes_kept_from_one_save_to_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = Chunk::split(&SHAPE, 0, 2).unwrap();
    // Rank 1 stages its rows only; rank 0 its rows and the whole bias, 64-byte aligned.
    let part = SHAPE[0] as usize / 2 * SHAPE[1] as usize * 4;
    let bias = SHAPE[1] as usize * 4;
    let expected = [bias.next_multiple_of(64) + part, part];
    std::thread::scope(|s| {
        for (rank, chunk) in rows.into_iter().enumerate() {
            let tmp = tmp.path();
            s.spawn(move || {
                let mut net = net(1, chunk);
                let mut saver = Saver::new(Job::new(rank, 2));
                for n in 0..3 {
                    let dir = tmp.join(format!("step-{n}"));
                    saver.save(&net.state_dict(), &dir, &options()).unwrap();
                    step(&mut net, n + 2);
                    assert_eq!(saver.staging_bytes(), expected[rank], "rank {rank}");
                }
                // Dropping the saver waits for its last save.
                drop(saver);
                if rank == 0 {
                    assert_eq!(
                        distributed::status(tmp.join("step-2")).unwrap(),
                        Status::Complete { world_size: 2 }
                    );
                }
            });
        }
    });
    for n in 0..3 {
        check_three_ranks_load(&tmp.path().join(format!("step-{n}")), n + 1);
    }
}
