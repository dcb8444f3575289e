//! Workload W on a GPU: the GPT-2-medium-shaped f32 state dict of `save_load` (292 tensors,
//! 1.32 GiB) loaded from a file onto cuda:0 and saved from cuda:0, next to the raw bandwidth
//! of pinned host-to-device and device-to-host copies measured in the same run.
//!
//! `cargo bench --features cuda --bench gpu` (or `scripts/gpu-check.sh`); `CKPT_BENCH_MB`
//! scales the model down, `CKPT_BENCH_REPEAT` sets the repetitions (median reported),
//! `CKPT_BENCH_DIR` the directory for the file. Each figure is one line
//! `bench NAME SECONDS GIB_PER_S`, seconds for W's bytes; the raw copies are timed over
//! `min(W, 1 GiB)` and scaled to W's size. The file is read from the page cache.
//! Without a GPU it prints why and exits successfully.

use std::path::PathBuf;
use std::time::Instant;

use ckpt::device::DeviceError;
use ckpt::state::TensorSource;
use ckpt::{Device, LoadOptions, SaveOptions, StateDict, Tensor};
use ckpt::{LoadFrom, StateDictOptions};
use indexmap::IndexMap;

/// GPT-2 medium's tensors, scaled to about `mb` megabytes (`None`: full size), as `save_load`
/// scales them: fewer blocks, a smaller vocabulary.
fn gpt2(mb: Option<f64>) -> IndexMap<String, Tensor> {
    const VOCAB: usize = 50257;
    const BLOCKS: usize = 24;
    const D: usize = 1024;
    let block =
        2 * D + (D * 3 * D + 3 * D) + (D * D + D) + 2 * D + (D * 4 * D + 4 * D) + (4 * D * D + D);
    let full = 4.0 * (VOCAB * D + 1024 * D + BLOCKS * block + 2 * D) as f64 / 1e6;
    let scale = mb.map_or(1.0, |mb| (mb / full).min(1.0));
    let blocks = ((BLOCKS as f64 * scale).round() as usize).max(1);
    let vocab = ((VOCAB as f64 * scale).round() as usize).max(1024);

    let mut seed = 0u32;
    let mut model = IndexMap::new();
    let mut add = |key: String, shape: &[usize]| {
        seed += 1;
        let mut state = seed.wrapping_mul(2_654_435_761) | 1;
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        model.insert(key, Tensor::from_vec(data, shape).expect("length matches"));
    };
    add("wte.weight".into(), &[vocab, D]);
    add("wpe.weight".into(), &[1024, D]);
    for b in 0..blocks {
        let p = format!("h.{b}");
        add(format!("{p}.ln_1.weight"), &[D]);
        add(format!("{p}.ln_1.bias"), &[D]);
        add(format!("{p}.attn.c_attn.weight"), &[D, 3 * D]);
        add(format!("{p}.attn.c_attn.bias"), &[3 * D]);
        add(format!("{p}.attn.c_proj.weight"), &[D, D]);
        add(format!("{p}.attn.c_proj.bias"), &[D]);
        add(format!("{p}.ln_2.weight"), &[D]);
        add(format!("{p}.ln_2.bias"), &[D]);
        add(format!("{p}.mlp.c_fc.weight"), &[D, 4 * D]);
        add(format!("{p}.mlp.c_fc.bias"), &[4 * D]);
        add(format!("{p}.mlp.c_proj.weight"), &[4 * D, D]);
        add(format!("{p}.mlp.c_proj.bias"), &[D]);
    }
    add("ln_f.weight".into(), &[D]);
    add("ln_f.bias".into(), &[D]);
    model
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The median of `repeat` timings of `f`, after one untimed run (first-use costs: staging
/// buffers, thread pools, page tables).
fn median(repeat: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..repeat)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count = match ckpt::cuda::device_count() {
        Ok(count) => count,
        Err(DeviceError::CudaUnavailable { reason, .. }) => {
            println!("skipped: CUDA is not available ({reason})");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let repeat = env::<usize>("CKPT_BENCH_REPEAT").unwrap_or(5).max(1);
    let dir = match env::<PathBuf>("CKPT_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let host = gpt2(env("CKPT_BENCH_MB"));
    let bytes = host.state_dict().nbytes();
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!(
        "workload W: {} tensors, {gib:.3} GiB, {count} GPU(s), cuda:0, median of {repeat}",
        host.len()
    );
    let line = |name: &str, seconds: f64| {
        println!("bench {name} {seconds:.6} {:.3}", gib / seconds);
        (name.to_owned(), seconds)
    };
    let mut results = Vec::new();

    let (h2d, d2h) = ckpt::cuda::raw_copy_bandwidth(0, bytes.min(1 << 30))?;
    results.push(line("raw_pinned_h2d", bytes as f64 / h2d));
    results.push(line("raw_pinned_d2h", bytes as f64 / d2h));

    let path = dir.path().join("w.ckpt");
    ckpt::save_with(host.state_dict(), &path, &SaveOptions::new().fsync(false))?;
    drop(std::fs::read(&path)?); // into the page cache

    // torch.load(path, map_location="cuda:0"): mapped file -> pinned staging -> GPU.
    for (name, verify) in [
        ("ckpt_load_cuda", true),
        ("ckpt_load_cuda_nochecksum", false),
    ] {
        let options = LoadOptions::new()
            .map_location(Device::Cuda(0))
            .verify_checksums(verify);
        results.push(line(
            name,
            median(repeat, || {
                let checkpoint = ckpt::load_with(&path, &options).expect("load onto cuda:0");
                drop(checkpoint);
            }),
        ));
    }

    // model.load_state_dict(torch.load(path)) into a model already on the GPU, streamed.
    let mut model = host.clone();
    StateDict::to(&mut model, Device::Cuda(0))?;
    let options = LoadOptions::new().verify_checksums(false);
    results.push(line(
        "ckpt_load_from_into_cuda_model",
        median(repeat, || {
            let _ = model
                .load_from_with(&path, &options, &StateDictOptions::new())
                .expect("load_from");
        }),
    ));

    // torch.save from cuda:0: GPU -> pinned staging -> file (no fsync: the disk is not timed).
    let out = dir.path().join("saved.ckpt");
    let save = SaveOptions::new().fsync(false);
    results.push(line(
        "ckpt_save_from_cuda",
        median(repeat, || {
            ckpt::save_with(model.state_dict(), &out, &save).expect("save from cuda:0");
        }),
    ));
    results.push(line(
        "ckpt_to_cpu_from_cuda",
        median(repeat, || {
            let mut back = model.clone();
            StateDict::to(&mut back, Device::Cpu).expect("to cpu");
        }),
    ));
    let check = ckpt::load_with(&out, &LoadOptions::new().map_location(Device::Cpu))?;
    let first = check.get_tensor("wte.weight").expect("saved");
    assert!(
        first == host["wte.weight"].view(),
        "saved from the GPU bit for bit"
    );

    let get = |name: &str| {
        results
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |r| r.1)
    };
    println!("ratios to the raw pinned copy (target: load >= 0.80):");
    for (name, raw) in [
        ("ckpt_load_cuda", "raw_pinned_h2d"),
        ("ckpt_load_cuda_nochecksum", "raw_pinned_h2d"),
        ("ckpt_load_from_into_cuda_model", "raw_pinned_h2d"),
        ("ckpt_save_from_cuda", "raw_pinned_d2h"),
        ("ckpt_to_cpu_from_cuda", "raw_pinned_d2h"),
    ] {
        println!("  {name:<32} {:.2} of {raw}", get(raw) / get(name));
    }
    Ok(())
}
