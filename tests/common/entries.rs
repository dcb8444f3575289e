//! The entry points a hostile file goes through, by name, each returning what it got or the
//! error's message: shared by the hostile-input test and its benchmark.

use std::collections::BTreeMap;
use std::path::Path;

use ckpt::{DType, LoadFrom, LoadOptions, StateDict, StateDictOptions, Tensor};
use ndarray::Array1;

use super::hostile;

/// The entry points, in the order they are run.
pub const ENTRIES: [&str; 4] = ["load", "inspect", "load_from", "load_state_dict"];

/// The fixed model every file is loaded into: the control files' keys and shapes.
#[derive(StateDict)]
struct Tiny {
    weight: Tensor,
    bias: Array1<f32>,
}

impl Tiny {
    fn new() -> Self {
        Tiny {
            weight: Tensor::zeros(DType::F32, &[2, 2]).expect("a small shape"),
            bias: Array1::zeros(2),
        }
    }

    /// `weight=[...] bias=[...]`, to compare with the control files' values.
    fn values(&self) -> String {
        let weight = self.weight.view().to_f64_vec().unwrap_or_default();
        format!("weight={weight:?} bias={:?}", self.bias.to_vec())
    }
}

/// A model of many long keys, none of them in the file: for the did-you-mean class.
fn wide(scale: usize) -> BTreeMap<String, Tensor> {
    hostile::did_you_mean_model_keys(scale)
        .into_iter()
        .map(|k| (k, Tensor::scalar(0.0f32)))
        .collect()
}

/// Runs `entry` on the file at `path`: `Ok` with what it got, or the error's message.
/// `scale` sizes the wide model of the did-you-mean cases (`wide` entries).
pub fn run(entry: &str, path: &Path, scale: usize) -> Result<String, String> {
    let message = |e: &dyn std::fmt::Display| e.to_string();
    match entry {
        "load" => {
            let checkpoint = ckpt::load(path).map_err(|e| message(&e))?;
            // A first access to every tensor: its bytes and, for small ones, its values.
            let mut described = Vec::new();
            let mut bytes = 0;
            for (key, tensor) in checkpoint.tensors() {
                bytes += tensor.to_le_bytes().map_err(|e| message(&e))?.len();
                if tensor.numel() <= 8 {
                    let values = tensor.to_f64_vec().map_err(|e| message(&e))?;
                    described.push(format!("{key}={values:?}"));
                }
            }
            Ok(format!("{bytes} bytes: {}", described.join(" ")))
        }
        "inspect" => {
            let header = ckpt::inspect(path).map_err(|e| message(&e))?;
            Ok(format!(
                "{} tensors, {} values",
                header.tensors.len(),
                header.values.len()
            ))
        }
        "load_from" => {
            let mut model = Tiny::new();
            let _ = model.load_from(path).map_err(|e| message(&e))?;
            Ok(model.values())
        }
        "load_state_dict" => {
            let checkpoint = ckpt::load(path).map_err(|e| message(&e))?;
            let mut model = Tiny::new();
            let _ = model
                .load_state_dict(&checkpoint, true)
                .map_err(|e| message(&e))?;
            Ok(model.values())
        }
        "load_from(wide)" => {
            let mut model = wide(scale);
            let options = (LoadOptions::new(), StateDictOptions::new());
            let report = model
                .load_from_with(path, &options.0, &options.1)
                .map_err(|e| message(&e))?;
            Ok(report.to_string())
        }
        "load_state_dict(wide)" => {
            let checkpoint = ckpt::load(path).map_err(|e| message(&e))?;
            let mut model = wide(scale);
            let report = model
                .load_state_dict(&checkpoint, true)
                .map_err(|e| message(&e))?;
            Ok(report.to_string())
        }
        other => Err(format!("no entry point {other}")),
    }
}

/// What the control files hold, as [`run`] describes it after `load_from`/`load_state_dict`.
pub const CONTROL_VALUES: &str = "weight=[0.0, 1.0, 2.0, 3.0] bias=[4.0, 5.0]";

/// The entry points a case goes through: the did-you-mean class also into the wide model.
pub fn entries_for(case: &hostile::Case) -> Vec<&'static str> {
    let mut entries = ENTRIES.to_vec();
    if case.class == "did-you-mean" {
        entries.extend(["load_from(wide)", "load_state_dict(wide)"]);
    }
    entries
}
