//! CUDA devices: `Tensor::to`, `model.to(device)`, saving from and loading onto GPUs.
//!
//! Built only with the `cuda` feature. The tests marked GPU probe CUDA first and, where it is
//! unavailable, print `skipped: CUDA is not available (<reason>)` and return; the others run
//! everywhere and check what a machine without a GPU must get: typed errors, never a panic.
//! On a GPU machine: `scripts/gpu-check.sh`.

mod common;

use ckpt::{Device, DeviceError, LoadOptions, MapLocation, StateDict, Tensor, TensorSource};
use common::Surgery;
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
        &mut ckpt::KeyPath::new(),
        ckpt::Role::Parameter,
        &mut |key: &str, view: ckpt::TensorView<'_>, _| out.push((key.to_owned(), view.device())),
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
        "cannot move \"proj\", \"head.0.weight\", \"cache\" to cuda:0: ndarray fields live in \
         host memory; make them `ckpt::Tensor` to move them to a GPU"
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
    for info in ckpt::inspect(&path).unwrap() {
        assert_eq!(info.device, Device::Cuda(0), "{}", info.key);
    }

    let on_cpu = ckpt::load_with(&path, &LoadOptions::new().map_location(Device::Cpu)).unwrap();
    let mut restored = net(0);
    restored.load_state_dict(&on_cpu, true).unwrap();
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
    target.load_state_dict(&checkpoint, true).unwrap();
    all_on(&target, Device::Cuda(0));
    assert_eq!(target.fc, original.fc);
    assert_eq!(target.big, original.big);

    // Streamed from the file straight into the GPU model.
    let mut streamed = net(22);
    StateDict::to(&mut streamed, Device::Cuda(0)).unwrap();
    streamed.load_from(&path, &LoadOptions::new()).unwrap();
    all_on(&streamed, Device::Cuda(0));
    assert_eq!(streamed.big, original.big);
    assert_eq!(streamed.half, original.half);

    // A GPU tensor's elements are not writable from the host.
    assert!(streamed.big.array_mut::<f32>().is_err());

    // A background save snapshots GPU tensors on the GPU: the file records cuda:0, and a
    // load into the model while it is written leaves the snapshot alone.
    let later = dir.path().join("async.ckpt");
    let handle = ckpt::save_async(streamed.state_dict(), &later);
    streamed
        .load_state_dict(&net(23).state_dict(), true)
        .unwrap();
    handle.wait().unwrap();
    for info in ckpt::inspect(&later).unwrap() {
        assert_eq!(info.device, Device::Cuda(0), "{}", info.key);
    }
    let snapshot = ckpt::load_with(&later, &LoadOptions::new().map_location(Device::Cpu)).unwrap();
    assert_eq!(snapshot.get_tensor("big").unwrap(), original.big.view());
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
}
