//! Recipe 6.4 of PyTorch's guide to saving models, in Rust: a model trained inside
//! `DataParallel` saves keys that start with `module.`; they load into a plain model, and a
//! plain model's file into a wrapper, with one option. Without it the load is refused with a
//! hint that names the option.
//!
//! Run it with `cargo run --example dataparallel`; it exits non-zero if anything differs.

use ckpt::LoadFrom;
use ckpt::StateDictOptions;
use ckpt::keymap::KeyMap;
use ckpt::nn::DataParallel;
use ckpt::nn::{BatchNorm1d, Linear, Rng, Sequential};
use ckpt::{LoadOptions, StateDict};
use ndarray::ArrayD;

/// `nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4))`.
fn model(seed: u64) -> Sequential {
    let rng = &mut Rng::seed(seed);
    Sequential::new()
        .push(Linear::new(8, 4, rng))
        .push(BatchNorm1d::new(4))
}

/// Every tensor by key, as `f64` values.
fn values(model: &dyn StateDict) -> Vec<(String, Vec<f64>)> {
    model
        .state_dict()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_f64_vec().unwrap()))
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // torch: model = nn.DataParallel(model, device_ids=[0, 1]); a training step.
    let mut dp = DataParallel::with_device_ids(model(1), vec![0, 1]);
    dp.module.forward(ArrayD::from_shape_fn(vec![5, 8], |i| {
        (i[0] * 8 + i[1]) as f32 * 0.05
    }))?;
    let devices: Vec<String> = dp.devices().iter().map(ToString::to_string).collect();
    println!("DataParallel on {}", devices.join(", "));

    // torch: torch.save(model.state_dict(), PATH): every key starts with `module.`.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("dataparallel.ckpt");
    ckpt::save(dp.state_dict(), &path)?;
    let keys: Vec<String> = ckpt::inspect(&path)?
        .tensors
        .into_iter()
        .map(|i| i.key)
        .collect();
    println!("saved keys: {keys:?}");
    assert_eq!(keys[0], "module.0.weight");

    // Into a plain model without the option: refused, every problem and the hint listed.
    let mut plain = model(2);
    let before = values(&plain);
    let err = plain
        .load_from(&path)
        .expect_err("the prefixed keys do not fit a plain model");
    println!("{err}");
    assert!(err.to_string().contains(
        "Hint: every unexpected key starts with \"module.\" (the prefix nn.DataParallel adds)"
    ));
    assert_eq!(values(&plain), before, "the refused load changed nothing");

    // With the option the hint names, or with auto-detection.
    let report = plain.load_from_with(
        &path,
        &LoadOptions::new(),
        &StateDictOptions::new().key_map(KeyMap::data_parallel()),
    )?;
    println!("into a plain model: {report}");
    assert_eq!(values(&plain), values(&dp.module));
    let mut detected = model(3);
    let _ = detected.load_from_with(
        &path,
        &LoadOptions::new(),
        &StateDictOptions::new().auto_prefix(true),
    )?;
    assert_eq!(values(&detected), values(&dp.module));

    // And back: a plain model's file (what the recipe's `model.module.state_dict()` saves) into
    // a fresh wrapper.
    let plain_path = dir.path().join("plain.ckpt");
    ckpt::save(plain.state_dict(), &plain_path)?;
    let mut back = DataParallel::new(model(4));
    let report = back.load_from_with(
        &plain_path,
        &LoadOptions::new(),
        &StateDictOptions::new().auto_prefix(true),
    )?;
    println!(
        "into a wrapper: {report} ({})",
        report.auto_prefix.as_deref().unwrap_or("-")
    );
    assert_eq!(values(&back), values(&dp));

    back.eval();
    assert!(
        !back.module.is_training(),
        "eval() reaches the wrapped model"
    );
    println!("weights equal both ways");
    Ok(())
}
