//! CUDA devices: `Tensor::to`, `model.to(device)`, saving from and loading onto GPUs.
//!
//! Built only with the `cuda` feature. The tests marked GPU probe CUDA first and, where it is
//! unavailable, print `skipped: CUDA is not available (<reason>)` and return; the others run
//! everywhere and check what a machine without a GPU must get: typed errors, never a panic.
//! On a GPU machine: `scripts/gpu-check.sh`.
//!
//! Everywhere, `fake_driver_runs_the_gpu_tests` also builds a stand-in for the driver library
//! (tests/fake-cuda: host memory behind the driver API, stricter than a GPU about ordering,
//! bounds and pinned memory) and runs this file again against it, with one and two devices,
//! then runs the `fault_` tests, which need its fault injection: a device out of memory, a
//! device lost mid-transfer.

#[path = "common/mod.rs"]
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ckpt::LoadFrom;
use ckpt::device::{DeviceError, MapLocation};
use ckpt::state::TensorSource;
use ckpt::{Device, LoadOptions, StateDict, Tensor};
use common::surgery::Surgery;
use half::{bf16, f16};
use ndarray::Array2;

#[derive(StateDict, Debug, Clone, PartialEq)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

#[derive(StateDict, Debug, Clone, PartialEq)]
struct Net {
    fc: Linear,
    /// Larger than one staging buffer (16 MiB), with a partial last chunk.
    big: Tensor,
    half: Tensor,
    brain: Tensor,
    flags: Tensor,
    steps: Tensor,
    empty: Tensor,
    #[state(buffer, persistent = false)]
    scratch: Tensor,
}

/// Non-zero, non-repeating values from `seed`.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u32) -> Tensor {
    Tensor::from_vec(values(shape.iter().product(), seed), shape).unwrap()
}

fn net(seed: u32) -> Net {
    let v = values(6, seed);
    Net {
        fc: Linear {
            weight: tensor(&[3, 4], seed),
            bias: tensor(&[3], seed + 1),
        },
        big: tensor(&[9, 1024, 1024], seed + 2),
        half: Tensor::from_vec(v.iter().map(|&x| f16::from_f32(x)).collect(), &[2, 3]).unwrap(),
        brain: Tensor::from_vec(v.iter().map(|&x| bf16::from_f32(x)).collect(), &[6]).unwrap(),
        flags: Tensor::from_vec(v.iter().map(|&x| x > 0.0).collect(), &[6]).unwrap(),
        steps: Tensor::scalar(i64::from(seed) + 7),
        empty: Tensor::zeros(ckpt::DType::F32, &[0, 5]).unwrap(),
        scratch: tensor(&[2], seed + 3),
    }
}

/// The number of GPUs, or `None` after printing why the test is skipped.
fn gpus(test: &str) -> Option<usize> {
    match ckpt::cuda::device_count() {
        Ok(count) => Some(count),
        Err(DeviceError::CudaUnavailable { reason, .. }) => {
            println!("{test}: skipped: CUDA is not available ({reason})");
            None
        }
        Err(other) => panic!("device_count returned an unexpected error: {other}"),
    }
}

/// Every tensor's device, non-persistent buffers included.
fn devices(model: &dyn StateDict) -> Vec<(String, Device)> {
    let mut out = Vec::new();
    model.visit(
        &mut ckpt::state::KeyPath::new(),
        ckpt::state::Role::Parameter,
        &mut |key: &str, view: ckpt::tensor::TensorView<'_>, _| {
            out.push((key.to_owned(), view.device()));
        },
    );
    out
}

fn all_on(model: &dyn StateDict, device: Device) {
    for (key, on) in devices(model) {
        assert_eq!(on, device, "{key}");
    }
}

// ---- Everywhere, GPU or not ----

#[test]
fn the_probe_never_panics_and_says_why() {
    match ckpt::cuda::device_count() {
        Ok(count) => assert!(count > 0),
        Err(err) => {
            assert!(matches!(err, DeviceError::CudaUnavailable { .. }), "{err}");
            assert!(
                err.to_string()
                    .starts_with("cannot use cuda:0: CUDA is not available ("),
                "{err}"
            );
        }
    }
    // Asking twice gives the same answer, from the cache.
    assert_eq!(
        ckpt::cuda::device_count().is_ok(),
        ckpt::cuda::device_count().is_ok()
    );
}

#[test]
fn moving_to_the_cpu_always_works() {
    let t = tensor(&[2, 3], 1);
    let back = t.to(Device::Cpu).unwrap();
    assert_eq!(back, t);
    assert!(back.shares_storage(&t), "already there: shared, not copied");

    let mut model = net(1);
    let before = model.clone();
    StateDict::to(&mut model, Device::Cpu).unwrap();
    assert_eq!(model, before);
    all_on(&model, Device::Cpu);
}

#[test]
fn a_missing_gpu_is_a_typed_error() {
    let t = tensor(&[4], 2);
    let mut model = net(2);
    match ckpt::cuda::device_count() {
        Err(_) => {
            let err = t.to(Device::Cuda(0)).unwrap_err();
            assert!(matches!(err, DeviceError::CudaUnavailable { .. }), "{err}");
            let err = StateDict::to(&mut model, Device::Cuda(0)).unwrap_err();
            assert!(matches!(err, DeviceError::CudaUnavailable { .. }), "{err}");
        }
        Ok(count) => {
            let err = t.to(Device::Cuda(count)).unwrap_err();
            assert_eq!(
                err,
                DeviceError::NoSuchDevice {
                    device: Device::Cuda(count),
                    count
                }
            );
            let err = StateDict::to(&mut model, Device::Cuda(count)).unwrap_err();
            assert!(matches!(err, DeviceError::NoSuchDevice { .. }), "{err}");
        }
    }
    assert_eq!(model, net(2), "nothing moved");
    all_on(&model, Device::Cpu);
}

#[derive(StateDict, Debug, Clone, PartialEq)]
struct Mixed {
    weight: Tensor,
    #[state(rename = "proj")]
    table: Array2<f32>,
    head: Vec<Plain>,
    #[state(buffer, persistent = false)]
    cache: Array2<f32>,
}

#[derive(StateDict, Debug, Clone, PartialEq)]
struct Plain {
    weight: Array2<f32>,
    bias: Tensor,
}

#[test]
fn ndarray_fields_are_named_before_the_device_is_checked() {
    let mut model = Mixed {
        weight: tensor(&[2], 3),
        table: Array2::ones((2, 2)),
        head: vec![Plain {
            weight: Array2::zeros((1, 2)),
            bias: tensor(&[1], 4),
        }],
        cache: Array2::zeros((1, 1)),
    };
    let before = model.clone();
    // On every machine, GPU or not: a programming error is reported the same everywhere.
    let err = StateDict::to(&mut model, Device::Cuda(0)).unwrap_err();
    assert_eq!(
        err,
        DeviceError::HostOnly {
            keys: vec!["proj".into(), "head.0.weight".into(), "cache".into()],
            device: Device::Cuda(0),
        }
    );
    assert_eq!(
        err.to_string(),
        "cannot move \"proj\", \"head.0.weight\", \"cache\" to cuda:0: these fields stay \
         where they are (ndarray arrays live in host memory: make them `ckpt::Tensor` to move \
         them to a GPU; candle tensors move with candle's `to_device`)"
    );
    assert_eq!(model, before, "nothing moved");
    all_on(&model, Device::Cpu);
    StateDict::to(&mut model, Device::Cpu).unwrap();
}

#[test]
fn map_location_onto_a_missing_gpu_says_what_was_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cpu.ckpt");
    let model = Linear {
        weight: tensor(&[2, 2], 5),
        bias: tensor(&[2], 6),
    };
    ckpt::save(model.state_dict(), &path).unwrap();
    let missing = match ckpt::cuda::device_count() {
        Ok(count) => Device::Cuda(count),
        Err(_) => Device::Cuda(0),
    };
    let err = ckpt::load_with(&path, &LoadOptions::new().map_location(missing))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "tensor \"weight\" was saved on cpu and would load onto {missing}, as map_location \
             asked, but {missing} cannot be used: "
        )),
        "{err}"
    );
    assert!(!err.contains("pass map_location"), "{err}");
}

// ---- On a GPU ----

#[test]
fn gpu_round_trip_cpu_gpu_file_cpu() {
    let Some(_) = gpus("gpu_round_trip_cpu_gpu_file_cpu") else {
        return;
    };
    let original = net(10);
    let mut model = original.clone();
    StateDict::to(&mut model, Device::Cuda(0)).unwrap();
    all_on(&model, Device::Cuda(0));
    assert_eq!(
        model, original,
        "values survive the trip (compared on the host)"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu.ckpt");
    ckpt::save(model.state_dict(), &path).unwrap();
    for info in ckpt::inspect(&path).unwrap().tensors {
        assert_eq!(info.device, Device::Cuda(0), "{}", info.key);
    }

    let on_cpu = ckpt::load_with(&path, &LoadOptions::new().map_location(Device::Cpu)).unwrap();
    let mut restored = net(0);
    let _ = restored.load_state_dict(&on_cpu, true).unwrap();
    assert_eq!(restored.fc, original.fc);
    assert_eq!(restored.big, original.big);
    assert_eq!(restored.flags, original.flags);
    all_on(&restored, Device::Cpu);

    // Back to the host with `to`, bit for bit.
    let big = model.big.to(Device::Cpu).unwrap();
    assert_eq!(big.device(), Device::Cpu);
    assert_eq!(big.to_le_bytes(), original.big.to_le_bytes());
}

#[test]
fn gpu_round_trip_gpu_file_gpu() {
    let Some(_) = gpus("gpu_round_trip_gpu_file_gpu") else {
        return;
    };
    let original = net(20);
    let mut model = original.clone();
    StateDict::to(&mut model, Device::Cuda(0)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu.ckpt");
    ckpt::save(model.state_dict(), &path).unwrap();

    // torch.load: tensors go back to the device they were saved on.
    let checkpoint = ckpt::load(&path).unwrap();
    for key in checkpoint.tensor_keys() {
        let device = checkpoint.get_tensor(&key).unwrap().device();
        assert_eq!(device, Device::Cuda(0), "{key}");
    }

    // Into a model already on the GPU: it stays there and gets the values.
    let mut target = net(21);
    StateDict::to(&mut target, Device::Cuda(0)).unwrap();
    let _ = target.load_state_dict(&checkpoint, true).unwrap();
    all_on(&target, Device::Cuda(0));
    assert_eq!(target.fc, original.fc);
    assert_eq!(target.big, original.big);

    // Streamed from the file straight into the GPU model.
    let mut streamed = net(22);
    StateDict::to(&mut streamed, Device::Cuda(0)).unwrap();
    let _ = streamed.load_from(&path).unwrap();
    all_on(&streamed, Device::Cuda(0));
    assert_eq!(streamed.big, original.big);
    assert_eq!(streamed.half, original.half);

    // A GPU tensor's elements are not writable from the host.
    assert!(streamed.big.array_mut::<f32>().is_err());

    // A background save snapshots GPU tensors on the GPU: the file records cuda:0, and a
    // load into the model while it is written leaves the snapshot alone.
    let later = dir.path().join("async.ckpt");
    let handle = ckpt::save_async(streamed.state_dict(), &later);
    let _ = streamed
        .load_state_dict(&net(23).state_dict(), true)
        .unwrap();
    handle.wait().unwrap();
    for info in ckpt::inspect(&later).unwrap().tensors {
        assert_eq!(info.device, Device::Cuda(0), "{}", info.key);
    }
    let snapshot = ckpt::load_with(&later, &LoadOptions::new().map_location(Device::Cpu)).unwrap();
    assert_eq!(snapshot.get_tensor("big").unwrap(), original.big.view());
}

#[test]
fn gpu_a_damaged_file_onto_a_gpu_is_refused() {
    let Some(_) = gpus("gpu_a_damaged_file_onto_a_gpu_is_refused") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ckpt");
    ckpt::save(net(90).state_dict(), &path).unwrap();
    // One bit in the middle of the file: inside `big`, which is nearly all of it.
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    // Checked while the tensors are copied to the GPU: the damage wins over the copies.
    let err = ckpt::load_with(&path, &LoadOptions::new().map_location(Device::Cuda(0)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"big\": checksum mismatch"), "{err}");
    // Without the check, the damaged bytes arrive as they are.
    let trusted = LoadOptions::new()
        .map_location(Device::Cuda(0))
        .verify_checksums(false);
    let checkpoint = ckpt::load_with(&path, &trusted).unwrap();
    let big = checkpoint.get_tensor("big").unwrap();
    assert_eq!(big.device(), Device::Cuda(0));
    assert!(big != net(90).big.view());
}

/// Runs `f` on another thread and fails if it takes more than `seconds`: a deadlock fails
/// the test instead of hanging it (the stuck thread is left behind).
fn within(seconds: u64, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        done.send(()).unwrap();
    });
    match finished.recv_timeout(Duration::from_secs(seconds)) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("no progress in {seconds} s: deadlock"),
    }
}

#[test]
fn gpu_transfers_inside_rayon_jobs() {
    use rayon::prelude::*;
    let Some(count) = gpus("gpu_transfers_inside_rayon_jobs") else {
        return;
    };
    // A transfer holds its device's staging buffers while it copies. Waiting threads of a
    // rayon pool take other queued jobs: if the copies ran on such a pool, a waiting holder
    // could pick up a transfer wanting the same buffers (and deadlock), or one binding
    // another GPU (and copy in the wrong context). Here every transfer runs in rayon jobs
    // next to others, on one pool and from plain threads at the same time.
    let other = Device::Cuda(count - 1);
    within(120, move || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let big = tensor(&[12, 1024, 1024], 100); // 48 MiB: three staging chunks
        let small: Vec<Tensor> = (0..24).map(|i| tensor(&[1 << 18], 101 + i)).collect();
        let plain = {
            let big = big.clone();
            std::thread::spawn(move || {
                for _ in 0..4 {
                    assert_eq!(big.to(Device::Cuda(0)).unwrap(), big);
                }
            })
        };
        for _ in 0..6 {
            pool.install(|| {
                rayon::join(
                    || assert_eq!(big.to(Device::Cuda(0)).unwrap(), big),
                    || {
                        small.par_iter().for_each(|t| {
                            assert_eq!(t.to(other).unwrap().to(Device::Cpu).unwrap(), *t);
                        });
                    },
                )
            });
            small
                .par_iter()
                .for_each(|t| drop(t.to(Device::Cuda(0)).unwrap()));
        }
        plain.join().unwrap();
    });
}

#[test]
fn gpu_map_location_forms() {
    let Some(count) = gpus("gpu_map_location_forms") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cuda1.ckpt");
    let model = Linear {
        weight: tensor(&[3, 2], 30),
        bias: tensor(&[3], 31),
    };
    ckpt::save(model.state_dict(), &path).unwrap();
    // Saved on cuda:1, as a two-GPU run would have; this machine may have one.
    let mut file = Surgery::open(&path);
    for i in 0..2 {
        *file.record(i, "device") = ciborium::Value::Text("cuda:1".into());
    }
    file.write(&path);

    for location in [
        MapLocation::from(Device::Cuda(0)),
        "cuda:1->cuda:0".parse::<MapLocation>().unwrap(),
        MapLocation::with_fn(|_, _| Device::Cuda(0)),
    ] {
        let checkpoint = ckpt::load_with(&path, &LoadOptions::new().map_location(location.clone()))
            .unwrap_or_else(|e| panic!("{location:?}: {e}"));
        let weight = checkpoint.get_tensor("weight").unwrap();
        assert_eq!(weight.device(), Device::Cuda(0), "{location:?}");
        assert_eq!(weight, model.weight.view());
    }
    // Mixed: the bias on the GPU, the weight on the host.
    let split = MapLocation::with_fn(|key, _| {
        if key == "bias" {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }
    });
    let checkpoint = ckpt::load_with(&path, &LoadOptions::new().map_location(split)).unwrap();
    assert_eq!(
        checkpoint.get_tensor("weight").unwrap().device(),
        Device::Cpu
    );
    assert_eq!(
        checkpoint.get_tensor("bias").unwrap().device(),
        Device::Cuda(0)
    );

    if count < 2 {
        let err = ckpt::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("this machine has {count} CUDA device(s)")),
            "{err}"
        );
        assert!(err.contains("pass map_location"), "{err}");
    }

    // safetensors files record no device: CPU unless map_location says otherwise.
    let st = dir.path().join("model.safetensors");
    ckpt::save(model.state_dict(), &st).unwrap();
    let checkpoint =
        ckpt::load_with(&st, &LoadOptions::new().map_location(Device::Cuda(0))).unwrap();
    assert_eq!(
        checkpoint.get_tensor("bias").unwrap().device(),
        Device::Cuda(0)
    );
    assert_eq!(checkpoint.get_tensor("bias").unwrap(), model.bias.view());
}

#[test]
fn gpu_model_to_moves_every_leaf_and_back() {
    let Some(_) = gpus("gpu_model_to_moves_every_leaf_and_back") else {
        return;
    };
    let original = net(40);
    let mut model = original.clone();
    StateDict::to(&mut model, Device::Cuda(0)).unwrap();
    all_on(&model, Device::Cuda(0));
    assert_eq!(
        model.scratch.device(),
        Device::Cuda(0),
        "non-persistent buffer moved"
    );
    // Clones share the GPU data; casting keeps the device.
    let clone = model.big.clone();
    assert!(clone.shares_storage(&model.big));
    let cast = model.fc.weight.to_dtype(ckpt::DType::F64).unwrap();
    assert_eq!(cast.device(), Device::Cuda(0));
    assert_eq!(cast, original.fc.weight.to_dtype(ckpt::DType::F64).unwrap());

    StateDict::to(&mut model, Device::Cpu).unwrap();
    all_on(&model, Device::Cpu);
    assert_eq!(model, original);

    // Tied tensors (clones of one tensor) move once and stay tied, both ways.
    let shared = tensor(&[4, 3], 42);
    let mut tied = Tied {
        embed: shared.clone(),
        head: shared.clone(),
        other: tensor(&[4, 3], 42),
    };
    for device in [Device::Cuda(0), Device::Cpu] {
        StateDict::to(&mut tied, device).unwrap();
        all_on(&tied, device);
        assert!(
            tied.embed.shares_storage(&tied.head),
            "{device}: still tied"
        );
        assert!(
            !tied.embed.shares_storage(&tied.other),
            "{device}: equal, not tied"
        );
        assert_eq!(tied.head, shared);
    }
}

#[derive(StateDict, Debug, Clone, PartialEq)]
struct Tied {
    embed: Tensor,
    head: Tensor,
    other: Tensor,
}

// ---- On the fake driver (tests/fake-cuda), everywhere ----

/// Builds tests/fake-cuda and returns the directory holding its `libcuda.so`, as cargo
/// reports it (wherever a configured build target puts it).
fn build_fake_driver() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-cuda/Cargo.toml");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fake-cuda");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--message-format=json", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "building {} failed",
        manifest.display()
    );
    let library = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|name| name.as_str().map(PathBuf::from))
        .find(|name| name.file_name().is_some_and(|n| n == "libcuda.so"))
        .expect("cargo built libcuda.so");
    library.parent().unwrap().to_owned()
}

/// Runs this test binary again on the fake driver, with `settings` and `args`, and returns
/// its output after checking that it passed and that no test skipped for want of CUDA.
/// A run that does not finish within five minutes has hung, and is killed.
fn run_on_fake_driver(driver: &Path, settings: &[(&str, &str)], args: &[&str]) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .arg("--nocapture")
        .env("RUST_TEST_THREADS", "1")
        .env("LD_LIBRARY_PATH", driver)
        .env("CKPT_ON_FAKE_CUDA", "1")
        .envs(settings.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test binary runs");
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            pipe.read_to_end(&mut text).unwrap();
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!("{}{}", stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = status else {
        panic!(
            "on the fake driver with {settings:?}, {args:?}: hung, killed after 5 minutes:\n{text}"
        );
    };
    assert!(
        status.success(),
        "on the fake driver with {settings:?}, {args:?}:\n{text}"
    );
    assert!(!text.contains("skipped"), "{settings:?}, {args:?}:\n{text}");
    assert!(
        !text.contains("running 0 tests"),
        "{args:?} matched nothing"
    );
    text
}

#[test]
fn fake_driver_runs_the_gpu_tests() {
    if std::env::var_os("CKPT_ON_FAKE_CUDA").is_some() {
        return; // already there
    }
    let driver = build_fake_driver();
    // Everything but the fault tests, on two devices (files saved on cuda:1 load as they
    // are) with four test threads sharing them; then on one device (files saved on cuda:1
    // need map_location) without stream-ordered allocation (cudarc's other path), with one.
    for settings in [
        [("FAKE_CUDA_DEVICES", "2"), ("RUST_TEST_THREADS", "4")],
        [("FAKE_CUDA_DEVICES", "1"), ("FAKE_CUDA_MEMORY_POOLS", "0")],
    ] {
        let out = run_on_fake_driver(
            &driver,
            &settings,
            &["--skip", "fake_driver", "--skip", "fault_"],
        );
        for test in [
            "gpu_round_trip_cpu_gpu_file_cpu",
            "gpu_transfers_inside_rayon_jobs",
            "gpu_a_damaged_file_onto_a_gpu_is_refused",
            "gpu_round_trip_gpu_file_gpu",
            "gpu_map_location_forms",
            "gpu_model_to_moves_every_leaf_and_back",
        ] {
            assert!(out.contains(&format!("test {test} ... ok")), "{out}");
        }
    }
    run_on_fake_driver(
        &driver,
        &[("FAKE_CUDA_MEMORY_MB", "64")],
        &["fault_out_of_memory", "--exact"],
    );
    // The model (48 MiB) goes to the GPU, then the device is lost half way through saving it.
    run_on_fake_driver(
        &driver,
        &[("FAKE_CUDA_FAIL_AFTER_MB", "72")],
        &[
            "fault_lost_device_during_a_save",
            "--exact",
            "--test-threads=1",
        ],
    );
    // The model goes to the GPU, then the device is lost half way through loading into it.
    run_on_fake_driver(
        &driver,
        &[("FAKE_CUDA_FAIL_AFTER_MB", "72")],
        &[
            "fault_lost_device_during_a_load",
            "--exact",
            "--test-threads=1",
        ],
    );
}

/// Whether this runs on the fake driver with its fault injection `setting`; prints why the
/// test is skipped when not.
fn fault_injection(test: &str, setting: &str) -> bool {
    let on = std::env::var_os(setting).is_some();
    if !on {
        println!(
            "{test}: skipped: runs on the fake driver, with {setting} (see fake_driver_runs_the_gpu_tests)"
        );
    }
    on
}

/// Two tensors of 24 MiB each, with a partial last staging chunk.
#[derive(StateDict, Debug, Clone, PartialEq)]
struct Pair {
    a: Tensor,
    b: Tensor,
}

fn pair(seed: u32) -> Pair {
    Pair {
        a: tensor(&[6, 1024, 1024], seed),
        b: tensor(&[6, 1024, 1024], seed + 1),
    }
}

#[test]
fn fault_out_of_memory() {
    if !fault_injection("fault_out_of_memory", "FAKE_CUDA_MEMORY_MB") {
        return;
    }
    // 64 MiB of device memory: one pair fits, two do not.
    let original = [pair(60), pair(62)];
    let mut model = original.clone();
    let err = StateDict::to(&mut model, Device::Cuda(0)).unwrap_err();
    let DeviceError::Moving {
        key,
        device,
        source,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((key.as_str(), *device), ("1.a", Device::Cuda(0)));
    assert!(matches!(**source, DeviceError::Driver { .. }), "{source}");
    assert!(
        err.to_string().contains("CUDA_ERROR_OUT_OF_MEMORY"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(
            "cannot move \"1.a\" to cuda:0, so the model was left where it was: CUDA error on cuda:0"
        ),
        "{err}"
    );
    assert_eq!(model, original, "nothing moved");
    all_on(&model, Device::Cpu);

    // The copies made before the failure were freed: a pair fits again, twice in a row.
    for _ in 0..2 {
        let mut one = pair(64);
        StateDict::to(&mut one, Device::Cuda(0)).unwrap();
        all_on(&one, Device::Cuda(0));
        assert_eq!(one, pair(64));
    }

    // A load onto a GPU too small for the file says which file, which tensor, which device.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-pairs.ckpt");
    ckpt::save(original.state_dict(), &path).unwrap();
    let err = ckpt::load_with(&path, &LoadOptions::new().map_location(Device::Cuda(0)))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("\"1.a\""), "{err}");
    assert!(err.contains("cuda:0"), "{err}");
    assert!(err.contains("CUDA_ERROR_OUT_OF_MEMORY"), "{err}");
    // And what that load had placed is freed with the error.
    let checkpoint = ckpt::load_with(&path, &LoadOptions::new().map_location(Device::Cuda(0)));
    drop(checkpoint);
    let mut one = pair(66);
    StateDict::to(&mut one, Device::Cuda(0)).unwrap();
}

#[test]
fn fault_lost_device_during_a_save() {
    if !fault_injection("fault_lost_device_during_a_save", "FAKE_CUDA_FAIL_AFTER_MB") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let names = ["model.ckpt", "model.safetensors", "model.pt"];
    let mut before = Vec::new();
    for name in names {
        let path = dir.path().join(name);
        ckpt::save(pair(70).state_dict(), &path).unwrap();
        before.push(std::fs::read(&path).unwrap());
    }

    let mut model = pair(72);
    StateDict::to(&mut model, Device::Cuda(0)).unwrap(); // 48 MiB of the 72 that may be copied
    // `a` comes back (the last 24 MiB), then the device is lost copying `b`; after that,
    // every copy fails at once.
    for (name, key) in [
        ("model.ckpt", "b"),
        ("model.safetensors", "a"),
        ("model.pt", "a"),
    ] {
        let path = dir.path().join(name);
        let err = ckpt::save(model.state_dict(), &path)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains(&format!("\"{key}\"")), "{err}");
        assert!(
            err.contains("CUDA error on cuda:0 while copying from the device"),
            "{err}"
        );
        assert!(err.contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "{err}");
    }

    for (name, before) in names.iter().zip(&before) {
        let path = dir.path().join(name);
        assert!(&std::fs::read(&path).unwrap() == before, "{name} is intact");
        let mut restored = pair(0);
        let _ = restored.load_from(&path).unwrap();
        assert_eq!(restored, pair(70));
    }
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["model.ckpt", "model.pt", "model.safetensors"],
        "no temporary file is left"
    );
}

#[test]
fn fault_lost_device_during_a_load() {
    if !fault_injection("fault_lost_device_during_a_load", "FAKE_CUDA_FAIL_AFTER_MB") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.ckpt");
    ckpt::save(pair(80).state_dict(), &path).unwrap();

    let mut model = pair(82);
    StateDict::to(&mut model, Device::Cuda(0)).unwrap(); // 48 MiB of the 72 that may be copied
    let err = model.load_from(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "{err}");
    assert!(err.contains("cuda:0"), "{err}");

    // The device is gone: later uses say so, and nothing panics.
    let err = pair(84).a.to(Device::Cuda(0)).unwrap_err();
    assert!(
        err.to_string().contains("CUDA_ERROR_ILLEGAL_ADDRESS"),
        "{err}"
    );
    let err = model.a.array::<f32>().unwrap_err();
    assert!(
        err.to_string().contains("CUDA_ERROR_ILLEGAL_ADDRESS"),
        "{err}"
    );
    let err = StateDict::to(&mut model, Device::Cpu).unwrap_err();
    assert!(matches!(err, DeviceError::Moving { .. }), "{err}");
    assert_eq!(model.a.device(), Device::Cuda(0), "nothing moved");
}

/// Every dtype to a GPU and back, bit for bit, and through a `.pt` file saved from the GPU and
/// loaded onto it: the paths move bytes, whatever the dtype.
#[test]
fn gpu_every_dtype_round_trips() {
    let Some(_) = gpus("gpu_every_dtype_round_trips") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for dtype in ckpt::DType::ALL {
        let n = 37;
        let bytes: Vec<u8> = (0..n * dtype.size_in_bytes())
            .map(|i| {
                if dtype == ckpt::DType::Bool {
                    (i % 2) as u8
                } else {
                    (i * 7 + 3) as u8
                }
            })
            .collect();
        let t = Tensor::from_le_bytes(dtype, &[n], &bytes).unwrap();
        let gpu = t.to(Device::Cuda(0)).unwrap();
        assert_eq!(gpu.dtype(), dtype);
        assert_eq!(
            gpu.to(Device::Cpu).unwrap().to_le_bytes().unwrap(),
            t.to_le_bytes().unwrap(),
            "{dtype}"
        );
        let path = dir.path().join(format!("{dtype}.pt"));
        ckpt::save(ckpt::dict! { "t" => &gpu }, &path).unwrap();
        let options = LoadOptions::new().map_location(Device::Cuda(0));
        let loaded = ckpt::load_with(&path, &options).unwrap();
        let back = loaded["t"].as_tensor().unwrap();
        assert_eq!(back.device(), Device::Cuda(0), "{dtype}");
        assert_eq!(
            back.to_le_bytes().unwrap(),
            t.to_le_bytes().unwrap(),
            "{dtype}"
        );
    }
}
