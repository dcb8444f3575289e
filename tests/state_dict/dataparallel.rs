//! `ckpt::nn::DataParallel` (PyTorch's recipe 6.4): `module.` keys exactly as PyTorch's, files
//! saved from the wrapper loading into plain models and back, and modes passing through.
//!
//! `tests/fixtures/pytorch/dataparallel_state_dict.pt.manifest.json` lists the keys, dtypes and
//! shapes of `dataparallel_state_dict.pt`, written by real PyTorch from
//! `nn.DataParallel(nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4)))`. Until ckpt reads
//! PyTorch files, the tests write a file with the same keys, dtypes and shapes with ckpt.

use ckpt::LoadFrom;
use ckpt::StateDictOptions;
use ckpt::keymap::KeyMap;
use ckpt::nn::DataParallel;
use ckpt::nn::{BatchNorm1d, Layer, Linear, Rng, Sequential};
use ckpt::{Device, LoadOptions, StateDict, Tensor};
use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Deserialize)]
struct Manifest {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    key: String,
    dtype: String,
    shape: Vec<usize>,
}

fn manifest() -> Vec<Entry> {
    let path = format!(
        "{}/tests/fixtures/pytorch/dataparallel_state_dict.pt.manifest.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let manifest: Manifest = serde_json::from_str(&text).unwrap();
    manifest.entries
}

/// The manifest's tensors with distinct values: what PyTorch saved, as far as keys go.
fn pytorch_like_state() -> IndexMap<String, Tensor> {
    manifest()
        .iter()
        .enumerate()
        .map(|(n, e)| {
            let len: usize = e.shape.iter().product();
            let tensor = match e.dtype.as_str() {
                "F32" => Tensor::from_vec(
                    (0..len).map(|i| (n * 10 + i) as f32 * 0.25 + 1.0).collect(),
                    &e.shape,
                ),
                "I64" => Tensor::from_vec(vec![n as i64 + 40; len], &e.shape),
                other => panic!("unexpected dtype {other}"),
            };
            (e.key.clone(), tensor.unwrap())
        })
        .collect()
}

/// `nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4))`.
fn plain(seed: u64) -> Sequential {
    let rng = &mut Rng::seed(seed);
    Sequential::new()
        .push(Linear::new(8, 4, rng))
        .push(BatchNorm1d::new(4))
}

fn wrapped(seed: u64) -> DataParallel<Sequential> {
    DataParallel::with_device_ids(plain(seed), vec![0, 1])
}

/// Every tensor of a model by key, as `f64` values.
fn values(model: &dyn StateDict) -> Vec<(String, Vec<f64>)> {
    model
        .state_dict()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_f64_vec().unwrap()))
        .collect()
}

/// `values` with `prefix` put before every key.
fn prefixed(prefix: &str, values: Vec<(String, Vec<f64>)>) -> Vec<(String, Vec<f64>)> {
    values
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
}

#[test]
fn the_wrappers_keys_are_pytorchs() {
    let dp = wrapped(0);
    let layout: Vec<(String, String, Vec<usize>)> = dp
        .state_dict()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.dtype().to_string(), v.shape().to_vec()))
        .collect();
    let expected: Vec<(String, String, Vec<usize>)> = manifest()
        .into_iter()
        .map(|e| (e.key, e.dtype, e.shape))
        .collect();
    assert_eq!(layout, expected);
    assert_eq!(
        prefixed("module.", values(&dp.module)),
        values(&dp),
        "the wrapper's state dict is the module's under `module.`"
    );
}

#[test]
fn a_file_with_module_keys_loads_into_the_wrapper_and_a_plain_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dataparallel_state_dict.ckpt");
    let state = pytorch_like_state();
    ckpt::save(state.iter().collect::<ckpt::state::TensorMap<'_>>(), &path).unwrap();
    let file = ckpt::load(&path).unwrap();
    let expected: Vec<(String, Vec<f64>)> = state
        .iter()
        .map(|(k, v)| (k.clone(), v.view().to_f64_vec().unwrap()))
        .collect();

    // Into a wrapper: strictly, as it is.
    let mut dp = wrapped(1);
    let _ = dp.load_state_dict(&file, true).unwrap();
    assert_eq!(values(&dp), expected);

    // Into a plain model: refused with the hint, then loaded with the one option it names.
    let mut model = plain(2);
    let before = values(&model);
    let err = model.load_state_dict(&file, true).unwrap_err();
    // Not `1.num_batches_tracked`: the file records no version for the batch norm at `1`, which
    // then keeps its own counter, as in PyTorch (whose message lists the same 6 keys).
    assert_eq!(err.missing_keys().len(), 6);
    assert!(!err.missing_keys().contains(&"1.num_batches_tracked"));
    assert_eq!(err.unexpected_keys()[0], "module.0.weight");
    assert_eq!(
        err.hints(),
        [
            "every unexpected key starts with \"module.\" (the prefix nn.DataParallel adds); with \
             that prefix stripped the load succeeds: load with \
             `StateDictOptions::new().key_map(KeyMap::data_parallel())`."
        ]
    );
    assert!(
        err.to_string()
            .starts_with("Error(s) in loading state_dict for Sequential:\n\tMissing key(s)")
    );
    assert_eq!(values(&model), before, "a refused load changes nothing");

    let options = StateDictOptions::new().key_map(KeyMap::data_parallel());
    let report = model.load_state_dict_with(&file, &options).unwrap();
    assert!(report.is_complete());
    assert_eq!(prefixed("module.", values(&model)), expected);

    // Straight from the file, with the auto-detect option instead.
    let mut streamed = plain(3);
    let report = streamed
        .load_from_with(
            &path,
            &LoadOptions::new(),
            &StateDictOptions::new().auto_prefix(true),
        )
        .unwrap();
    assert_eq!(
        report.auto_prefix.as_deref(),
        Some("strip_prefix(\"module.\")")
    );
    assert_eq!(prefixed("module.", values(&streamed)), expected);
}

#[test]
fn saving_the_inner_module_loads_into_a_plain_model_and_back_into_a_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.ckpt");
    let mut dp = wrapped(4);
    dp.module
        .forward(ndarray::ArrayD::from_elem(vec![3, 8], 0.5))
        .unwrap();
    ckpt::save(dp.module.state_dict(), &path).unwrap(); // the recipe's recommended save
    assert_eq!(ckpt::inspect(&path).unwrap().tensors[0].key, "0.weight");

    let mut model = plain(5);
    let _ = model.load_from(&path).unwrap();
    assert_eq!(values(&model), values(&dp.module));

    // A plain file into a wrapper: the hint, then auto-detect adds `module.`.
    let mut back = wrapped(6);
    let err = back.load_from(&path).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("Error(s) in loading state_dict for DataParallel:"),
        "{message}"
    );
    assert!(
        message.ends_with(
            "Hint: every missing key starts with \"module.\" (the prefix nn.DataParallel adds) \
             and the checkpoint has them without it; load the checkpoint into the wrapped module \
             instead, or load with `StateDictOptions::new().auto_prefix(true)`."
        ),
        "{message}"
    );
    let report = back
        .load_from_with(
            &path,
            &LoadOptions::new(),
            &StateDictOptions::new().auto_prefix(true),
        )
        .unwrap();
    assert_eq!(
        report.auto_prefix.as_deref(),
        Some("add_prefix(\"module.\")")
    );
    assert_eq!(values(&back), values(&dp));

    // Or into the wrapped module itself, as PyTorch users do.
    let mut inner = wrapped(7);
    let _ = inner.module.load_from(&path).unwrap();
    assert_eq!(values(&inner), values(&dp));
}

#[test]
fn a_wrapper_saved_whole_round_trips_through_a_plain_model() {
    let dir = tempfile::tempdir().unwrap();
    let dp = wrapped(8);
    let wrapped_file = dir.path().join("wrapped.ckpt");
    ckpt::save(dp.state_dict(), &wrapped_file).unwrap();

    let mut model = plain(9);
    let _ = model
        .load_from_with(
            &wrapped_file,
            &LoadOptions::new(),
            &StateDictOptions::new().auto_prefix(true),
        )
        .unwrap();
    assert_eq!(prefixed("module.", values(&model)), values(&dp));

    // The plain model saved with `module.` put back, for a wrapper elsewhere.
    let plain_file = dir.path().join("plain.ckpt");
    let for_wrapper = KeyMap::data_parallel()
        .apply_to_save(model.state_dict())
        .unwrap();
    ckpt::save(for_wrapper, &plain_file).unwrap();
    let mut again = wrapped(10);
    let _ = again.load_from(&plain_file).unwrap();
    assert_eq!(values(&again), values(&dp));
}

#[test]
fn modes_and_forward_passes_go_through_the_wrapper() {
    let mut dp = wrapped(11);
    assert!(dp.is_training());
    dp.eval();
    assert!(!dp.is_training());
    assert!(!dp.module.is_training(), "eval() reaches the wrapped model");
    dp.train();
    assert!(dp.module.is_training());

    let x = ndarray::ArrayD::from_shape_fn(vec![4, 8], |i| (i[0] * 8 + i[1]) as f32 * 0.1);
    let mut reference = plain(11);
    let y = dp.forward_dyn(x.clone()).unwrap();
    assert_eq!(y, reference.forward(x).unwrap());
    assert_eq!(
        values(&dp.module),
        values(&reference),
        "the training forward updated the wrapped model's running statistics"
    );
}

#[test]
fn device_ids_are_recorded_as_pytorch_does() {
    let dp = wrapped(0);
    assert_eq!(dp.device_ids, [0, 1]);
    assert_eq!(dp.devices(), [Device::Cuda(0), Device::Cuda(1)]);
    assert_eq!(dp.output_device().to_string(), "cuda:0");
    let cpu = DataParallel::new(plain(0));
    assert!(cpu.device_ids.is_empty());
    assert_eq!(cpu.output_device(), Device::Cpu);
    assert_eq!(cpu.module_name(), "DataParallel");
    assert_eq!(values(&cpu.into_inner()), values(&plain(0)));
}
