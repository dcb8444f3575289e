//! Workload W: a GPT-2-medium-shaped f32 state dict (292 tensors, 1.32 GiB), saved and loaded
//! by ckpt, by the safetensors crate, and by the plainest code that moves the same bytes.
//!
//! `cargo bench --bench save_load`; `CKPT_BENCH_MB=256` scales the model down (fewer blocks, a
//! smaller vocabulary), `CKPT_BENCH_REPEAT` sets the repetitions (median reported),
//! `CKPT_BENCH_DIR` the directory for the files. Each figure is one line
//! `bench NAME SECONDS GIB_PER_S`; peak memory is measured in a separate process per loader.
//! Files are read from the page cache (each is read once before timing).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ckpt::state::{KeyPath, Leaf, Role};
use ckpt::{LoadFrom, StateDictOptions};
use ckpt::{LoadOptions, StateDict};

#[path = "workload/mod.rs"]
mod workload;

use workload::Gpt2;

fn bytes_of(model: &Gpt2) -> usize {
    model.state_dict().nbytes()
}

/// Copies `source` into `target`, tensor by tensor: the memcpy every loader is held against.
fn copy_into(target: &mut Gpt2, source: &HashMap<String, &[u8]>) {
    target.visit_mut(
        &mut KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, leaf: &mut dyn Leaf, _| {
            let to = leaf.contiguous_bytes_mut().expect("f32 arrays in C order");
            to.copy_from_slice(source[key]);
        },
    );
}

struct St<'a> {
    shape: Vec<usize>,
    data: &'a [u8],
}

impl safetensors::View for St<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn safetensors_save(model: &Gpt2, path: &Path) {
    let state = model.state_dict();
    let views: Vec<(String, St<'_>)> = state
        .iter()
        .map(|(k, v)| {
            let data = match v.to_le_bytes() {
                Ok(Cow::Borrowed(b)) => b,
                _ => unreachable!("contiguous host arrays lend their bytes"),
            };
            (
                k.to_owned(),
                St {
                    shape: v.shape().to_vec(),
                    data,
                },
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn safetensors_load_into(model: &mut Gpt2, path: &Path) {
    let file = File::open(path).unwrap();
    // SAFETY: the benchmark's own file, not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&map).unwrap();
    model.visit_mut(
        &mut KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, leaf: &mut dyn Leaf, _| {
            let data = tensors.tensor(key).unwrap().data();
            leaf.contiguous_bytes_mut().unwrap().copy_from_slice(data);
        },
    );
}

fn raw_write(model: &Gpt2, path: &Path, fsync: bool) {
    let mut file = File::create(path).unwrap();
    for (_, tensor) in model.state_dict().iter() {
        file.write_all(&tensor.to_le_bytes().unwrap()).unwrap();
    }
    if fsync {
        file.sync_all().unwrap();
    }
}

struct Bench {
    repeat: usize,
    bytes: usize,
    results: Vec<(String, f64)>,
}

impl Bench {
    /// Runs each of `cases` `repeat` times, taking turns so that drift in the machine affects
    /// them alike, and prints each median. Between runs, untimed, everything written is flushed
    /// to disk, so that no run pays for the write-back of another's dirty pages.
    fn run(&mut self, cases: &mut [(&str, &mut dyn FnMut())]) {
        let mut times = vec![Vec::new(); cases.len()];
        for _ in 0..self.repeat {
            for (case, (_, f)) in cases.iter_mut().enumerate() {
                settle();
                let start = Instant::now();
                f();
                times[case].push(start.elapsed().as_secs_f64());
            }
        }
        settle();
        let gib = self.bytes as f64 / (1u64 << 30) as f64;
        for ((name, _), mut times) in cases.iter().zip(times) {
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!("bench {name} {median:.6} {:.3}", gib / median);
            // The spread shows how much the machine (disk write-back above all) moved the runs.
            println!(
                "  spread {name}: min {:.6} max {:.6}",
                times[0],
                times[times.len() - 1]
            );
            self.results.push(((*name).to_owned(), median));
        }
    }

    fn get(&self, name: &str) -> f64 {
        self.results
            .iter()
            .find(|(n, _)| n == name)
            .map(|r| r.1)
            .unwrap()
    }
}

/// Flushes all dirty pages to disk (`sync`) and pauses, so the next timed run starts from a
/// clean slate: no write-back of another run's pages, and no file of an earlier run still being
/// freed in the background (ckpt and the safetensors crate both close replaced files late).
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_millis(700));
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
        "ckpt" => {
            let _ = model.load_from(path).unwrap();
        }
        "ckpt_trusted" => {
            let trusted = LoadOptions::new().verify_checksums(false);
            let _ = model
                .load_from_with(path, &trusted, &StateDictOptions::new())
                .unwrap();
        }
        "safetensors" => safetensors_load_into(&mut model, path),
        other => panic!("unknown loader {other}"),
    }
    println!(
        "{} {} {}",
        bytes_of(&model),
        before,
        peak_rss().unwrap_or(0)
    );
}

fn measure_peak(how: &str, path: &Path) -> Option<(f64, f64)> {
    let output = Command::new(std::env::current_exe().ok()?)
        .env("CKPT_BENCH_CHILD", how)
        .env("CKPT_BENCH_CHILD_PATH", path)
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

fn main() {
    let mb: Option<f64> = std::env::var("CKPT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Ok(how) = std::env::var("CKPT_BENCH_CHILD") {
        let path = PathBuf::from(std::env::var_os("CKPT_BENCH_CHILD_PATH").unwrap());
        child(&how, &path, mb);
        return;
    }
    // `cargo bench` passes `--bench`; anything else (a filter) is ignored.
    let repeat = std::env::var("CKPT_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = match std::env::var_os("CKPT_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let model = Gpt2::new(mb);
    let bytes = bytes_of(&model);
    let tensors = model.state_dict().len();
    println!(
        "workload W: GPT-2-medium-shaped f32 state dict, {tensors} tensors, {bytes} bytes ({:.3} GiB), {} blocks; median of {repeat}",
        bytes as f64 / (1u64 << 30) as f64,
        model.h.len()
    );
    let mut bench = Bench {
        repeat,
        bytes,
        results: Vec::new(),
    };
    let raw = dir.path().join("raw.bin");
    let ck = dir.path().join("w.ckpt");
    let st = dir.path().join("w.safetensors");
    let pt = dir.path().join("w.pt");

    bench.run(&mut [
        ("raw_write", &mut || raw_write(&model, &raw, true)),
        ("ckpt_save", &mut || {
            ckpt::save(model.state_dict(), &ck).unwrap();
        }),
    ]);
    let no_sync = ckpt::SaveOptions::new().fsync(false);
    bench.run(&mut [
        ("raw_write_nofsync", &mut || raw_write(&model, &raw, false)),
        ("ckpt_save_nofsync", &mut || {
            ckpt::save_with(model.state_dict(), &ck, &no_sync).unwrap();
        }),
        ("safetensors_save", &mut || safetensors_save(&model, &st)),
        ("pytorch_save_nofsync", &mut || {
            ckpt::save_with(model.state_dict(), &pt, &no_sync).unwrap();
        }),
    ]);
    std::fs::remove_file(&raw).unwrap();

    let target = Gpt2::new(mb);
    let state = model.state_dict();
    let source: HashMap<String, &[u8]> = state
        .iter()
        .map(|(k, v)| {
            let b = match v.to_le_bytes() {
                Ok(Cow::Borrowed(b)) => b,
                _ => unreachable!("contiguous host arrays lend their bytes"),
            };
            (k.to_owned(), b)
        })
        .collect();
    // Warm the page cache for both files before timing loads.
    let _ = std::fs::read(&ck).unwrap().len()
        + std::fs::read(&st).unwrap().len()
        + std::fs::read(&pt).unwrap().len();
    let trusted = LoadOptions::new().verify_checksums(false);
    let target = std::cell::RefCell::new(target);
    bench.run(&mut [
        ("memcpy", &mut || {
            copy_into(&mut target.borrow_mut(), &source);
        }),
        ("safetensors_load_into", &mut || {
            safetensors_load_into(&mut target.borrow_mut(), &st);
        }),
        ("ckpt_load_into", &mut || {
            let _ = target.borrow_mut().load_from(&ck).unwrap();
        }),
        ("ckpt_load_into_trusted", &mut || {
            let state = StateDictOptions::new();
            let _ = target
                .borrow_mut()
                .load_from_with(&ck, &trusted, &state)
                .unwrap();
        }),
        ("pytorch_load_into", &mut || {
            let _ = target.borrow_mut().load_from(&pt).unwrap();
        }),
        ("ckpt_load", &mut || {
            let checkpoint = ckpt::load(&ck).unwrap();
            assert_eq!(checkpoint.tensors().len(), tensors);
        }),
    ]);
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

    println!("ratios (targets in parentheses):");
    let ratio = |a: &str, b: &str| bench.get(a) / bench.get(b);
    println!(
        "  ckpt_save / raw_write                       {:.3} (<= 1.05)",
        ratio("ckpt_save", "raw_write")
    );
    println!(
        "  ckpt_save_nofsync / raw_write_nofsync       {:.3} (<= 1.05)",
        ratio("ckpt_save_nofsync", "raw_write_nofsync")
    );
    println!(
        "  ckpt_save_nofsync / safetensors_save        {:.3} (<= 0.9)",
        ratio("ckpt_save_nofsync", "safetensors_save")
    );
    println!(
        "  ckpt_load_into / memcpy                     {:.3} (<= 1.15)",
        ratio("ckpt_load_into", "memcpy")
    );
    println!(
        "  ckpt_load_into_trusted / memcpy             {:.3} (<= 1.15)",
        ratio("ckpt_load_into_trusted", "memcpy")
    );
    println!(
        "  ckpt_load_into / safetensors_load_into      {:.3} (<= 1)",
        ratio("ckpt_load_into", "safetensors_load_into")
    );
    println!(
        "  ckpt_load_into_trusted / safetensors_load   {:.3} (<= 1)",
        ratio("ckpt_load_into_trusted", "safetensors_load_into")
    );
    println!(
        "  ckpt_lazy_open                              {:.3} ms (< 1 ms)",
        lazy * 1e3
    );
    for (how, path) in [("ckpt", &ck), ("ckpt_trusted", &ck), ("safetensors", &st)] {
        if let Some((model_bytes, peak)) = measure_peak(how, path) {
            println!(
                "mem peak_rss_load_into_{how} {:.1} MiB; model {:.1} MiB; overhead {:.1} MiB (<= 64)",
                peak / (1u64 << 20) as f64,
                model_bytes / (1u64 << 20) as f64,
                (peak - model_bytes) / (1u64 << 20) as f64
            );
        }
    }
}
