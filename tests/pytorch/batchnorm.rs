//! BatchNorm's versioned loading against `batchnorm_load.json`: what PyTorch's
//! `load_state_dict` did with each file of `tests/fixtures/pytorch/batchnorm/` (made by
//! `tests/python/make_pt_fixtures.py`, `batchnorm()`), strictly and not, into a fresh model and
//! a trained one, done by ckpt's layers on the same files.

use ckpt::nn::{
    AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Conv2dConfig, Linear, ReLU, Rng,
};
use ckpt::state::Metadata;
use ckpt::{StateDict, StateDictOptions};
use ndarray::{Array2, Array4, ArrayD, Ix2};
use serde_json::Value as Json;

/// The fixture's `nn.Sequential`, under its keys: `Conv2d(2, 3, 3, padding=1)`,
/// `BatchNorm2d(3)`, `ReLU`, `AdaptiveAvgPool2d(1)`, `Flatten`, `Linear(3, 4)`, `BatchNorm1d(4)`.
#[derive(StateDict)]
struct Net {
    conv: Conv2d,
    bn2d: BatchNorm2d,
    relu: ReLU,
    pool: AdaptiveAvgPool2d,
    flat: Flatten,
    fc: Linear,
    bn1d: BatchNorm1d,
}

/// `nn.Flatten`: no tensors, a module of its own in PyTorch's `_metadata`.
#[derive(StateDict)]
struct Flatten;

impl Net {
    fn new(seed: u64) -> Self {
        let rng = &mut Rng::seed(seed);
        Net {
            conv: Conv2d::new(2, 3, 3, Conv2dConfig::default().padding(1), rng),
            bn2d: BatchNorm2d::new(3),
            relu: ReLU,
            pool: AdaptiveAvgPool2d::new((1, 1)),
            flat: Flatten,
            fc: Linear::new(3, 4, rng),
            bn1d: BatchNorm1d::new(4),
        }
    }

    /// A model whose running statistics have seen `batches` training batches.
    fn trained(batches: usize) -> Self {
        let mut net = Net::new(1);
        let rng = &mut Rng::seed(2);
        for _ in 0..batches {
            let x = Array4::from_shape_fn((4, 2, 5, 5), |_| rng.normal());
            net.forward(&x);
        }
        net
    }

    fn forward(&mut self, x: &Array4<f32>) -> Array2<f32> {
        let y = self.conv.forward(x).unwrap();
        let y = self.bn2d.forward(&y).unwrap();
        let y = self.relu.forward(&y);
        let y = self.pool.forward(&y).unwrap();
        let n = y.shape()[0];
        let y = y.into_shape_with_order((n, 3)).unwrap();
        let y = self.fc.forward(&y).unwrap();
        self.bn1d.forward(&y).unwrap()
    }

    fn counters(&self) -> Json {
        serde_json::json!({
            "bn2d": self.bn2d.num_batches_tracked(),
            "bn1d": self.bn1d.num_batches_tracked(),
        })
    }
}

/// The state dict of the fixture's model as ckpt writes it: `written/batchnorm.pt`, which
/// `tests/python/check_written.py` loads into PyTorch's model, strictly.
pub(crate) fn rust_state_dict() -> ckpt::Value<'static> {
    ckpt::Value::from(Net::new(1).state_dict()).to_owned_value()
}

fn dir() -> String {
    format!(
        "{}/tests/fixtures/pytorch/batchnorm",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn expected() -> Json {
    let path = format!("{}/batchnorm_load.json", dir());
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn tensor(entry: &Json) -> ArrayD<f32> {
    let shape: Vec<usize> = serde_json::from_value(entry["shape"].clone()).unwrap();
    let data: Vec<f32> = entry["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    ArrayD::from_shape_vec(shape, data).unwrap()
}

/// The keys a PyTorch error message quotes after `Missing key(s) in state_dict:`.
fn quoted_missing(error: &str) -> Vec<String> {
    let Some((_, rest)) = error.split_once("Missing key(s) in state_dict:") else {
        return Vec::new();
    };
    let line = rest.lines().next().unwrap_or("");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn strings(value: &Json) -> Vec<String> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

#[test]
fn every_load_pytorch_recorded_behaves_as_in_pytorch() {
    let expected = expected();
    let x = tensor(&expected["tensors"]["x"])
        .into_dimensionality()
        .unwrap();
    let loads = expected["loads"].as_array().unwrap();
    assert_eq!(
        loads.len(),
        24,
        "6 files x strict or not x fresh or trained"
    );
    for row in loads {
        let file = row["file"].as_str().unwrap();
        let strict = row["strict"].as_bool().unwrap();
        let target = row["target"].as_str().unwrap();
        let what = format!("{file}, {target} target, strict={strict}");
        let checkpoint = ckpt::load(format!("{}/{file}", dir())).unwrap();
        let mut net = match target {
            "fresh" => Net::new(1),
            "trained" => Net::trained(5),
            other => panic!("unknown target {other}"),
        };
        assert_eq!(
            net.counters(),
            row["num_batches_tracked_before"],
            "{what}: counters before"
        );
        let before = net.state_dict().to_owned_tensors().unwrap();
        let options = StateDictOptions::new().strict(strict);
        match net.load_state_dict_with(&checkpoint, &options) {
            Ok(report) => {
                assert!(row["ok"].as_bool().unwrap(), "{what}: PyTorch refused it");
                assert_eq!(report.missing_keys, strings(&row["missing_keys"]), "{what}");
                assert_eq!(
                    report.unexpected_keys,
                    strings(&row["unexpected_keys"]),
                    "{what}"
                );
            }
            Err(err) => {
                assert!(
                    !row["ok"].as_bool().unwrap(),
                    "{what}: PyTorch loaded it: {err}"
                );
                let pytorch = row["error"].as_str().unwrap();
                assert_eq!(err.missing_keys(), quoted_missing(pytorch), "{what}: {err}");
                assert!(err.unexpected_keys().is_empty(), "{what}: {err}");
                assert_eq!(
                    net.state_dict().to_owned_tensors().unwrap(),
                    before,
                    "{what}: a failed load changed the model"
                );
            }
        }
        assert_eq!(
            net.counters(),
            row["num_batches_tracked_after"],
            "{what}: counters after"
        );
        let key = format!("y_eval.{file}");
        if target == "fresh" && strict && row["ok"].as_bool().unwrap() {
            net.eval();
            let y = net.forward(&x);
            let want = tensor(&expected["tensors"][&key])
                .into_dimensionality::<Ix2>()
                .unwrap();
            let diff = (&y - &want).iter().fold(0f32, |m, d| m.max(d.abs()));
            assert!(diff <= 1e-5, "{what}: eval output differs by {diff}");
        }
    }
    // Every successful strict load into a fresh model was compared with PyTorch's output.
    let compared = loads
        .iter()
        .filter(|r| r["target"] == "fresh" && r["strict"] == true && r["ok"] == true)
        .count();
    let outputs = expected["tensors"].as_object().unwrap().len() - 1;
    assert_eq!(compared, outputs);
}

#[test]
fn metadata_is_read_as_pytorch_reads_it() {
    let expected = expected();
    for (file, about) in expected["files"].as_object().unwrap() {
        let checkpoint = ckpt::load(format!("{}/{file}", dir())).unwrap();
        let want = &about["metadata_after_torch_load"];
        let got = checkpoint.value().metadata().map(|m| {
            m.iter()
                .map(|(prefix, version)| {
                    (prefix.to_owned(), serde_json::json!({ "version": version }))
                })
                .collect::<serde_json::Map<_, _>>()
        });
        assert_eq!(got.map(Json::Object).unwrap_or(Json::Null), *want, "{file}");
    }
}

#[test]
fn a_rust_state_dict_carries_the_versions_pytorch_writes() {
    let expected = expected();
    let net = Net::new(1);
    let metadata = net.state_dict().metadata().cloned().unwrap();
    let want: Metadata = expected["metadata"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(prefix, entry)| (prefix.clone(), entry["version"].as_i64()))
        .collect();
    assert_eq!(metadata, want);
}

#[test]
fn metadata_survives_ckpt_pt_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let original = ckpt::load(format!("{}/bn_metadata_v1.pt", self::dir())).unwrap();
    let want = original.value().metadata().cloned();
    assert!(want.is_some());
    for name in ["v1.ckpt", "v1.pt"] {
        let path = dir.path().join(name);
        ckpt::save(&original, &path).unwrap();
        let again = ckpt::load(&path).unwrap();
        assert_eq!(again.value().metadata().cloned(), want, "{name}");
        assert_eq!(again.value(), original.value(), "{name}");
        // And it still loads as version 1: the counters are kept.
        let mut net = Net::trained(2);
        let _ = net.load_state_dict(&again, true).unwrap();
        assert_eq!(net.counters(), serde_json::json!({ "bn2d": 2, "bn1d": 2 }));
    }
}
