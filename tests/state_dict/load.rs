//! `load_state_dict`: PyTorch's strict and non-strict semantics, made transactional.

use ckpt::StateDictOptions;
use ckpt::keymap::KeyMap;
use ckpt::loading::LoadProblem;
use ckpt::state::TensorMap;
use ckpt::{DType, DTypePolicy, StateDict, Tensor};
use indexmap::IndexMap;
use ndarray::{Array1, Array2, array};

#[derive(StateDict, Debug, Clone, PartialEq)]
struct Fc {
    weight: Array2<f32>,
    bias: Array1<f32>,
}

#[derive(StateDict, Debug, Clone, PartialEq)]
struct Net {
    conv: Fc,
    fc: Fc,
    #[state(buffer)]
    steps: Array1<i64>,
}

fn fc(out: usize, inp: usize, seed: f32) -> Fc {
    Fc {
        weight: Array2::from_shape_fn((out, inp), |(i, j)| seed * 100.0 + (i * inp + j) as f32),
        bias: Array1::from_shape_fn(out, |i| seed - i as f32),
    }
}

fn net(seed: f32) -> Net {
    Net {
        conv: fc(2, 3, seed),
        fc: fc(4, 2, seed + 1.0),
        steps: array![seed as i64],
    }
}

/// Owned copies of a model's tensors, to edit into a bad state dict.
fn owned(model: &Net) -> IndexMap<String, Tensor> {
    model.state_dict().to_owned_tensors().unwrap()
}

/// Every byte of every tensor, to prove a failed load changed nothing.
fn bytes(model: &Net) -> Vec<(String, Vec<u8>)> {
    model
        .state_dict()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_le_bytes().unwrap().into_owned()))
        .collect()
}

#[test]
fn strict_load_copies_every_tensor() {
    let source = net(1.0);
    let mut target = net(7.0);
    assert_ne!(source, target);
    let report = target.load_state_dict(&source.state_dict(), true).unwrap();
    assert_eq!(target, source);
    assert!(report.is_complete());
    assert_eq!(
        report.loaded_keys,
        ["conv.weight", "conv.bias", "fc.weight", "fc.bias", "steps"]
    );
    assert_eq!(
        report.to_string(),
        "<All keys matched successfully: 5 loaded>"
    );
}

#[test]
fn strict_errors_list_everything_in_pytorchs_words() {
    let mut state = owned(&net(1.0));
    state.shift_remove("fc.bias");
    state.insert(
        "fc.biass".into(),
        Tensor::from(array![1.0f32, 2.0, 3.0, 4.0]),
    );
    state.insert(
        "conv.weight".into(),
        Tensor::from(Array2::<f32>::zeros((2, 5))),
    );
    state.insert("steps".into(), Tensor::from(array![1.5f32]));
    let mut model = net(2.0);
    let before = bytes(&model);

    let err = model.load_state_dict(&state, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Error(s) in loading state_dict for Net:\n\
         \tMissing key(s) in state_dict: \"fc.bias\".\n\
         \tUnexpected key(s) in state_dict: \"fc.biass\".\n\
         \tsize mismatch for conv.weight: copying a param with shape [2, 5] from checkpoint, \
         the shape in current model is [2, 3].\n\
         \tdtype mismatch for steps: copying a param of dtype F32 from checkpoint, the dtype in \
         current model is I64 (integer, bool and float tensors do not convert).\n\
         \tDid you mean \"fc.biass\" for missing \"fc.bias\"?"
    );
    assert_eq!(err.missing_keys(), ["fc.bias"]);
    assert_eq!(err.unexpected_keys(), ["fc.biass"]);
    assert_eq!(err.module_name(), "Net");
    assert_eq!(bytes(&model), before, "a failed load changes nothing");
}

#[test]
fn non_strict_reports_missing_and_unexpected() {
    let source = net(1.0);
    let mut state = source.state_dict();
    state.remove("conv.bias");
    let extra = Tensor::scalar(3i32);
    state.insert("head.weight", &extra);
    let mut model = net(5.0);
    let untouched_bias = model.conv.bias.clone();

    let report = model.load_state_dict(&state, false).unwrap();
    assert_eq!(report.missing_keys, ["conv.bias"]);
    assert_eq!(report.unexpected_keys, ["head.weight"]);
    assert!(!report.is_complete());
    assert_eq!(model.conv.weight, source.conv.weight);
    assert_eq!(model.fc, source.fc);
    assert_eq!(
        model.conv.bias, untouched_bias,
        "what was missing keeps its value"
    );
    assert_eq!(
        report.to_string(),
        "4 loaded; missing keys: [\"conv.bias\"]; unexpected keys: [\"head.weight\"]"
    );
}

#[test]
fn non_strict_still_refuses_shape_mismatches() {
    let mut state = owned(&net(1.0));
    state.insert(
        "fc.weight".into(),
        Tensor::from(Array2::<f32>::zeros((10, 4))),
    );
    let mut model = net(3.0);
    let before = bytes(&model);
    let err = model.load_state_dict(&state, false).unwrap_err();
    assert_eq!(
        err.problems(),
        [LoadProblem::SizeMismatch {
            key: "fc.weight".into(),
            checkpoint: vec![10, 4],
            model: vec![4, 2],
        }]
    );
    assert_eq!(bytes(&model), before);
}

#[test]
fn floats_cast_to_the_models_dtype_unless_refused() {
    let source = net(1.0);
    let mut state = owned(&source);
    state["conv.weight"] = state["conv.weight"].to_dtype(DType::F64).unwrap();
    state["fc.bias"] = state["fc.bias"].to_dtype(DType::BF16).unwrap();
    state["steps"] = state["steps"].to_dtype(DType::I16).unwrap();

    let mut exact = net(4.0);
    let before = bytes(&exact);
    let options = StateDictOptions::new().dtype_policy(DTypePolicy::Exact);
    let err = exact.load_state_dict_with(&state, &options).unwrap_err();
    assert_eq!(err.problems().len(), 3);
    assert!(err.to_string().contains(
        "dtype mismatch for conv.weight: copying a param of dtype F64 from checkpoint, the dtype \
         in current model is F32 (casts are refused by DTypePolicy::Exact)."
    ));
    assert_eq!(bytes(&exact), before);

    let mut model = net(4.0);
    let report = model.load_state_dict(&state, true).unwrap();
    assert_eq!(report.cast_keys, ["conv.weight", "fc.bias", "steps"]);
    assert_eq!(
        model, source,
        "the values survive F32 -> F64/BF16 -> F32 exactly"
    );
}

#[test]
fn integers_cast_only_when_every_value_fits() {
    #[derive(StateDict)]
    struct Small {
        counts: Array1<u8>,
    }
    let mut model = Small {
        counts: array![1, 2, 3],
    };
    let mut state = IndexMap::new();
    state.insert("counts".to_owned(), Tensor::from(array![10i64, 256, 12]));
    let err = model.load_state_dict(&state, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Error(s) in loading state_dict for Small:\n\
         \tfor counts: cannot cast I64 to U8: value 256 at element 1 is out of range."
    );
    assert_eq!(model.counts, array![1, 2, 3]);
    state.insert("counts".to_owned(), Tensor::from(array![10i64, 255, 12]));
    let _ = model.load_state_dict(&state, true).unwrap();
    assert_eq!(model.counts, array![10, 255, 12]);
}

#[test]
fn dataparallel_prefix_is_diagnosed() {
    let source = net(1.0);
    let state: IndexMap<String, Tensor> = owned(&source)
        .into_iter()
        .map(|(k, v)| (format!("module.{k}"), v))
        .collect();
    let mut model = net(2.0);
    let err = model.load_state_dict(&state, true).unwrap_err();
    assert_eq!(err.missing_keys().len(), 5);
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
            .ends_with(&format!("\n\tHint: {}", err.hints()[0]))
    );

    // The key map a hint names, as a source adapter: one sub-module out of a bigger state dict.
    let stripped = KeyMap::new()
        .select_prefix("module.")
        .apply(&state)
        .unwrap();
    let _ = model.load_state_dict(&stripped, true).unwrap();
    assert_eq!(model, source);
}

#[test]
fn compile_and_nested_checkpoint_prefixes_are_diagnosed() {
    let source = net(1.0);
    for (prefix, origin) in [
        ("_orig_mod.", " (the prefix torch.compile adds)"),
        ("model_state_dict.", ""),
    ] {
        let state: IndexMap<String, Tensor> = owned(&source)
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect();
        let err = net(2.0).load_state_dict(&state, true).unwrap_err();
        assert!(
            err.hints()[0].starts_with(&format!(
                "every unexpected key starts with \"{prefix}\"{origin};"
            )),
            "{err}"
        );
    }
}

#[test]
fn a_prefix_that_would_not_fix_the_load_gets_no_hint() {
    let mut state: IndexMap<String, Tensor> = owned(&net(1.0))
        .into_iter()
        .map(|(k, v)| (format!("module.{k}"), v))
        .collect();
    state.insert(
        "module.fc.weight".into(),
        Tensor::from(Array2::<f32>::zeros((1, 1))),
    );
    let err = net(2.0).load_state_dict(&state, true).unwrap_err();
    assert!(err.hints().is_empty(), "{err}");
}

#[test]
fn a_wrapped_model_is_told_about_a_plain_checkpoint() {
    #[derive(StateDict)]
    struct Wrapped {
        module: Net,
    }
    let source = net(1.0);
    let mut wrapped = Wrapped { module: net(3.0) };
    let err = wrapped
        .load_state_dict(&source.state_dict(), true)
        .unwrap_err();
    assert_eq!(
        err.hints(),
        [
            "every missing key starts with \"module.\" (the prefix nn.DataParallel adds) and the \
          checkpoint has them without it; load the checkpoint into the wrapped module instead, \
          or load with `StateDictOptions::new().auto_prefix(true)`."
        ]
    );
    let _ = wrapped
        .module
        .load_state_dict(&source.state_dict(), true)
        .unwrap();
    assert_eq!(wrapped.module, source);
}

#[test]
fn tensor_fields_load_in_place_and_keep_clones_apart() {
    #[derive(StateDict)]
    struct Tied {
        a: Tensor,
        b: Tensor,
    }
    let shared = Tensor::from(array![1.0f32, 2.0]);
    let mut model = Tied {
        a: shared.clone(),
        b: shared.clone(),
    };
    let mut state = TensorMap::new();
    let a = Tensor::from(array![5.0f32, 6.0]);
    let b = Tensor::from(array![7.0f64, 8.0]);
    state.insert("a", &a);
    state.insert("b", &b);
    let _ = model.load_state_dict(&state, true).unwrap();
    assert_eq!(model.a, a);
    assert_eq!(model.b, Tensor::from(array![7.0f32, 8.0]));
    assert_eq!(
        shared,
        Tensor::from(array![1.0f32, 2.0]),
        "clones are values"
    );
}

#[test]
fn non_persistent_buffers_are_neither_saved_nor_loaded() {
    #[derive(StateDict)]
    struct WithCache {
        w: Array1<f32>,
        #[state(buffer, persistent = false)]
        cache: Array1<f32>,
    }
    let mut model = WithCache {
        w: array![1.0],
        cache: array![9.0, 9.0],
    };
    assert_eq!(model.state_dict().len(), 1);
    let mut state = IndexMap::new();
    state.insert("w".to_owned(), Tensor::from(array![2.0f32]));
    let _ = model.load_state_dict(&state, true).unwrap();
    assert_eq!((model.w[0], model.cache[0]), (2.0, 9.0));
    state.insert("cache".to_owned(), Tensor::from(array![0.0f32, 0.0]));
    let err = model.load_state_dict(&state, true).unwrap_err();
    assert_eq!(err.unexpected_keys(), ["cache"]);
}

#[test]
fn a_flatten_collision_is_an_error_not_a_silent_overwrite() {
    #[derive(StateDict)]
    struct Collides {
        weight: Array1<f32>,
        #[state(flatten)]
        inner: Fc,
    }
    let mut model = Collides {
        weight: array![1.0],
        inner: fc(1, 1, 0.0),
    };
    let state: IndexMap<String, Tensor> = IndexMap::new();
    let err = model.load_state_dict(&state, false).unwrap_err();
    assert!(err.problems().contains(&LoadProblem::DuplicateKey {
        key: "weight".into()
    }));
    // Taking the state dict is no panic either: the map names the key, and saving it or
    // loading from it is the same error as loading into the model.
    let state = model.state_dict();
    assert_eq!(state.duplicate_keys(), ["weight"]);
    let mut other = Collides {
        weight: array![0.0],
        inner: fc(1, 1, 1.0),
    };
    let err = other.load_state_dict(&state, false).unwrap_err();
    assert!(
        err.problems().iter().any(|p| matches!(
            p,
            LoadProblem::Source { defect } if defect.contains("\"weight\"")
        )),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let err = ckpt::save(model.state_dict(), dir.path().join("c.ckpt")).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot be saved: two tensors of the state dict have the key(s) \"weight\""),
        "{err}"
    );
    assert!(!dir.path().join("c.ckpt").exists());
}
