//! Workload W (benches/workload: GPT-2-medium-shaped, 1.32 GiB of f32) as a sharded
//! checkpoint: every tensor split by rows over 4 ranks, each rank a process of its own. The
//! 4 ranks save it together; 3 ranks then load it, each its rows of the 3-way split, so each
//! reads parts of two ranks' files (a resharding load). Beside them, in the same run: the
//! same bytes written and read by plain code (4 files, 4 threads), and each rank copying its
//! bytes into new memory, all at once, and the same ranks saving through a `Saver` (the
//! background save: the time each call blocks, beside that copy).
//!
//! `cargo bench --bench distributed`; `CKPT_BENCH_MB=256` scales W down, `CKPT_BENCH_REPEAT`
//! (default 3) sets the repetitions (median reported), `CKPT_BENCH_DIR` the directory. Each
//! figure is one line `bench NAME SECONDS GIB_PER_S` (the whole job, W's bytes); then every
//! rank's bytes read beside bytes needed and its peak resident memory above the bytes of the
//! parts it holds (everything else the process holds counts, retained heap included), and the
//! ratios. Files are in the page cache for the loads. The ranks share this machine's cores:
//! on 2 cores, 4 ranks get half a core each, as the anchors' 4 threads do.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use ckpt::{SaveOptions, StateDict};
use rank::Split;

#[path = "workload/mod.rs"]
mod workload;

#[path = "distributed/rank.rs"]
mod rank;

const SAVERS: u64 = 4;
const LOADERS: u64 = 3;

/// What a rank answers a command with.
#[derive(Clone, Copy, Debug)]
struct Answer {
    seconds: f64,
    /// The process's peak resident memory.
    peak: u64,
    read: u64,
    needed: u64,
}

/// A job of rank processes: this bench binary, run again once per rank.
struct Job {
    children: Vec<(Child, ChildStdin, BufReader<ChildStdout>)>,
    /// The bytes of each rank's parts.
    held: Vec<u64>,
}

impl Job {
    fn start(mode: &str, world: u64, source: &Path) -> Job {
        let children = (0..world)
            .map(|rank| {
                let mut child = Command::new(std::env::current_exe().unwrap())
                    .env("CKPT_BENCH_RANK_MODE", mode)
                    .env("CKPT_BENCH_RANK", rank.to_string())
                    .env("CKPT_BENCH_WORLD", world.to_string())
                    .env("CKPT_BENCH_SOURCE", source)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let stdin = child.stdin.take().unwrap();
                let stdout = BufReader::new(child.stdout.take().unwrap());
                (child, stdin, stdout)
            })
            .collect::<Vec<_>>();
        let mut job = Job {
            children,
            held: Vec::new(),
        };
        job.held = job
            .answers()
            .iter()
            .map(|line| line.strip_prefix("ready ").unwrap().parse().unwrap())
            .collect();
        job
    }

    fn answers(&mut self) -> Vec<String> {
        self.children
            .iter_mut()
            .map(|(_, _, out)| {
                let mut line = String::new();
                out.read_line(&mut line).unwrap();
                assert!(!line.is_empty(), "a rank process died");
                line.trim().to_owned()
            })
            .collect()
    }

    /// Sends `command` to every rank at once; the time until the last answered, and each
    /// rank's answer.
    fn round(&mut self, command: &str) -> (f64, Vec<Answer>) {
        let start = Instant::now();
        for (_, stdin, _) in &mut self.children {
            writeln!(stdin, "{command}").unwrap();
            stdin.flush().unwrap();
        }
        let answers = self.answers();
        let wall = start.elapsed().as_secs_f64();
        let answers = answers
            .iter()
            .map(|line| {
                let n: Vec<f64> = line
                    .split_whitespace()
                    .map(|w| w.parse().unwrap())
                    .collect();
                Answer {
                    seconds: n[0],
                    peak: n[1] as u64,
                    read: n[2] as u64,
                    needed: n[3] as u64,
                }
            })
            .collect();
        (wall, answers)
    }

    /// Has each rank check that its rows hash to `digests[rank]`, the values saved.
    fn check(&mut self, digests: &[u64]) {
        for ((_, stdin, _), digest) in self.children.iter_mut().zip(digests) {
            writeln!(stdin, "check {digest}").unwrap();
            stdin.flush().unwrap();
        }
        self.answers();
    }

    fn stop(self) {
        for (mut child, stdin, _) in self.children {
            drop(stdin);
            assert!(child.wait().unwrap().success(), "a rank process failed");
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn sync() {
    let _ = Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_millis(200));
}

/// Plain writes of W's bytes: `files` files of `each` bytes, one thread each, all at once.
fn raw_write(dir: &Path, files: u64, each: usize, fsync: bool) {
    let block = vec![0x5au8; 8 << 20];
    std::thread::scope(|s| {
        for f in 0..files {
            let block = &block;
            s.spawn(move || {
                let path = dir.join(format!("raw-{f}.bin"));
                let _ = std::fs::remove_file(&path);
                let mut file = std::fs::File::create(&path).unwrap();
                let mut left = each;
                while left > 0 {
                    let n = left.min(block.len());
                    file.write_all(&block[..n]).unwrap();
                    left -= n;
                }
                if fsync {
                    file.sync_all().unwrap();
                }
            });
        }
    });
}

/// Plain reads of `files`, one thread each, all at once, through one 8 MiB buffer each.
fn raw_read(files: &[PathBuf]) -> u64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|path| {
                s.spawn(move || {
                    let file = std::fs::File::open(path).unwrap();
                    let mut buffer = vec![0u8; 8 << 20];
                    let (mut at, mut sum) = (0u64, 0u64);
                    loop {
                        let n = file.read_at(&mut buffer, at).unwrap();
                        if n == 0 {
                            break;
                        }
                        sum = sum.wrapping_add(buffer[n - 1] as u64);
                        at += n as u64;
                    }
                    std::hint::black_box(sum);
                    at
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

fn main() {
    let mb: Option<f64> = std::env::var("CKPT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Ok(mode) = std::env::var("CKPT_BENCH_RANK_MODE") {
        let var = |name: &str| std::env::var(name).unwrap().parse::<u64>().unwrap();
        let source = PathBuf::from(std::env::var_os("CKPT_BENCH_SOURCE").unwrap());
        rank::run(
            &mode,
            var("CKPT_BENCH_RANK"),
            var("CKPT_BENCH_WORLD"),
            &source,
        );
        return;
    }
    let repeat: usize = std::env::var("CKPT_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let tmp = match std::env::var_os("CKPT_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let dir = tmp.path();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // W saved whole, untimed, which every rank reads its rows from; and the digest of each
    // loading rank's rows.
    let source = dir.join("w.ckpt");
    let (digests, column_digests): (Vec<u64>, Vec<u64>) = {
        let model = workload::Gpt2::new(mb);
        ckpt::save_with(
            model.state_dict(),
            &source,
            &SaveOptions::new().fsync(false),
        )
        .unwrap();
        let state = model.state_dict();
        let views = || state.iter().map(|(k, v)| (k.to_owned(), v.view()));
        let digests = |split| {
            (0..LOADERS)
                .map(|r| rank::digest(&rank::parts(views(), r, LOADERS, true, split)))
                .collect()
        };
        (digests(Split::Rows), digests(Split::Columns))
    };
    let mut savers = Job::start("save", SAVERS, &source);
    let bytes: u64 = savers.held.iter().sum();
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!(
        "workload W: {bytes} bytes ({gib:.3} GiB) split by rows over {SAVERS} rank processes, loaded by {LOADERS}; median of {repeat}; {cores} cores"
    );
    let each = (bytes / SAVERS) as usize;
    let report = |name: &str, times: Vec<f64>| {
        let m = median(times);
        println!("bench {name} {m:.6} {:.3}", gib / m);
        m
    };

    // Saves, each into a new directory, beside plain writes of the same bytes.
    let mut per_rank_peak = vec![0u64; SAVERS as usize];
    let mut times: [Vec<f64>; 5] = Default::default();
    let (mut blocked, mut async_total) = (Vec::new(), Vec::new());
    let mut async_peak = vec![0u64; SAVERS as usize];
    let mut step = 0;
    let mut last = PathBuf::new();
    // Plain saves and writes, taking turns. Each kind of save runs in processes of its own,
    // so that no rank's peak counts memory another kind of command left in its heap.
    for _ in 0..repeat {
        for (i, fsync) in [(0, false), (2, true)] {
            sync();
            let start = Instant::now();
            raw_write(dir, SAVERS, each, fsync);
            times[i].push(start.elapsed().as_secs_f64());
            sync();
            step += 1;
            let _ = std::fs::remove_dir_all(&last);
            last = dir.join(format!("step-{step}"));
            let command = if fsync { "save" } else { "save_nofsync" };
            let (wall, answers) = savers.round(&format!("{command} {}", last.display()));
            times[i + 1].push(wall);
            for ((peak, a), held) in per_rank_peak.iter_mut().zip(&answers).zip(&savers.held) {
                *peak = (*peak).max(a.peak.saturating_sub(*held));
            }
        }
    }
    let savers_held = savers.held.clone();
    savers.stop();
    // Background saves through a `Saver` each rank keeps: the longest any rank was blocked.
    let mut background = Job::start("save", SAVERS, &source);
    for run in 0..repeat {
        sync();
        let step = dir.join(format!("background-{run}"));
        let (wall, answers) = background.round(&format!("async {}", step.display()));
        blocked.push(answers.iter().map(|a| a.seconds).fold(0.0, f64::max));
        async_total.push(wall);
        for ((peak, a), held) in async_peak.iter_mut().zip(&answers).zip(&background.held) {
            *peak = (*peak).max(a.peak.saturating_sub(*held));
        }
        let _ = std::fs::remove_dir_all(&step);
    }
    background.stop();
    // Each rank copying its bytes into new memory, all at once: what a snapshot must do.
    let mut copiers = Job::start("save", SAVERS, &source);
    for _ in 0..repeat {
        let (wall, _) = copiers.round("memcpy");
        times[4].push(wall);
    }
    copiers.stop();
    let [raw_nofsync, save_nofsync, raw_fsync, save_fsync, memcpy] = times;
    let raw_nofsync = report("raw_write_4_nofsync", raw_nofsync);
    let save_nofsync = report("sharded_save_4_nofsync", save_nofsync);
    let raw_fsync = report("raw_write_4", raw_fsync);
    let save_fsync = report("sharded_save_4", save_fsync);
    let memcpy = report("memcpy_4_ranks", memcpy);
    let blocked = report("saver_blocked_4_ranks", blocked);
    report("saver_save_4_nofsync", async_total);
    for r in 0..SAVERS {
        let _ = std::fs::remove_file(dir.join(format!("raw-{r}.bin")));
    }

    // Loads of the last checkpoint, resharded into 3 ranks, beside plain reads of its files.
    let files: Vec<PathBuf> = (0..SAVERS)
        .map(|r| last.join(format!("rank-{r}.ckpt")))
        .collect();
    raw_read(&files);
    let mut loaders = Job::start("load", LOADERS, &source);
    let (mut raw, mut load) = (Vec::new(), Vec::new());
    let mut answers = Vec::new();
    let mut load_peak = vec![0u64; LOADERS as usize];
    for _ in 0..repeat {
        let start = Instant::now();
        raw_read(&files);
        raw.push(start.elapsed().as_secs_f64());
        let (wall, a) = loaders.round(&format!("load {}", last.display()));
        load.push(wall);
        for ((peak, a), held) in load_peak.iter_mut().zip(&a).zip(&loaders.held) {
            *peak = (*peak).max(a.peak.saturating_sub(*held));
        }
        answers = a;
    }
    loaders.check(&digests);
    loaders.stop();
    let raw = report("raw_read_4_files", raw);
    let load = report("sharded_load_3_of_4", load);

    // The same checkpoint loaded by 3 ranks holding columns: each needs a third of every
    // row of every rank's file.
    let mut columns = Job::start("load_columns", LOADERS, &source);
    let mut column_load = Vec::new();
    let mut column_answers = Vec::new();
    let mut column_peak = vec![0u64; LOADERS as usize];
    for _ in 0..repeat {
        let (wall, a) = columns.round(&format!("load {}", last.display()));
        column_load.push(wall);
        for ((peak, a), held) in column_peak.iter_mut().zip(&a).zip(&columns.held) {
            *peak = (*peak).max(a.peak.saturating_sub(*held));
        }
        column_answers = a;
    }
    columns.check(&column_digests);
    columns.stop();
    let column_load = report("sharded_load_3_of_4_by_columns", column_load);

    println!("per rank:");
    for (r, peak) in per_rank_peak.iter().enumerate() {
        println!(
            "  save rank {r}/{SAVERS}: holds {:.1} MiB, peak {:.1} MiB above it",
            mib(savers_held[r]),
            mib(*peak)
        );
    }
    for (r, peak) in async_peak.iter().enumerate() {
        println!(
            "  background save rank {r}/{SAVERS}: peak {:.1} MiB above what it holds (its staging included)",
            mib(*peak)
        );
    }
    for (r, a) in answers.iter().enumerate() {
        println!(
            "  load rank {r}/{LOADERS}: read {:.1} MiB for {:.1} MiB needed ({:.3} x), peak {:.1} MiB above what it holds, {:.3} s",
            mib(a.read),
            mib(a.needed),
            a.read as f64 / a.needed as f64,
            mib(load_peak[r]),
            a.seconds
        );
    }
    for (r, a) in column_answers.iter().enumerate() {
        println!(
            "  load rank {r}/{LOADERS} by columns: read {:.1} MiB for {:.1} MiB needed ({:.3} x), peak {:.1} MiB above what it holds, {:.3} s",
            mib(a.read),
            mib(a.needed),
            a.read as f64 / a.needed as f64,
            mib(column_peak[r]),
            a.seconds
        );
    }
    println!("ratios (this run):");
    println!(
        "  sharded_save_4_nofsync / raw_write_4_nofsync {:.2} x",
        save_nofsync / raw_nofsync
    );
    println!(
        "  sharded_save_4 / raw_write_4 {:.2} x",
        save_fsync / raw_fsync
    );
    println!(
        "  saver_blocked_4_ranks / memcpy_4_ranks {:.2} x (target <= 1.2)",
        blocked / memcpy
    );
    println!(
        "  sharded_load_3_of_4 / raw_read_4_files {:.2} x",
        load / raw
    );
    println!(
        "  sharded_load_3_of_4 / memcpy_4_ranks {:.2} x",
        load / memcpy
    );
    println!(
        "  sharded_load_3_of_4_by_columns / memcpy_4_ranks {:.2} x",
        column_load / memcpy
    );
    let worst_read = |answers: &[Answer]| {
        answers
            .iter()
            .map(|a| a.read as f64 / a.needed as f64)
            .fold(0.0, f64::max)
    };
    println!(
        "  bytes read / needed, worst rank, by rows {:.3} x, by columns {:.3} x (target <= 1.1)",
        worst_read(&answers),
        worst_read(&column_answers)
    );
    let worst_peak = per_rank_peak
        .iter()
        .chain(&load_peak)
        .chain(&column_peak)
        .copied()
        .max()
        .unwrap_or(0);
    println!(
        "  peak above a rank's parts, saves and loads, worst rank {:.1} MiB (target <= 64 MiB)",
        mib(worst_peak)
    );
    let worst_staging = async_peak
        .iter()
        .zip(&savers_held)
        .map(|(peak, held)| peak.saturating_sub(*held))
        .max()
        .unwrap_or(0);
    println!(
        "  background saves: peak above a rank's parts beyond its bytes, worst rank {:.1} MiB (target <= 64 MiB: staging <= rank bytes + 64 MiB)",
        mib(worst_staging)
    );
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}
