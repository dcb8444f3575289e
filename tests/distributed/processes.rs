//! Real OS processes against one directory: this test binary run again once per rank, the
//! rank and the job in the environment. A 4-rank job is killed mid-save; the previous
//! checkpoint still loads, the partial one is recognised, cleaned and saved again, and a
//! 3-rank job loads it with identical values. A 4-rank job saving twice in the background
//! (`Saver`) leaves two checkpoints a 3-rank job loads.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ckpt::distributed::{self, Error, Job, Saver, Status};
use ckpt::shard::Chunk;
use ckpt::{SaveOptions, StateDict, StateDictOptions};

use super::reshard::Net;
use super::{holds, parts, whole, zeros};

const SHAPE: [u64; 2] = [96, 40];

/// What a rank process does: `save`, `async-save` or `load`, of which seed, in which directory.
const MODE: &str = "CKPT_TEST_RANK_MODE";
const RANK: &str = "CKPT_TEST_RANK";
const WORLD: &str = "CKPT_TEST_WORLD";
const DIR: &str = "CKPT_TEST_DIR";
const SEED: &str = "CKPT_TEST_SEED";
/// The rank that sleeps before saving, so that the job can be killed while the others wait.
const STALL: &str = "CKPT_TEST_STALL";

fn var(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// The body of a rank process; in a plain test run, nothing.
#[test]
fn rank_process() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let (rank, world, seed) = (var(RANK) as usize, var(WORLD), var(SEED));
    let dir = std::env::var(DIR).unwrap();
    let mine = Chunk::split(&SHAPE, 0, world).unwrap().remove(rank);
    match mode.as_str() {
        "save" => {
            if std::env::var(STALL).is_ok_and(|r| r == rank.to_string()) {
                std::thread::sleep(Duration::from_secs(120));
            }
            let net = Net {
                w: parts(seed, &SHAPE, vec![mine]),
                b: whole(seed + 1, &[SHAPE[1]]),
            };
            let job = Job::new(rank, world as usize).timeout(Duration::from_secs(120));
            distributed::save(&net.state_dict(), &dir, &job, &SaveOptions::new()).unwrap();
        }
        // Two background saves, into `dir` and `{dir}-next`, the model changing meanwhile.
        "async-save" => {
            let mut net = Net {
                w: parts(seed, &SHAPE, vec![mine.clone()]),
                b: whole(seed + 1, &[SHAPE[1]]),
            };
            let job = Job::new(rank, world as usize).timeout(Duration::from_secs(120));
            let mut saver = Saver::new(job);
            saver
                .save(&net.state_dict(), &dir, &SaveOptions::new())
                .unwrap();
            net.w = parts(seed + 10, &SHAPE, vec![mine]);
            net.b = whole(seed + 11, &[SHAPE[1]]);
            let next = format!("{dir}-next");
            saver
                .save(&net.state_dict(), &next, &SaveOptions::new())
                .unwrap();
            saver.wait().unwrap();
        }
        "load" => {
            let mut net = Net {
                w: zeros(&SHAPE, vec![mine]),
                b: ckpt::Tensor::zeros(ckpt::DType::F32, &[SHAPE[1] as usize]).unwrap(),
            };
            distributed::load(&mut net, &dir, &StateDictOptions::new()).unwrap();
            assert!(holds(&net.w, seed), "rank {rank}: other values");
            assert_eq!(net.b, whole(seed + 1, &[SHAPE[1]]));
        }
        other => panic!("unknown mode {other}"),
    }
}

fn spawn(
    mode: &str,
    rank: usize,
    world: usize,
    dir: &Path,
    seed: u64,
    stall: Option<usize>,
) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "processes::rank_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(RANK, rank.to_string())
        .env(WORLD, world.to_string())
        .env(DIR, dir)
        .env(SEED, seed.to_string());
    if let Some(stall) = stall {
        command.env(STALL, stall.to_string());
    }
    command.spawn().unwrap()
}

/// Runs a job of `world` rank processes to the end; whether every rank succeeded.
fn run(mode: &str, world: usize, dir: &Path, seed: u64) -> bool {
    let children: Vec<Child> = (0..world)
        .map(|rank| spawn(mode, rank, world, dir, seed, None))
        .collect();
    children
        .into_iter()
        .all(|mut c| c.wait().unwrap().success())
}

#[test]
fn a_job_killed_mid_save_leaves_the_previous_checkpoint_and_a_recognisable_partial_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (step1, step2) = (tmp.path().join("step-1"), tmp.path().join("step-2"));
    assert!(run("save", 4, &step1, 1), "the first save");

    // Rank 3 stalls; the job is killed (SIGKILL) once the others have voted.
    let mut children: Vec<Child> = (0..4)
        .map(|rank| spawn("save", rank, 4, &step2, 2, Some(3)))
        .collect();
    let start = Instant::now();
    let voted = |dir: &Path| matches!(distributed::status(dir), Ok(Status::Incomplete { present, .. }) if present == [0, 1, 2]);
    while !voted(&step2) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "ranks 0..3 never voted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for child in &mut children {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    assert_eq!(
        distributed::status(&step2).unwrap(),
        Status::Incomplete {
            present: vec![0, 1, 2],
            world_size: Some(4),
            missing: vec![3],
        }
    );
    let mut net = Net {
        w: zeros(&SHAPE, vec![Chunk::split(&SHAPE, 0, 3).unwrap().remove(0)]),
        b: ckpt::Tensor::zeros(ckpt::DType::F32, &[40]).unwrap(),
    };
    let err = distributed::load(&mut net, &step2, &StateDictOptions::new()).unwrap_err();
    assert!(matches!(err, Error::Incomplete { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("of a job of 4, rank(s) [3] are missing"),
        "{err}"
    );
    // The previous checkpoint is whole: a 3-rank job loads it.
    assert!(run("load", 3, &step1, 1), "the previous checkpoint");

    // Cleaned, saved again by 4 ranks, loaded by 3 with the same values.
    let removed = distributed::clean(&step2).unwrap();
    assert!(
        removed.contains(&"rank-0.manifest.json".to_owned()),
        "{removed:?}"
    );
    assert!(run("save", 4, &step2, 2), "the second save");
    assert_eq!(
        distributed::status(&step2).unwrap(),
        Status::Complete { world_size: 4 }
    );
    assert!(run("load", 3, &step2, 2), "the 3-rank load");
}

#[test]
fn four_processes_save_twice_in_the_background_and_three_load_each_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let step = tmp.path().join("step");
    assert!(run("async-save", 4, &step, 4), "the background saves");
    assert!(run("load", 3, &step, 4), "the first checkpoint");
    assert!(
        run("load", 3, &tmp.path().join("step-next"), 14),
        "the second"
    );
}
