//! `candle_nn::VarMap` as a source and a target: every format, candle's own files, strict and
//! partial loads, key maps, all or nothing.

use ckpt::candle_core::{DType, Device, Tensor};
use ckpt::candle_nn::{VarBuilder, VarMap};
use ckpt::keymap::KeyMap;
use ckpt::{LoadFrom, LoadOptions, SaveOptions, StateDict, StateDictOptions};

use crate::common::candle::{Mlp, state_bytes, values};

/// A map with the variables of an MLP 3-4-2, filled from a seed-like offset.
fn varmap(fill: f32) -> VarMap {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let _ = Mlp::new(vb, 3, 4, 2).unwrap();
    for (key, var) in varmap.data().lock().unwrap().iter() {
        let n = var.elem_count();
        let seq = Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap();
        let value = ((seq + f64::from(fill)).unwrap() + key.len() as f64).unwrap();
        var.set(&value.reshape(var.shape()).unwrap()).unwrap();
    }
    varmap
}

#[test]
fn a_varmap_saves_to_every_format_and_loads_back() {
    let saved = varmap(1.0);
    let keys: Vec<String> = saved.state_dict().keys().map(str::to_owned).collect();
    assert_eq!(
        keys,
        ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"],
        "sorted"
    );
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "v.ckpt",
        "v.pt",
        "v.safetensors",
        "v.safetensors.index.json",
    ] {
        let path = dir.path().join(name);
        let options = SaveOptions::new().max_shard_bytes(40);
        ckpt::save_with(saved.state_dict(), &path, &options).unwrap();
        let mut loaded = varmap(0.0);
        let report = loaded.load_from(&path).unwrap();
        assert_eq!(report.loaded_keys, keys, "{name}");
        assert_eq!(state_bytes(&loaded), state_bytes(&saved), "{name}");
    }
}

#[test]
fn candle_reads_what_ckpt_writes_and_ckpt_reads_what_candle_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ckpt.safetensors");
    ckpt::save(varmap(1.0).state_dict(), &ours).unwrap();
    let mut by_candle = varmap(0.0);
    by_candle.load(&ours).unwrap();
    assert_eq!(state_bytes(&by_candle), state_bytes(&varmap(1.0)));

    let theirs = dir.path().join("candle.safetensors");
    varmap(2.0).save(&theirs).unwrap();
    let mut by_ckpt = varmap(0.0);
    let _ = by_ckpt.load_from(&theirs).unwrap();
    assert_eq!(state_bytes(&by_ckpt), state_bytes(&varmap(2.0)));
}

#[test]
fn a_strict_load_names_what_is_missing_and_unexpected_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.safetensors");
    let mut state = varmap(5.0).state_dict().to_owned_tensors().unwrap();
    let bias = state.shift_remove("fc2.bias").unwrap();
    state.insert("fc3.bias".to_owned(), bias);
    let value: ckpt::Value<'_> = state.iter().map(|(k, t)| (k.as_str(), t)).collect();
    ckpt::save(value, &path).unwrap();

    let mut target = varmap(0.0);
    let before = state_bytes(&target);
    let err = target.load_from(&path).unwrap_err().to_string();
    assert!(
        err.ends_with(
            "Error(s) in loading state_dict for VarMap:\n\tMissing key(s) in state_dict: \
             \"fc2.bias\".\n\tUnexpected key(s) in state_dict: \"fc3.bias\".\n\tDid you mean \
             \"fc3.bias\" for missing \"fc2.bias\"?"
        ),
        "{err}"
    );
    assert_eq!(state_bytes(&target), before, "nothing was written");

    // Non-strict: what matches loads, the rest is in the report.
    let partial = StateDictOptions::new().strict(false);
    let report = target
        .load_from_with(&path, &LoadOptions::new(), &partial)
        .unwrap();
    assert_eq!(report.missing_keys, ["fc2.bias"]);
    assert_eq!(report.unexpected_keys, ["fc3.bias"]);
    let loaded = state_bytes(&target);
    let expected = state_bytes(&varmap(5.0));
    assert_eq!(loaded[1], expected[1], "fc1.weight loaded");
    assert_eq!(loaded[2], before[2], "fc2.bias kept");
}

#[test]
fn a_load_with_one_bad_tensor_changes_no_variable() {
    // candle's own `VarMap::load` sets the variables one by one and stops at the first that
    // fails, leaving those before it changed; ckpt checks every one first.
    let mut state = varmap(9.0).state_dict().to_owned_tensors().unwrap();
    state.insert(
        "fc2.weight".to_owned(),
        ckpt::Tensor::zeros(ckpt::DType::F32, &[4, 2]).unwrap(),
    );
    let mut target = varmap(0.0);
    let before = state_bytes(&target);
    let err = target.load_state_dict(&state, true).unwrap_err();
    assert_eq!(err.problems().len(), 1, "one problem: {err}");
    assert!(err.to_string().contains("size mismatch for fc2.weight: copying a param with shape [4, 2] from checkpoint, the shape in current model is [2, 4]."));
    assert_eq!(state_bytes(&target), before);
}

#[test]
fn a_key_map_loads_a_data_parallel_checkpoint_into_a_varmap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dp.pt");
    let prefixed = KeyMap::new().strip_prefix("module."); // saving runs it backwards
    ckpt::save(
        prefixed.apply_to_save(varmap(3.0).state_dict()).unwrap(),
        &path,
    )
    .unwrap();
    assert!(
        ckpt::inspect(&path).unwrap().tensors[0]
            .key
            .starts_with("module.")
    );

    let mut target = varmap(0.0);
    let err = target.load_from(&path).unwrap_err().to_string();
    assert!(err.contains("module."), "a hint names the prefix: {err}");
    let options = StateDictOptions::new().key_map(KeyMap::data_parallel());
    let _ = target
        .load_from_with(&path, &LoadOptions::new(), &options)
        .unwrap();
    assert_eq!(state_bytes(&target), state_bytes(&varmap(3.0)));
}

#[test]
fn a_varmaps_state_dict_does_not_hold_its_lock() {
    let map = varmap(1.0);
    let state = map.state_dict();
    // With the lock held, this would hang.
    let data = map.data().lock().unwrap();
    let fc1 = data["fc1.bias"].clone();
    drop(data);
    fc1.set(&Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(
        values(&Tensor::new(state["fc1.bias"].to_f64_vec().unwrap(), &Device::Cpu).unwrap()),
        [0.0; 4]
    );
}
