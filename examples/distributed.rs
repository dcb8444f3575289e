//! A sharded checkpoint of a multi-rank job, with real processes: this program runs itself
//! once per rank. Four ranks each hold a quarter of the rows of a layer's weight (and all of
//! its bias); they save one checkpoint together, coordinating through its directory, each in
//! the background as a training loop would (a `Saver`). A job of
//! three ranks, sharded by columns, loads it, and one process loads it whole; each checks
//! that it holds exactly the values saved.
//!
//! `cargo run --example distributed`

use std::process::Command;
use std::time::Duration;

use ckpt::distributed::{self, Job, Saver};
use ckpt::shard::{Chunk, Sharded};
use ckpt::{DType, SaveOptions, StateDict, StateDictOptions, Tensor};

const SHAPE: [u64; 2] = [512, 256];

#[derive(StateDict)]
struct Layer {
    weight: Sharded,
    bias: Tensor,
}

/// The weight the job trained: every rank can compute any element of it.
fn weight() -> Tensor {
    let values = (0..SHAPE[0] * SHAPE[1]).map(|i| (i % 977) as f32 * 0.25 - 100.0);
    Tensor::from_vec(values.collect(), &[SHAPE[0] as usize, SHAPE[1] as usize]).unwrap()
}

fn bias() -> Tensor {
    Tensor::from_vec(
        (0..SHAPE[1]).map(|i| i as f32).collect(),
        &[SHAPE[1] as usize],
    )
    .unwrap()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(role) = std::env::var("DISTRIBUTED_EXAMPLE_ROLE") {
        let rank: usize = std::env::var("DISTRIBUTED_EXAMPLE_RANK")?.parse()?;
        let world: usize = std::env::var("DISTRIBUTED_EXAMPLE_WORLD")?.parse()?;
        let dir = std::env::var("DISTRIBUTED_EXAMPLE_DIR")?;
        return match role.as_str() {
            "save" => save(rank, world, &dir),
            _ => load(rank, world, &dir),
        };
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("step-1000");
    spawn("save", 4, &dir)?;
    println!("{:?}", distributed::status(&dir)?);
    spawn("load", 3, &dir)?;

    // One process, the whole weight: a plain Tensor field loads all of it.
    #[derive(StateDict)]
    struct Whole {
        weight: Tensor,
        bias: Tensor,
    }
    let mut whole = Whole {
        weight: Tensor::zeros(DType::F32, &[512, 256])?,
        bias: Tensor::zeros(DType::F32, &[256])?,
    };
    distributed::load(&mut whole, &dir, &StateDictOptions::new())?;
    assert_eq!(whole.weight, weight());
    println!("one process loaded the whole weight: identical");
    Ok(())
}

/// Rank `rank` of `world` saves its rows in the background, and waits for the commit before
/// it exits.
fn save(rank: usize, world: usize, dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let rows = Chunk::split(&SHAPE, 0, world as u64)?.remove(rank);
    let mut layer = Layer {
        weight: Sharded::from_whole(&weight().view(), vec![rows])?,
        bias: bias(),
    };
    // Kept by the training loop: its staging memory serves every save.
    let mut saver = Saver::new(Job::new(rank, world).timeout(Duration::from_secs(60)));
    // Returns once this rank's tensors are copied; `distributed::save` would wait for the commit.
    saver.save(&layer.state_dict(), dir, &SaveOptions::new())?;
    // Training goes on meanwhile; the checkpoint holds the values of the call.
    layer.bias.array_mut::<f32>()?.fill(0.0);
    saver.wait()?;
    Ok(())
}

/// Rank `rank` of `world` loads its columns.
fn load(rank: usize, world: usize, dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let cols = Chunk::split(&SHAPE, 1, world as u64)?.remove(rank);
    let mut layer = Layer {
        weight: Sharded::zeros(DType::F32, SHAPE.to_vec(), vec![cols.clone()])?,
        bias: Tensor::zeros(DType::F32, &[SHAPE[1] as usize])?,
    };
    let loaded = distributed::load(&mut layer, dir, &StateDictOptions::new())?;
    let expected = Sharded::from_whole(&weight().view(), vec![cols])?;
    assert_eq!(layer.weight, expected, "rank {rank}: other values");
    assert_eq!(layer.bias, bias());
    println!(
        "rank {rank} of {world} loaded {:?}: read {} bytes for {} needed",
        loaded.report.loaded_keys, loaded.bytes_read, loaded.bytes_needed
    );
    Ok(())
}

/// Runs this program as `world` rank processes and waits for all of them.
fn spawn(
    role: &str,
    world: usize,
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let children = (0..world)
        .map(|rank| {
            Command::new(std::env::current_exe()?)
                .env("DISTRIBUTED_EXAMPLE_ROLE", role)
                .env("DISTRIBUTED_EXAMPLE_RANK", rank.to_string())
                .env("DISTRIBUTED_EXAMPLE_WORLD", world.to_string())
                .env("DISTRIBUTED_EXAMPLE_DIR", dir)
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (rank, mut child) in children.into_iter().enumerate() {
        if !child.wait()?.success() {
            return Err(format!("{role}: rank {rank} of {world} failed").into());
        }
    }
    Ok(())
}
