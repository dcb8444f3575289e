//! candle models through ckpt (the `candle` feature): a struct of `candle_nn` layers derives
//! `StateDict` and trains with candle's own optimizer; then it saves to any format, loads into
//! a fresh model with the same outputs, warm-starts under a new head, runs a network PyTorch
//! trained, and a `VarMap` loads all or nothing. Each step shows, in a comment, the candle code
//! it replaces.
//!
//! The PyTorch file is `tests/fixtures/candle/convnet.pt`, written by
//! `tests/python/make_candle_fixtures.py` with `torch.save(net.state_dict())`; `io.pt` holds an
//! input and PyTorch's output for it.
//!
//! Run it with `cargo run --example candle --features candle`; it exits non-zero if anything
//! differs.

use ckpt::candle_core::{self, DType, Device, Module, ModuleT, Tensor};
use ckpt::candle_nn::{self, AdamW, Optimizer, VarBuilder, VarMap};
use ckpt::{LoadFrom, LoadOptions, StateDict, StateDictOptions};

/// PyTorch's `ConvNet` of the fixture, in candle: keys `conv.weight`, `bn.running_mean`, …
/// come from the field names; no `vb.pp("…")` string is needed to save or load it.
#[derive(StateDict)]
struct ConvNet {
    conv: candle_nn::Conv2d,
    bn: candle_nn::BatchNorm,
    up: candle_nn::ConvTranspose2d,
    fc: candle_nn::Linear,
}

impl ConvNet {
    fn new(vb: VarBuilder, classes: usize) -> candle_core::Result<Self> {
        let padded = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let doubled = candle_nn::ConvTranspose2dConfig {
            stride: 2,
            ..Default::default()
        };
        Ok(ConvNet {
            conv: candle_nn::conv2d(3, 4, 3, padded, vb.pp("conv"))?,
            bn: candle_nn::batch_norm(4, 1e-5, vb.pp("bn"))?,
            up: candle_nn::conv_transpose2d(4, 2, 2, doubled, vb.pp("up"))?,
            fc: candle_nn::linear(2 * 8 * 8, classes, vb.pp("fc"))?,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let x = self.bn.forward_t(&self.conv.forward(x)?, train)?.relu()?;
        self.fc.forward(&self.up.forward(&x)?.flatten_from(1)?)
    }
}

fn fresh(classes: usize) -> candle_core::Result<(VarMap, ConvNet)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = ConvNet::new(vb, classes)?;
    Ok((varmap, net))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let x = (Tensor::randn(0f32, 1., (32, 3, 4, 4), &Device::Cpu)? + 0.5)?;
    let labels: Vec<u32> = (0..32).map(|i| i % 5).collect();
    let labels = Tensor::from_vec(labels, 32, &Device::Cpu)?;

    // Train a few steps with candle's own optimizer.
    let (varmap, trained) = fresh(5)?;
    let mut adamw = AdamW::new_lr(varmap.all_vars(), 1e-2)?;
    for step in 0..5 {
        let loss = candle_nn::loss::cross_entropy(&trained.forward(&x, true)?, &labels)?;
        adamw.backward_step(&loss)?;
        println!("step {step}: loss {:.4}", loss.to_scalar::<f32>()?);
    }
    let expected = trained.forward(&x, false)?;

    // candle today: `varmap.save("net.safetensors")?` (safetensors only). With ckpt, any format,
    // written atomically: `.ckpt` (checksummed), `.pt` (for PyTorch), `.safetensors`.
    for name in ["net.ckpt", "net.pt", "net.safetensors"] {
        let path = dir.path().join(name);
        ckpt::save(trained.state_dict(), &path)?;

        // candle today: `fresh_map.load(path)?`, which stops at the first key that fails,
        // leaving the ones before it overwritten, and ignores keys the map lacks. With ckpt,
        // every key, shape and dtype is checked first, in PyTorch's words.
        let (_, mut model) = fresh(5)?;
        let report = model.load_from(&path)?;
        let diff = max_abs_diff(&model.forward(&x, false)?, &expected)?;
        println!(
            "{name}: {} tensors loaded, max |output difference| = {diff}",
            report.loaded_keys.len()
        );
        assert_eq!(diff, 0.0, "{name}: outputs differ after the load");
    }

    // A warm start under a new head: the backbone loads, the two-class head keeps its
    // initialisation, and the report says which tensors were skipped.
    let path = dir.path().join("net.safetensors");
    let (_, mut two_classes) = fresh(2)?;
    let refused = two_classes.load_from(&path).unwrap_err();
    println!("strict, into a two-class net:\n{refused}");
    let options = StateDictOptions::new().skip_shape_mismatches(true);
    let report = two_classes.load_from_with(&path, &LoadOptions::new(), &options)?;
    println!("warm start: skipped {:?}", report.skipped_shape_mismatches);
    assert_eq!(report.skipped_shape_mismatches, ["fc.weight", "fc.bias"]);

    // A network PyTorch trained, in its candle twin, strictly: PyTorch's keys are the fields'.
    // candle today: `VarBuilder::from_pth(path, …)` and a `vb.pp("…")` per layer.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/candle");
    let (_, mut twin) = fresh(5)?;
    let report = twin.load_from(format!("{fixtures}/convnet.pt"))?;
    let io = ckpt::load(format!("{fixtures}/io.pt"))?;
    let tensor = |key: &str| -> Result<Tensor, Box<dyn std::error::Error>> {
        let view = io[key].as_tensor().ok_or(format!("no tensor {key}"))?;
        let values: Vec<f32> = view.to_f64_vec()?.iter().map(|&v| v as f32).collect();
        Ok(Tensor::from_vec(values, view.shape(), &Device::Cpu)?)
    };
    let diff = max_abs_diff(
        &twin.forward(&tensor("convnet_x")?, false)?,
        &tensor("convnet_y")?,
    )?;
    println!(
        "convnet.pt from PyTorch: {} tensors loaded, max |candle - torch| = {diff:.2e}",
        report.loaded_keys.len()
    );
    assert!(diff < 1e-5, "PyTorch's outputs differ by {diff}");

    // A `VarMap` is a state dict too: its variables load in place, so the optimizer over
    // them continues from the loaded values. It has no `bn.num_batches_tracked` (candle's
    // batch norm keeps no counter), which a non-strict load reports.
    let (mut map, _) = fresh(5)?;
    let partial = StateDictOptions::new().strict(false);
    let report = map.load_from_with(dir.path().join("net.pt"), &LoadOptions::new(), &partial)?;
    assert_eq!(report.unexpected_keys, ["bn.num_batches_tracked"]);
    let data = map.data().lock().map_err(|_| "a poisoned VarMap")?;
    let loaded = &data["fc.weight"];
    assert_eq!(max_abs_diff(loaded.as_tensor(), trained.fc.weight())?, 0.0);
    println!("VarMap: {} variables loaded from net.pt", data.len());
    Ok(())
}
