//! Workload W: a GPT-2-medium-shaped f32 state dict (292 tensors, 1.32 GiB), saved and loaded
//! by ckpt, by the safetensors crate, and by the plainest code that moves the same bytes.
//!
//! `cargo bench --bench save_load [-- --threads N]`; `CKPT_BENCH_MB=256` scales the model
//! down (fewer blocks, a smaller vocabulary), `CKPT_BENCH_REPEAT` sets the repetitions (median
//! reported), `CKPT_BENCH_DIR` the directory for the files, `CKPT_BENCH_WARM_MB` the free
//! memory touched before each run (see `warm_free_memory`; default twice W, 0 for none).
//! `--threads N` (or `CKPT_THREADS`) sets the threads of ckpt's loads and of the parallel
//! anchors (default: every core); a table of 1, 2 and all threads follows.
//! `CKPT_BENCH_ONLY=save` runs the saves alone. Each figure is one line
//! `bench NAME SECONDS GIB_PER_S`; then every target with its ratio and whether it is met, and
//! the byte traffic each path must move with its limit on this machine. Peak memory is
//! measured in a separate process per loader. Files are read from the page cache (each is
//! read once before timing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ckpt::{LoadFrom, LoadOptions, SaveOptions, StateDict, StateDictOptions};

#[path = "workload/mod.rs"]
mod workload;

#[path = "save_load/anchors.rs"]
mod anchors;
#[path = "save_load/report.rs"]
mod report;

use report::Results;
use workload::Gpt2;

/// A case: its name, and what to time. It returns the seconds to count when only part of it
/// is timed (the blocked part of a background save), `None` for all of it.
type Case<'a> = (String, Box<dyn FnMut() -> Option<f64> + 'a>);

/// A case that writes `path` anew: the previous run's file is removed first, untimed, so that
/// freeing its blocks (which `File::create`'s truncation would do inside the timed part) is
/// not counted. ckpt's saves replace their file without that cost too: they rename the new file
/// over it and close the old one on a background thread.
fn fresh<'a>(name: &str, path: &'a Path, mut f: impl FnMut() + 'a) -> Case<'a> {
    (
        name.to_owned(),
        Box::new(move || {
            let _ = std::fs::remove_file(path);
            let start = Instant::now();
            f();
            Some(start.elapsed().as_secs_f64())
        }),
    )
}

fn case<'a>(name: impl Into<String>, mut f: impl FnMut() + 'a) -> Case<'a> {
    (
        name.into(),
        Box::new(move || {
            f();
            None
        }),
    )
}

/// Runs each of `cases` `repeat` times, taking turns so that drift in the machine affects them
/// alike, and records and prints each median. Between runs, untimed, everything written is
/// flushed to disk, so that no run pays for the write-back of another's dirty pages.
fn run(results: &mut Results, repeat: usize, cases: &mut [Case<'_>]) {
    let mut times = vec![Vec::new(); cases.len()];
    for _ in 0..repeat {
        for (case, (_, f)) in cases.iter_mut().enumerate() {
            settle();
            let start = Instant::now();
            let part = f();
            times[case].push(part.unwrap_or_else(|| start.elapsed().as_secs_f64()));
        }
    }
    settle();
    for ((name, _), mut times) in cases.iter().zip(times) {
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!("bench {name} {median:.6} {:.3}", results.gib() / median);
        // The spread shows how much the machine (disk write-back above all) moved the runs.
        println!(
            "  spread {name}: min {:.6} max {:.6}",
            times[0],
            times[times.len() - 1]
        );
        results.insert(name, median);
    }
}

/// Flushes all dirty pages to disk (`sync`), warms the machine's free memory, and pauses, so
/// the next timed run starts from a clean slate: no write-back of another run's pages, no file
/// of an earlier run still being freed in the background (ckpt and the safetensors crate both
/// close replaced files late), and free memory that costs what free memory costs on a machine
/// of its own. `CKPT_BENCH_SETTLE_MS` sets the pause (default 700 ms; files in memory need
/// less).
fn settle() {
    let _ = Command::new("sync").status();
    warm_free_memory();
    let ms = std::env::var("CKPT_BENCH_SETTLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(700);
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// Bytes of free memory [`warm_free_memory`] touches: twice W (a new file and a snapshot),
/// set once W is built; `CKPT_BENCH_WARM_MB` overrides it, 0 turns warming off.
static WARM_BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Touches, then frees, [`WARM_BYTES`] of memory. A virtual machine that reports free memory
/// to its host (Firecracker, as the development VM: "Free page reporting enabled" in its boot
/// log) gets each reported page back from the host by a fault on its next use, at a quarter
/// of a GB/s there; which pages a run gets then depends on how long ago they were freed, and
/// the same save took 0.5 s or 6 s by that alone. Pages touched just before a run are not yet
/// reported (the kernel waits 2 s), so every run, anchors and ckpt alike, starts as on a
/// machine without reporting.
fn warm_free_memory() {
    let bytes = *WARM_BYTES.get().unwrap_or(&0);
    if bytes == 0 {
        return;
    }
    let mut warm = vec![0u8; bytes];
    for page in warm.chunks_mut(4096) {
        page[0] = 1;
    }
    drop(std::hint::black_box(warm));
}

/// Peak resident memory of this process, from /proc (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// In a child process: build the model, load `path` into it with `how`, print peak memory.
fn child(how: &str, path: &Path, mb: Option<f64>) {
    let mut model = Gpt2::new(mb);
    let before = peak_rss().unwrap_or(0);
    match how {
        "ckpt" | "pytorch" => {
            let _ = model.load_from(path).unwrap();
        }
        "ckpt_trusted" => {
            let trusted = LoadOptions::new().verify_checksums(false);
            let _ = model
                .load_from_with(path, &trusted, &StateDictOptions::new())
                .unwrap();
        }
        "safetensors" => anchors::safetensors_load_into(&mut model, path),
        other => panic!("unknown loader {other}"),
    }
    println!(
        "{} {} {}",
        model.state_dict().nbytes(),
        before,
        peak_rss().unwrap_or(0)
    );
}

fn measure_peak(how: &str, path: &Path, threads: usize) -> Option<(f64, f64)> {
    let output = Command::new(std::env::current_exe().ok()?)
        .env("CKPT_BENCH_CHILD", how)
        .env("CKPT_BENCH_CHILD_PATH", path)
        .env("CKPT_THREADS", threads.to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [model, _before, peak] = numbers[..] else {
        eprintln!(
            "peak-memory child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    };
    Some((model, peak))
}

/// `--threads N`, else `CKPT_THREADS`, else every core.
fn threads_asked() -> usize {
    let mut args = std::env::args().skip_while(|a| a != "--threads").skip(1);
    args.next()
        .or_else(|| std::env::var("CKPT_THREADS").ok())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

fn main() {
    let mb: Option<f64> = std::env::var("CKPT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Ok(how) = std::env::var("CKPT_BENCH_CHILD") {
        let path = PathBuf::from(std::env::var_os("CKPT_BENCH_CHILD_PATH").unwrap());
        child(&how, &path, mb);
        return;
    }
    let repeat = std::env::var("CKPT_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let threads = threads_asked();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = match std::env::var_os("CKPT_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let model = Gpt2::new(mb);
    let bytes = model.state_dict().nbytes();
    let warm_mb = std::env::var("CKPT_BENCH_WARM_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let _ = WARM_BYTES.set(warm_mb.map_or(2 * bytes, |mb| mb << 20));
    let tensors = model.state_dict().len();
    let largest = model
        .arrays()
        .iter()
        .map(|a| a.len() * 4)
        .max()
        .unwrap_or(0);
    println!(
        "workload W: GPT-2-medium-shaped f32 state dict, {tensors} tensors, {bytes} bytes ({:.3} GiB), {} blocks, largest tensor {largest} bytes; median of {repeat}; {threads} threads of {cores} cores",
        bytes as f64 / (1u64 << 30) as f64,
        model.h.len()
    );
    let mut results = Results::new(bytes, largest, threads);
    let raw = dir.path().join("raw.bin");
    let ck = dir.path().join("w.ckpt");
    let st = dir.path().join("w.safetensors");
    let ck_st = dir.path().join("ckpt.safetensors");
    let pt = dir.path().join("w.pt");

    run(
        &mut results,
        repeat,
        &mut [
            fresh("raw_write", &raw, || anchors::raw_write(&model, &raw, true)),
            case("ckpt_save", || ckpt::save(model.state_dict(), &ck).unwrap()),
        ],
    );
    let no_sync = SaveOptions::new().fsync(false);
    run(
        &mut results,
        repeat,
        &mut [
            fresh("raw_write_nofsync", &raw, || {
                anchors::raw_write(&model, &raw, false);
            }),
            case("ckpt_save_nofsync", || {
                ckpt::save_with(model.state_dict(), &ck, &no_sync).unwrap();
            }),
            fresh("safetensors_save", &st, || {
                anchors::safetensors_save(&model, &st);
            }),
            case("ckpt_safetensors_save_nofsync", || {
                ckpt::save_with(model.state_dict(), &ck_st, &no_sync).unwrap();
            }),
            case("pytorch_save_nofsync", || {
                ckpt::save_with(model.state_dict(), &pt, &no_sync).unwrap();
            }),
        ],
    );
    std::fs::remove_file(&raw).unwrap();
    let async_path = dir.path().join("async.ckpt");
    run(
        &mut results,
        repeat,
        &mut [
            (
                "memcpy_fresh".to_owned(),
                Box::new(|| {
                    // Timed without the freeing, which the snapshot does in the background.
                    let start = Instant::now();
                    let copies = anchors::memcpy_fresh(&model);
                    let copied = start.elapsed().as_secs_f64();
                    assert_eq!(copies.iter().map(Vec::len).sum::<usize>() * 4, bytes);
                    Some(copied)
                }),
            ),
            (
                "save_async_blocked".to_owned(),
                Box::new(|| {
                    let start = Instant::now();
                    let handle = ckpt::save_async_with(model.state_dict(), &async_path, &no_sync);
                    let blocked = start.elapsed().as_secs_f64();
                    handle.wait().unwrap();
                    Some(blocked)
                }),
            ),
        ],
    );
    std::fs::remove_file(&async_path).unwrap();
    if std::env::var("CKPT_BENCH_ONLY").is_ok_and(|only| only == "save") {
        println!("targets (this run: ratio, target, met):");
        results.print_save_targets();
        return;
    }

    // Warm the page cache for every file before timing loads.
    for path in [&ck, &st, &ck_st, &pt] {
        let _ = std::fs::read(path).unwrap().len();
    }
    let target = std::cell::RefCell::new(Gpt2::new(mb));
    let pools: Vec<(usize, rayon::ThreadPool)> = [1, 2, threads]
        .into_iter()
        .filter(|&t| t <= threads.max(2))
        .fold(Vec::new(), |mut v, t| {
            if !v.iter().any(|(n, _)| *n == t) {
                v.push((t, anchors::pool(t)));
            }
            v
        });
    let pool = |t: usize| &pools.iter().find(|(n, _)| *n == t).unwrap().1;
    let with_threads = |t: usize| LoadOptions::new().threads(t);
    let default = with_threads(threads);
    let trusted = with_threads(threads).verify_checksums(false);
    let state = StateDictOptions::new();
    run(
        &mut results,
        repeat,
        &mut [
            case("memcpy", || {
                anchors::memcpy(&mut target.borrow_mut(), &model);
            }),
            case("memcpy_parallel", || {
                anchors::memcpy_parallel(&mut target.borrow_mut(), &model, pool(threads));
            }),
            case("raw_read", || {
                anchors::raw_read(&ck, pool(1), false);
            }),
            case("raw_read_parallel", || {
                anchors::raw_read(&ck, pool(threads), false);
            }),
            case("xxh3_pread_parallel", || {
                anchors::raw_read(&ck, pool(threads), true);
            }),
            case("xxh3_mapped_parallel", || {
                anchors::hash_mapped(&ck, pool(threads), false);
            }),
            case("crc32_mapped_parallel", || {
                anchors::hash_mapped(&pt, pool(threads), true);
            }),
            case("safetensors_load_into", || {
                anchors::safetensors_load_into(&mut target.borrow_mut(), &st);
            }),
            case("ckpt_load_into", || {
                let _ = target
                    .borrow_mut()
                    .load_from_with(&ck, &default, &state)
                    .unwrap();
            }),
            case("ckpt_load_into_trusted", || {
                let _ = target
                    .borrow_mut()
                    .load_from_with(&ck, &trusted, &state)
                    .unwrap();
            }),
            case("pytorch_load_into", || {
                let _ = target
                    .borrow_mut()
                    .load_from_with(&pt, &default, &state)
                    .unwrap();
            }),
            case("ckpt_safetensors_load_into", || {
                let _ = target
                    .borrow_mut()
                    .load_from_with(&ck_st, &default, &state)
                    .unwrap();
            }),
            case("ckpt_load", || {
                let checkpoint = ckpt::load_with(&ck, &default).unwrap();
                assert_eq!(checkpoint.tensors().len(), tensors);
            }),
        ],
    );

    // The same paths on 1, 2 and all threads.
    let counts: Vec<usize> = pools.iter().map(|(n, _)| *n).collect();
    let mut table: Vec<Case<'_>> = Vec::new();
    for &t in &counts {
        let (verified, unverified) = (with_threads(t), with_threads(t).verify_checksums(false));
        let (target, state, ck, pt, model) = (&target, &state, &ck, &pt, &model);
        table.push(case(format!("memcpy_parallel@{t}"), move || {
            anchors::memcpy_parallel(&mut target.borrow_mut(), model, pool(t));
        }));
        table.push(case(format!("xxh3_mapped_parallel@{t}"), move || {
            anchors::hash_mapped(ck, pool(t), false);
        }));
        let v = verified.clone();
        table.push(case(format!("ckpt_load_into@{t}"), move || {
            let _ = target.borrow_mut().load_from_with(ck, &v, state).unwrap();
        }));
        table.push(case(format!("ckpt_load_into_trusted@{t}"), move || {
            let _ = target
                .borrow_mut()
                .load_from_with(ck, &unverified, state)
                .unwrap();
        }));
        table.push(case(format!("pytorch_load_into@{t}"), move || {
            let _ = target
                .borrow_mut()
                .load_from_with(pt, &verified, state)
                .unwrap();
        }));
    }
    run(&mut results, repeat, &mut table);
    drop(table);

    let target = target.into_inner();
    let start = Instant::now();
    let opens = 100;
    for _ in 0..opens {
        assert_eq!(ckpt::inspect(&ck).unwrap().tensors.len(), tensors);
    }
    let lazy = start.elapsed().as_secs_f64() / opens as f64;
    println!("bench ckpt_lazy_open {lazy:.6} -");
    assert!(
        target.state_dict() == model.state_dict(),
        "the loaded model equals the saved one"
    );

    let mut peaks = Vec::new();
    for (how, path) in [
        ("ckpt", &ck),
        ("ckpt_trusted", &ck),
        ("pytorch", &pt),
        ("safetensors", &st),
    ] {
        if let Some((model_bytes, peak)) = measure_peak(how, path, threads) {
            let mib = |b: f64| b / (1u64 << 20) as f64;
            println!(
                "mem peak_rss_load_into_{how} {:.1} MiB; model {:.1} MiB; overhead {:.1} MiB",
                mib(peak),
                mib(model_bytes),
                mib(peak - model_bytes)
            );
            peaks.push((how, mib(peak - model_bytes)));
        }
    }
    results.print_table(&counts);
    results.print_targets(lazy, &peaks);
    results.print_traffic(&counts);
}
