//! Writing `.pt` files: what ckpt writes, ckpt reads back unchanged, and the files committed under
//! `tests/fixtures/pytorch/written/` (which `tests/python/check_written.py` loads with real
//! PyTorch) are exactly what the writer produces today.

use std::io::Cursor;

use crate::common::pytorch::*;
use ckpt::value::Key;
use ckpt::{Tensor, Value, dict};
use ndarray::{Array2, ShapeBuilder};

fn write_to_vec(value: &Value<'_>) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    write(value, &mut out).unwrap();
    out.into_inner()
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 - n as f32 / 2.0) * scale)
        .collect()
}

fn state_dict() -> Value<'static> {
    let t = |data: Vec<f32>, shape: &[usize]| Tensor::from_vec(data, shape).unwrap();
    dict! {
        "0.weight" => t(ramp(128, 0.01), &[16, 8]),
        "0.bias" => t(ramp(16, 0.1), &[16]),
        "bn.running_mean" => t(ramp(16, 0.5), &[16]),
        "bn.num_batches_tracked" => Tensor::scalar(3i64),
        "2.weight" => t(ramp(64, 0.02), &[4, 16]),
        "2.bias" => t(vec![0.5, -0.5, 0.25, -0.25], &[4]),
    }
}

fn all_dtypes() -> Value<'static> {
    dict! {
        "f64" => Tensor::from_vec(vec![1.5f64, -2.25, 1e300], &[3]).unwrap(),
        "f32" => Tensor::from_vec(ramp(6, 0.5), &[2, 3]).unwrap(),
        "f16" => Tensor::from_vec(vec![half::f16::from_f32(0.5), half::f16::MAX], &[2]).unwrap(),
        "bf16" => Tensor::from_vec(vec![half::bf16::from_f32(-3.0), half::bf16::ONE], &[2]).unwrap(),
        "i64" => Tensor::from_vec(vec![i64::MIN, -1, i64::MAX], &[3]).unwrap(),
        "i32" => Tensor::from_vec(vec![i32::MIN, 7], &[2]).unwrap(),
        "i16" => Tensor::from_vec(vec![-300i16, 300], &[2, 1]).unwrap(),
        "i8" => Tensor::from_vec(vec![-128i8, 127], &[2]).unwrap(),
        "u8" => Tensor::from_vec(vec![0u8, 255], &[2]).unwrap(),
        "bool" => Tensor::from_vec(vec![true, false, true], &[3]).unwrap(),
        "scalar" => Tensor::scalar(2.5f32),
        "empty" => Tensor::zeros(ckpt::DType::F32, &[0, 4]).unwrap(),
    }
}

fn checkpoint() -> Value<'static> {
    let t = |n: usize, scale: f32| Tensor::from_vec(ramp(n, scale), &[n]).unwrap();
    let state: Value<'static> = [
        (0i64, dict! { "step" => Tensor::scalar(3.0f32), "exp_avg" => t(4, 0.1), "exp_avg_sq" => t(4, 0.01) }),
        (1i64, dict! { "step" => Tensor::scalar(3.0f32), "exp_avg" => t(2, 0.1), "exp_avg_sq" => t(2, 0.01) }),
    ]
    .into_iter()
    .collect();
    dict! {
        "epoch" => 7,
        "model_state_dict" => state_dict(),
        "optimizer_state_dict" => dict! {
            "state" => state,
            "param_groups" => vec![dict! {
                "lr" => 0.001,
                "betas" => vec![0.9, 0.999],
                "eps" => 1e-8,
                "weight_decay" => 0,
                "amsgrad" => false,
                "foreach" => Value::None,
                "params" => vec![0, 1],
            }],
        },
        "loss" => 0.125,
        "name" => "ckpt ✓",
        "big" => 1i64 << 40,
        "negative" => -70000,
        "dtypes" => all_dtypes(),
    }
}

/// A model with tied weights (one tensor under two keys) and a column-major weight, which is
/// written in C order.
fn tied(embedding: &Tensor, column_major: &Tensor) -> Value<'static> {
    dict! {
        "embed.weight" => embedding.clone(),
        "head.weight" => embedding.clone(),
        "proj.weight" => column_major.clone(),
    }
    .to_owned_value()
}

fn tied_tensors() -> (Tensor, Tensor) {
    let embedding = Tensor::from_vec(ramp(24, 0.25), &[6, 4]).unwrap();
    let f = Array2::from_shape_vec((3, 4).f(), ramp(12, 1.0)).unwrap();
    (embedding, Tensor::from(f))
}

#[test]
fn round_trip_of_every_fixture() {
    for name in [
        "mlp_state_dict.pt",
        "cnn_bn_state_dict.pt",
        "checkpoint_adam.pt",
        "gan_checkpoint.pt",
        "dataparallel_state_dict.pt",
        "dtypes.pt",
        "views.pt",
        "mlp_legacy_format.pt",
    ] {
        let original = read(&fixture(name)).unwrap();
        let back = read(&write_to_vec(&original)).unwrap();
        assert_eq!(manifest_of(&back), manifest_of(&original), "{name}");
        assert_eq!(back, original, "{name}");
    }
    let views = read(&write_to_vec(&read(&fixture("views.pt")).unwrap())).unwrap();
    let (a, b) = (
        views["tied_a"].as_tensor().unwrap(),
        views["tied_b"].as_tensor().unwrap(),
    );
    assert!(a.shares_storage(&b));
}

#[test]
fn round_trip_of_a_checkpoint_tree() {
    let value = checkpoint();
    let back = read(&write_to_vec(&value)).unwrap();
    assert_eq!(back, value);
    assert_eq!(manifest_of(&back), manifest_of(&value));
    assert!(matches!(
        back["optimizer_state_dict"]["state"]
            .as_map()
            .unwrap()
            .keys()
            .next(),
        Some(Key::Int(0))
    ));
    assert_eq!(back["big"].as_i64(), Some(1 << 40));
    assert_eq!(back["negative"].as_i64(), Some(-70000));
}

#[test]
fn integers_of_every_width_round_trip() {
    let ints = [
        0,
        1,
        255,
        256,
        65535,
        65536,
        -1,
        -128,
        -129,
        i32::MIN as i64,
        i32::MAX as i64 + 1,
        i64::MIN,
        i64::MAX,
        -(1 << 55),
    ];
    let value = Value::List(ints.iter().map(|&i| Value::Int(i)).collect());
    assert_eq!(read(&write_to_vec(&value)).unwrap(), value);
}

#[test]
fn shared_tensors_are_written_once_and_come_back_shared() {
    let (embedding, column_major) = tied_tensors();
    let value = tied(&embedding, &column_major);
    let bytes = write_to_vec(&value);
    let records: Vec<String> = zip::ZipArchive::new(Cursor::new(&bytes))
        .unwrap()
        .file_names()
        .map(|name| name.unwrap().into_owned())
        .collect();
    assert_eq!(records.iter().filter(|n| n.contains("/data/")).count(), 2);
    let back = read(&bytes).unwrap();
    assert_eq!(back, value);
    let get = |k: &str| back[k].as_tensor().unwrap();
    assert!(get("embed.weight").shares_storage(&get("head.weight")));
    assert!(!get("embed.weight").shares_storage(&get("proj.weight")));
    // A borrowed, non-contiguous view is written in C order.
    assert_eq!(
        get("proj.weight").to_f64_vec().unwrap(),
        column_major.view().to_f64_vec().unwrap()
    );
}

#[test]
fn storages_are_stored_and_aligned_to_64_bytes() {
    let bytes = write_to_vec(&checkpoint());
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
    for i in 0..zip.len() {
        let file = zip.by_index(i).unwrap();
        assert_eq!(file.compression(), zip::CompressionMethod::Stored);
        assert_eq!(file.data_start().unwrap() % 64, 0, "{:?}", file.name());
    }
    assert_eq!(
        write_to_vec(&checkpoint()),
        bytes,
        "the output is deterministic"
    );
}

#[test]
fn write_errors_name_the_file() {
    let path = std::path::Path::new("/nonexistent-dir/ckpt/out.pt");
    let err = ckpt::save(state_dict(), path).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent-dir/ckpt/out.pt: "),
        "{err}"
    );
    let err = read_file(path).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent-dir/ckpt/out.pt: "),
        "{err}"
    );
}

/// Every kind of value beyond JSON's that a `.pt` file holds: what a scheduler's state dict
/// (a `Counter` of milestones) and a training script's extras hold.
fn python_objects() -> Value<'static> {
    use ckpt::dtype::TorchDType;
    let counts = [(10i64, 1i64), (25, 2), (40, 1)]
        .into_iter()
        .map(|(k, v)| (Key::Int(k), Value::Int(v)))
        .collect();
    let dtype = |name| Value::DType(TorchDType::from_name(name).unwrap());
    dict! {
        "milestones" => Value::Counter(counts),
        "no_milestones" => Value::Counter(Default::default()),
        "ids" => Value::Set(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
        "z" => Value::Complex(ckpt::value::Complex64::new(1.5, -2.0)),
        "raw" => Value::Bytes(b"\x00ab\x80\xff".to_vec()),
        "empty" => Value::Bytes(Vec::new()),
        "buf" => Value::ByteArray(vec![0, 1, 0xfe, 0xff]),
        "dtype" => dtype("bfloat16"),
        "dtypes" => vec![dtype("float8_e4m3fn"), dtype("uint16"), dtype("quint4x2"), dtype("bool")],
    }
}

/// The files `tests/python/check_written.py` loads with PyTorch, and their manifests. Set
/// `CKPT_REGENERATE=1` to rewrite them after a deliberate change to the writer.
#[test]
fn written_files_match_the_committed_ones() {
    let (embedding, column_major) = tied_tensors();
    let cases = [
        ("state_dict.pt", state_dict(), vec![]),
        ("checkpoint.pt", checkpoint(), vec![]),
        (
            "tied.pt",
            tied(&embedding, &column_major),
            vec![["embed.weight", "head.weight"]],
        ),
        ("python_objects.pt", python_objects(), vec![]),
        ("new_dtypes.pt", super::dtypes::new_dtypes(), vec![]),
        ("batchnorm.pt", super::batchnorm::rust_state_dict(), vec![]),
    ];
    let regenerate = std::env::var_os("CKPT_REGENERATE").is_some();
    for (name, value, tied_keys) in cases {
        let bytes = write_to_vec(&value);
        let mut manifest = serde_json::json!({
            "entries": manifest_of(&value),
            "tied": tied_keys,
            "types": types_of(&value),
        });
        // A state dict's module versions, which PyTorch must read back as `_metadata`.
        if let Some(metadata) = value.metadata() {
            let versions: serde_json::Map<String, serde_json::Value> = metadata
                .iter()
                .map(|(prefix, version)| {
                    (prefix.to_owned(), serde_json::json!({ "version": version }))
                })
                .collect();
            manifest["metadata"] = versions.into();
        }
        let manifest = format!("{}\n", serde_json::to_string_pretty(&manifest).unwrap());
        let path = fixture_path(&format!("written/{name}"));
        let manifest_path = fixture_path(&format!("written/{name}.manifest.json"));
        if regenerate {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            std::fs::write(&manifest_path, &manifest).unwrap();
        }
        assert!(
            std::fs::read(&path).unwrap() == bytes,
            "{name} is stale: run with CKPT_REGENERATE=1"
        );
        assert_eq!(
            std::fs::read_to_string(&manifest_path).unwrap(),
            manifest,
            "{name}"
        );
        // By manifest: bytes, so that NaNs compare equal.
        assert_eq!(manifest_of(&read_file(&path).unwrap()), manifest_of(&value));
    }
}
