//! A rank process of the bench: it holds its parts of workload W (read from W saved whole,
//! so that it holds nothing else), then runs the commands the
//! bench sends on stdin, all ranks at once, and answers each with one line:
//! `SECONDS PEAK BYTES_READ BYTES_NEEDED` (the process's peak resident memory during the
//! command, everything it holds included; for `async`, the seconds the call blocked).

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use indexmap::IndexMap;
use xxhash_rust::xxh3::Xxh3;

use ckpt::distributed::{self, Job, Saver};
use ckpt::shard::{Chunk, Sharded};
use ckpt::tensor::TensorView;
use ckpt::{DType, SaveOptions, StateDict, StateDictOptions};

/// A rank's state: every tensor of W split by rows over the job, this rank's rows.
pub(crate) type Parts = IndexMap<String, Sharded>;

/// How a job splits every tensor of W.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// By its first dimension.
    Rows,
    /// By its last (a vector by its only one).
    Columns,
}

/// Rank `rank` of `world`'s part of every tensor of `state` (W's, in order), split by
/// `split`: `values` its data, else zeros.
pub(crate) fn parts<'a>(
    state: impl IntoIterator<Item = (String, TensorView<'a>)>,
    rank: u64,
    world: u64,
    values: bool,
    split: Split,
) -> Parts {
    state
        .into_iter()
        .map(|(key, view)| {
            let global: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
            let dim = match split {
                Split::Rows => 0,
                Split::Columns => global.len().saturating_sub(1),
            };
            let chunk = Chunk::split(&global, dim, world)
                .unwrap()
                .remove(rank as usize);
            let sharded = if values {
                Sharded::from_whole(&view, vec![chunk]).unwrap()
            } else {
                Sharded::zeros(DType::F32, global, vec![chunk]).unwrap()
            };
            (key, sharded)
        })
        .collect()
}

/// The part of W a rank holds, from W saved whole at `source` (read in place, so that the
/// process holds nothing else of W): for a save its values, for a load zeros.
pub(crate) fn from_file(source: &Path, rank: u64, world: u64, values: bool, split: Split) -> Parts {
    let whole = ckpt::load(source).unwrap();
    parts(whole.tensors(), rank, world, values, split)
}

/// A hash of every part's bytes, to check a load against without keeping a second copy.
pub(crate) fn digest(parts: &Parts) -> u64 {
    let mut hasher = Xxh3::new();
    for sharded in parts.values() {
        for (_, tensor) in sharded.parts() {
            hasher.update(&tensor.view().to_le_bytes().unwrap());
        }
    }
    hasher.digest()
}

/// This process's resident memory at its peak (`VmHWM`), or now (`VmRSS`), in bytes.
fn rss(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Resets the peak (`VmHWM`) to the present (Linux's `clear_refs` 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs rank `rank` of `world`: `save` ranks hold W's rows, `load` ranks zeros for rows,
/// `load_columns` ranks zeros for columns.
pub(crate) fn run(mode: &str, rank: u64, world: u64, source: &Path) {
    let split = if mode == "load_columns" {
        Split::Columns
    } else {
        Split::Rows
    };
    let mut held = from_file(source, rank, world, mode == "save", split);
    let job = Job::new(rank as usize, world as usize);
    let mut saver = Saver::new(job);
    let mut stdout = std::io::stdout().lock();
    let bytes: u64 = held.values().map(Sharded::local_nbytes).sum();
    writeln!(stdout, "ready {bytes}").unwrap();
    stdout.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let (command, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        reset_peak();
        let start = Instant::now();
        let (read, needed) = match command {
            "memcpy" => {
                let copies: Vec<Vec<u8>> = held
                    .values()
                    .flat_map(|s| {
                        s.parts()
                            .iter()
                            .map(|(_, t)| t.view().to_le_bytes().unwrap().into_owned())
                    })
                    .collect();
                std::hint::black_box(&copies);
                (0, 0)
            }
            "save" | "save_nofsync" => {
                let options = SaveOptions::new().fsync(command == "save");
                distributed::save(&held.state_dict(), Path::new(arg), &job, &options).unwrap();
                (0, 0)
            }
            "async" => {
                // Answers the time blocked; the whole save ends before the answer.
                let options = SaveOptions::new().fsync(false);
                saver
                    .save(&held.state_dict(), Path::new(arg), &options)
                    .unwrap();
                let blocked = start.elapsed().as_secs_f64();
                saver.wait().unwrap();
                let peak = rss("VmHWM:");
                writeln!(stdout, "{blocked:.6} {peak} 0 0").unwrap();
                stdout.flush().unwrap();
                continue;
            }
            "load" => {
                let loaded =
                    distributed::load(&mut held, Path::new(arg), &StateDictOptions::new()).unwrap();
                (loaded.bytes_read, loaded.bytes_needed)
            }
            "check" => {
                assert_eq!(
                    digest(&held).to_string(),
                    arg,
                    "rank {rank}: the values saved"
                );
                (0, 0)
            }
            other => panic!("unknown command {other}"),
        };
        let seconds = start.elapsed().as_secs_f64();
        let peak = rss("VmHWM:");
        writeln!(stdout, "{seconds:.6} {peak} {read} {needed}").unwrap();
        stdout.flush().unwrap();
    }
}
