//! A directory a killed save left behind, saved into again without `clean`: the manifests
//! and data of the killed save are never taken for votes of the new one, whichever rank
//! starts first.

use std::path::Path;
use std::time::Duration;

use ckpt::distributed::{self, Error, Job, Status};
use ckpt::shard::Chunk;
use ckpt::{DType, SaveOptions, StateDict, StateDictOptions, Tensor};

use super::reshard::{Net, save_job};
use super::{holds, parts, whole, zeros};

const SHAPE: [u64; 2] = [48, 8];
const RANKS: usize = 4;

fn states(seed: u64) -> Vec<Net> {
    Chunk::split(&SHAPE, 0, RANKS as u64)
        .unwrap()
        .into_iter()
        .map(|c| Net {
            w: parts(seed, &SHAPE, vec![c]),
            b: whole(seed + 1, &[8]),
        })
        .collect()
}

/// A save of every rank of values `seed` that was killed just before its commit: every
/// rank's data and manifest are there, the marker is not.
fn killed_save(dir: &Path, seed: u64) {
    save_job(dir, &states(seed))
        .into_iter()
        .for_each(|r| r.unwrap());
    std::fs::remove_file(dir.join("checkpoint.json")).unwrap();
}

/// Saves values `seed` with rank 0 starting `rank0_delay` after the others, or the others
/// `others_delay` after rank 0.
fn save_staggered(dir: &Path, seed: u64, rank0_delay: Duration, others_delay: Duration) {
    let states = states(seed);
    std::thread::scope(|s| {
        let handles: Vec<_> = states
            .iter()
            .enumerate()
            .map(|(rank, net)| {
                s.spawn(move || {
                    std::thread::sleep(if rank == 0 { rank0_delay } else { others_delay });
                    let job = Job::new(rank, RANKS).timeout(Duration::from_secs(60));
                    distributed::save(&net.state_dict(), dir, &job, &SaveOptions::new())
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
}

fn load_whole(dir: &Path) -> Net {
    let mut net = Net {
        w: zeros(&SHAPE, vec![Chunk::whole(SHAPE.to_vec()).unwrap()]),
        b: Tensor::zeros(DType::F32, &[8]).unwrap(),
    };
    distributed::load(&mut net, dir, &StateDictOptions::new()).unwrap();
    net
}

#[test]
fn a_save_into_a_killed_saves_directory_counts_only_its_own_manifests() {
    let slow = Duration::from_millis(400);
    for (rank0_delay, others_delay) in [(Duration::ZERO, slow), (slow, Duration::ZERO)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("step-2");
        killed_save(&dir, 10);
        save_staggered(&dir, 20, rank0_delay, others_delay);

        assert_eq!(
            distributed::status(&dir).unwrap(),
            Status::Complete { world_size: RANKS }
        );
        let net = load_whole(&dir);
        assert!(
            holds(&net.w, 20),
            "rank 0 delayed {rank0_delay:?}: the values of the new save, not the killed one's"
        );
        assert_eq!(net.b, whole(21, &[8]));
    }
}

#[test]
fn a_coordinator_alone_with_a_killed_saves_manifests_names_them_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-2");
    killed_save(&dir, 10);

    // Rank 0 of the new save, and no other rank: the killed save's manifests are no votes.
    let net = &states(20)[0];
    let job = Job::new(0, RANKS).timeout(Duration::from_millis(300));
    let err = distributed::save(&net.state_dict(), &dir, &job, &SaveOptions::new()).unwrap_err();
    assert!(
        matches!(&err, Error::MissingRanks { missing, stale, .. }
            if *missing == [1, 2, 3] && *stale == [1, 2, 3]),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("the manifests of rank(s) [1, 2, 3] there are of another save"),
        "{err}"
    );
    assert_eq!(
        distributed::status(&dir).unwrap(),
        Status::Incomplete {
            present: vec![0],
            world_size: Some(RANKS),
            missing: vec![1, 2, 3],
        }
    );
    let removed = distributed::clean(&dir).unwrap();
    assert!(removed.contains(&"save.json".to_owned()), "{removed:?}");
    assert!(distributed::files(&dir).unwrap().is_empty());
}

#[test]
fn a_rank_without_its_coordinator_says_the_save_never_began() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-1");
    let net = &states(20)[2];
    let job = Job::new(2, RANKS).timeout(Duration::from_millis(200));
    let err = distributed::save(&net.state_dict(), &dir, &job, &SaveOptions::new()).unwrap_err();
    assert!(matches!(err, Error::NotStarted { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the coordinator (rank 0) did not begin this save"),
        "{err}"
    );
}

#[test]
fn a_rank_whose_directory_another_save_commits_is_told_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-1");
    std::fs::create_dir_all(&dir).unwrap();
    // Rank 0 of this job has begun save 0123456789abcdef, and no more (it was killed).
    let attempt = |save: &str| {
        format!(
            r#"{{"format": "ckpt-sharded-save", "version": 2, "world_size": {RANKS}, "save": "{save}"}}"#
        )
    };
    std::fs::write(dir.join("save.json"), attempt("0123456789abcdef")).unwrap();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let net = &states(20)[1];
            let job = Job::new(1, RANKS).timeout(Duration::from_secs(30));
            distributed::save(&net.state_dict(), &dir, &job, &SaveOptions::new())
        });
        // Once rank 1 has voted, another job's save commits the directory.
        while !dir.join("rank-1.manifest.json").exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let marker = format!(
            r#"{{"format": "ckpt-sharded", "version": 2, "world_size": {RANKS}, "save": "fedcba9876543210", "manifests": [1, 2, 3, 4]}}"#
        );
        std::fs::write(dir.join("checkpoint.json"), marker).unwrap();
        let err = waiting.join().unwrap().unwrap_err();
        assert!(
            err.to_string().contains(
                "commits save fedcba9876543210, not this rank's (0123456789abcdef): another job saved into the directory"
            ),
            "{err}"
        );
    });
}

#[test]
fn a_rank_of_a_killed_run_never_votes_in_the_next_runs_save() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-2");
    let job = |rank: usize, run: &str, seconds: u64| {
        Job::new(rank, RANKS)
            .run_id(run)
            .timeout(Duration::from_secs(seconds))
    };
    let (old, new) = (states(10), states(20));
    let (dir, job, old, new) = (&dir, &job, &old, &new);
    std::thread::scope(|s| {
        // Run 1 was killed but for its rank 1, which voted and waits for a commit.
        let zombie = s.spawn(move || {
            distributed::save(
                &old[1].state_dict(),
                dir,
                &job(1, "run-1", 30),
                &SaveOptions::new(),
            )
        });
        while !dir.join("rank-1.manifest.json").exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Run 2 saves into the same directory: its rank 0's name for the save is no name
        // the old rank 1 answers to, so only run 2's votes are counted.
        let ranks: Vec<_> = new
            .iter()
            .enumerate()
            .map(|(rank, net)| {
                s.spawn(move || {
                    distributed::save(
                        &net.state_dict(),
                        dir,
                        &job(rank, "run-2", 30),
                        &SaveOptions::new(),
                    )
                })
            })
            .collect();
        for rank in ranks {
            rank.join().unwrap().unwrap();
        }
        let err = zombie.join().unwrap().unwrap_err();
        assert!(
            err.to_string()
                .contains("another job saved into the directory"),
            "{err}"
        );
    });
    let net = load_whole(dir);
    assert!(holds(&net.w, 20), "run 2's values");
    assert_eq!(net.b, whole(21, &[8]));
}
