//! A candle `VarMap` of f32 variables (64 tensors, 256 MiB by default) saved and loaded by
//! ckpt and by candle's own `VarMap::save` and `VarMap::load`, next to the plainest code that
//! moves the same bytes.
//!
//! `cargo bench --bench candle --features candle`; `CKPT_BENCH_MB` sets the size,
//! `CKPT_BENCH_REPEAT` the repetitions (median reported), `CKPT_BENCH_DIR` the directory for the
//! files. Each figure is one line `bench NAME SECONDS GIB_PER_S`. Peak memory above the map is
//! measured in a separate process per case. Saves do not fsync (candle's does not); loads read
//! files from the page cache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ckpt::candle_core::{Device, Tensor};
use ckpt::candle_nn::VarMap;
use ckpt::{LoadFrom, SaveOptions, StateDict};

const TENSORS: usize = 64;

/// A map of `TENSORS` variables of `[rows, 1024]` f32 filling about `mb` MiB.
fn varmap(mb: usize) -> VarMap {
    let rows = (mb << 20) / TENSORS / 4 / 1024;
    let map = VarMap::new();
    {
        let mut data = map.data().lock().unwrap();
        for i in 0..TENSORS {
            // Non-zero, distinct values, so no layer of the system can shortcut zero pages.
            let t = Tensor::arange(0f32, (rows * 1024) as f32, &Device::Cpu)
                .and_then(|t| t.affine(1e-6, i as f64))
                .and_then(|t| t.reshape((rows, 1024)))
                .unwrap();
            data.insert(
                format!("layers.{i}.weight"),
                ckpt::candle_core::Var::from_tensor(&t).unwrap(),
            );
        }
    }
    map
}

fn bytes_of(map: &VarMap) -> usize {
    map.all_vars().iter().map(|v| v.elem_count() * 4).sum()
}

/// The map's bytes, written with plain `write` calls: what any save has to do at least.
fn raw_write(chunks: &[Vec<u8>], path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    for chunk in chunks {
        file.write_all(chunk).unwrap();
    }
}

/// Flushes dirty pages and pauses, so that no run pays for another's write-back.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_millis(500));
}

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

/// In a child process: build the map, run `case` once, print the map's bytes, the peak before
/// and the peak after.
fn child(case: &str, dir: &Path, mb: usize) {
    let mut map = varmap(mb);
    let before = peak_rss();
    match case {
        "candle_save" => map.save(dir.join("child.safetensors")).unwrap(),
        "ckpt_save" => ckpt::save_with(
            map.state_dict(),
            dir.join("child.safetensors"),
            &SaveOptions::new().fsync(false),
        )
        .unwrap(),
        "candle_load" => map.load(dir.join("m.safetensors")).unwrap(),
        "ckpt_load" => {
            let _ = map.load_from(dir.join("m.safetensors")).unwrap();
        }
        other => panic!("unknown case {other}"),
    }
    println!("{} {before} {}", bytes_of(&map), peak_rss());
}

fn peak_above(case: &str, dir: &Path) -> Option<f64> {
    let output = Command::new(std::env::current_exe().ok()?)
        .env("CKPT_BENCH_CHILD", case)
        .env("CKPT_BENCH_CHILD_DIR", dir)
        .output()
        .ok()?;
    let numbers: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [_, before, peak] = numbers[..] else {
        eprintln!(
            "child {case} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    };
    Some((peak - before) / f64::from(1u32 << 20))
}

/// Runs each case `repeat` times, taking turns, and prints each median.
fn run(repeat: usize, bytes: usize, cases: &mut [(&str, &mut dyn FnMut())]) -> Vec<f64> {
    let mut times = vec![Vec::new(); cases.len()];
    for _ in 0..repeat {
        for (case, (_, f)) in cases.iter_mut().enumerate() {
            settle();
            let start = Instant::now();
            f();
            times[case].push(start.elapsed().as_secs_f64());
        }
    }
    let gib = bytes as f64 / f64::from(1u32 << 30);
    let mut medians = Vec::new();
    for ((name, _), mut times) in cases.iter().zip(times) {
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!("bench {name} {median:.6} {:.3}", gib / median);
        println!(
            "  spread {name}: min {:.6} max {:.6}",
            times[0],
            times[times.len() - 1]
        );
        medians.push(median);
    }
    medians
}

fn main() {
    let mb: usize = std::env::var("CKPT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    if let Ok(case) = std::env::var("CKPT_BENCH_CHILD") {
        let dir = PathBuf::from(std::env::var_os("CKPT_BENCH_CHILD_DIR").unwrap());
        child(&case, &dir, mb);
        return;
    }
    let repeat = std::env::var("CKPT_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = match std::env::var_os("CKPT_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let map = varmap(mb);
    let bytes = bytes_of(&map);
    println!(
        "candle VarMap: {TENSORS} f32 variables, {bytes} bytes ({:.3} GiB); median of {repeat}",
        bytes as f64 / f64::from(1u32 << 30)
    );
    let chunks: Vec<Vec<u8>> = map
        .state_dict()
        .iter()
        .map(|(_, v)| v.to_le_bytes().unwrap().into_owned())
        .collect();
    let raw = dir.path().join("raw.bin");
    let st = dir.path().join("m.safetensors");
    let ours = dir.path().join("ckpt.safetensors");
    let ck = dir.path().join("m.ckpt");
    let no_sync = SaveOptions::new().fsync(false);
    run(
        repeat,
        bytes,
        &mut [
            ("raw_write", &mut || raw_write(&chunks, &raw)),
            ("candle_save (VarMap::save, safetensors)", &mut || {
                map.save(&st).unwrap();
            }),
            ("ckpt_save_safetensors", &mut || {
                ckpt::save_with(map.state_dict(), &ours, &no_sync).unwrap();
            }),
            ("ckpt_save_ckpt", &mut || {
                ckpt::save_with(map.state_dict(), &ck, &no_sync).unwrap();
            }),
        ],
    );
    drop(chunks);
    std::fs::remove_file(&raw).unwrap();

    // Warm the page cache before timing loads.
    let _ = std::fs::read(&st).unwrap().len() + std::fs::read(&ck).unwrap().len();
    let target = varmap(mb);
    // Clones share the variables: each case loads into the same memory.
    let (mut by_candle, mut by_ckpt, mut by_ckpt_native) =
        (target.clone(), target.clone(), target.clone());
    let source: Vec<Tensor> = map
        .all_vars()
        .iter()
        .map(|v| v.as_tensor().copy().unwrap())
        .collect();
    let vars = target.all_vars();
    run(
        repeat,
        bytes,
        &mut [
            ("var_set (Var::set from tensors in memory)", &mut || {
                for (var, src) in vars.iter().zip(&source) {
                    var.set(src).unwrap();
                }
            }),
            ("candle_load (VarMap::load, safetensors)", &mut || {
                by_candle.load(&st).unwrap();
            }),
            ("ckpt_load_safetensors (load_from)", &mut || {
                let _ = by_ckpt.load_from(&st).unwrap();
            }),
            (
                "ckpt_load_ckpt (load_from, checksums verified)",
                &mut || {
                    let _ = by_ckpt_native.load_from(&ck).unwrap();
                },
            ),
        ],
    );
    assert_eq!(
        target.state_dict()["layers.7.weight"]
            .to_le_bytes()
            .unwrap(),
        map.state_dict()["layers.7.weight"].to_le_bytes().unwrap()
    );
    drop(source);
    drop(target);

    println!(
        "peak memory above the map ({:.0} MiB):",
        bytes as f64 / f64::from(1u32 << 20)
    );
    for case in ["candle_save", "ckpt_save", "candle_load", "ckpt_load"] {
        match peak_above(case, dir.path()) {
            Some(mib) => println!("peak {case} {mib:.1} MiB"),
            None => println!("peak {case} unavailable"),
        }
    }
}
