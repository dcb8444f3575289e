//! `KeyMap`: every rule, collisions, unmatched rules, inversion for saves, and the wrapper
//! prefixes found without a rule.

use ckpt::StateDictOptions;
use ckpt::keymap::{KeyMap, KeyMapError, KeyRule};
use ckpt::loading::LoadProblem;
use ckpt::state::TensorSource;
use ckpt::{StateDict, Tensor};
use indexmap::IndexMap;
use ndarray::{Array1, Array2};

#[derive(StateDict, Debug, Clone, PartialEq)]
struct Fc {
    weight: Array2<f32>,
    bias: Array1<f32>,
}

#[derive(StateDict, Debug, Clone, PartialEq)]
struct Net {
    encoder: Fc,
    head: Fc,
}

fn fc(out: usize, inp: usize, seed: f32) -> Fc {
    Fc {
        weight: Array2::from_shape_fn((out, inp), |(i, j)| seed * 100.0 + (i * inp + j) as f32),
        bias: Array1::from_shape_fn(out, |i| seed - i as f32),
    }
}

fn net(seed: f32) -> Net {
    Net {
        encoder: fc(3, 2, seed),
        head: fc(2, 3, seed + 0.5),
    }
}

/// `(from, to)` pairs of a plan, as `&str` for short assertions.
fn mapped(map: &KeyMap, keys: &[&str]) -> Vec<(String, String)> {
    map.plan(keys).pairs().to_vec()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// A model's tensors, owned, under keys changed by `rename`.
fn renamed(model: &Net, rename: impl Fn(&str) -> String) -> IndexMap<String, Tensor> {
    model
        .state_dict()
        .to_owned_tensors()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (rename(&k), v))
        .collect()
}

#[test]
fn strip_prefix_strips_only_the_keys_that_have_it() {
    let map = KeyMap::new().strip_prefix("module.");
    assert_eq!(
        mapped(&map, &["module.a.weight", "b.bias", "module."]),
        pairs(&[
            ("module.a.weight", "a.weight"),
            ("b.bias", "b.bias"),
            ("module.", "module.")
        ])
    );
}

#[test]
fn select_prefix_keeps_one_sub_module() {
    let map = KeyMap::new().select_prefix("encoder.");
    assert_eq!(
        mapped(&map, &["encoder.weight", "decoder.weight", "encoder.bias"]),
        pairs(&[("encoder.weight", "weight"), ("encoder.bias", "bias")])
    );
}

#[test]
fn consume_prefix_strips_all_or_nothing() {
    let all = ["module.0.weight", "module.1.bias"];
    let some = ["module.0.weight", "1.bias"];
    let map = KeyMap::data_parallel();
    assert_eq!(
        mapped(&map, &all),
        pairs(&[("module.0.weight", "0.weight"), ("module.1.bias", "1.bias")])
    );
    assert_eq!(
        mapped(&map, &some),
        pairs(&[("module.0.weight", "module.0.weight"), ("1.bias", "1.bias")])
    );
    assert_eq!(
        map.plan(some).unmatched_rules(),
        ["consume_prefix(\"module.\")"]
    );
    assert_eq!(
        mapped(&KeyMap::compiled(), &["_orig_mod.fc.weight"]),
        pairs(&[("_orig_mod.fc.weight", "fc.weight")])
    );
}

#[test]
fn add_prefix_prefixes_every_key() {
    let map = KeyMap::new().add_prefix("module.");
    assert_eq!(
        mapped(&map, &["fc.weight", "fc.bias"]),
        pairs(&[
            ("fc.weight", "module.fc.weight"),
            ("fc.bias", "module.fc.bias")
        ])
    );
}

#[test]
fn rename_renames_one_key_exactly() {
    let map = KeyMap::new().rename("fc.weight", "head.weight");
    assert_eq!(
        mapped(&map, &["fc.weight", "fc.weight2", "fc.bias"]),
        pairs(&[
            ("fc.weight", "head.weight"),
            ("fc.weight2", "fc.weight2"),
            ("fc.bias", "fc.bias")
        ])
    );
}

#[test]
fn replace_rewrites_every_match_with_capture_groups() {
    let map = KeyMap::new().replace(r"layer(\d+)", "layers.$1").unwrap();
    assert_eq!(
        mapped(&map, &["layer1.layer2.w", "fc.w"]),
        pairs(&[("layer1.layer2.w", "layers.1.layers.2.w"), ("fc.w", "fc.w")])
    );
}

#[test]
fn keep_and_drop_filter_by_pattern() {
    let keys = ["a.weight", "a.num_batches_tracked", "b.weight"];
    let keep = KeyMap::new().keep(r"^a\.").unwrap();
    assert_eq!(
        mapped(&keep, &keys),
        pairs(&[
            ("a.weight", "a.weight"),
            ("a.num_batches_tracked", "a.num_batches_tracked")
        ])
    );
    let drop = KeyMap::new().drop("num_batches_tracked$").unwrap();
    assert_eq!(
        mapped(&drop, &keys),
        pairs(&[("a.weight", "a.weight"), ("b.weight", "b.weight")])
    );
}

#[test]
fn rules_compose_in_order() {
    let first = KeyMap::new().strip_prefix("module.");
    let then = KeyMap::new().rename("fc.weight", "head.weight");
    let map = first.then(then);
    assert_eq!(map.rules().len(), 2);
    assert!(matches!(&map.rules()[0], KeyRule::StripPrefix(p) if p == "module."));
    assert_eq!(
        mapped(&map, &["module.fc.weight"]),
        pairs(&[("module.fc.weight", "head.weight")])
    );
    // The other order renames nothing: the rename sees the prefixed key.
    let reversed = KeyMap::new()
        .rename("fc.weight", "head.weight")
        .strip_prefix("module.");
    assert_eq!(
        mapped(&reversed, &["module.fc.weight"]),
        pairs(&[("module.fc.weight", "fc.weight")])
    );
}

#[test]
fn maps_display_and_debug_their_rules() {
    let map = KeyMap::new()
        .select_prefix("encoder.")
        .add_prefix("backbone.")
        .keep("weight$")
        .unwrap();
    assert_eq!(
        map.to_string(),
        r#"select_prefix("encoder.") | add_prefix("backbone.") | keep(/weight$/)"#
    );
    assert_eq!(
        format!("{map:?}"),
        r#"KeyMap[select_prefix("encoder."), add_prefix("backbone."), keep(/weight$/)]"#
    );
    assert!(format!("{:?}", StateDictOptions::new().key_map(map)).contains("keep(/weight$/)"));
}

#[test]
fn a_bad_pattern_is_an_error_naming_it() {
    let err = KeyMap::new().keep("fc.(weight").unwrap_err();
    assert!(matches!(&err, KeyMapError::Pattern { pattern, .. } if pattern == "fc.(weight"));
    assert!(
        err.to_string()
            .starts_with("invalid key pattern /fc.(weight/: regex parse error")
    );
}

#[test]
fn two_keys_landing_on_one_are_an_error_naming_both() {
    let source = net(1.0);
    let mut state = renamed(&source, str::to_owned);
    state.insert(
        "module.head.bias".to_owned(),
        Tensor::from(Array1::<f32>::zeros(2)),
    );
    let map = KeyMap::new().strip_prefix("module.");
    assert_eq!(
        map.plan(state.keys()).collisions(),
        [KeyMapError::Collision {
            key: "head.bias".into(),
            first: "head.bias".into(),
            second: "module.head.bias".into(),
        }]
    );
    assert_eq!(
        map.apply(&state).unwrap_err().to_string(),
        "the keys \"head.bias\" and \"module.head.bias\" both map to \"head.bias\""
    );

    // In a load, even a non-strict one, it is an error and the model is untouched.
    let mut model = net(2.0);
    let options = StateDictOptions::new().strict(false).key_map(map);
    let err = model.load_state_dict_with(&state, &options).unwrap_err();
    assert_eq!(
        err.problems(),
        [LoadProblem::KeyCollision {
            key: "head.bias".into(),
            first: "head.bias".into(),
            second: "module.head.bias".into(),
        }]
    );
    assert_eq!(
        err.to_string(),
        "Error(s) in loading state_dict for Net:\n\tthe checkpoint keys \"head.bias\" and \
         \"module.head.bias\" both map to \"head.bias\" under the key map."
    );
    assert_eq!(model, net(2.0));
}

#[test]
fn rules_that_matched_nothing_are_reported() {
    let source = net(1.0);
    let state = renamed(&source, |k| format!("module.{k}"));
    let mut model = net(2.0);
    let options = StateDictOptions::new().key_map(
        KeyMap::new()
            .strip_prefix("module.")
            .rename("encoder.wieght", "encoder.weight")
            .drop("running_var")
            .unwrap(),
    );
    let report = model.load_state_dict_with(&state, &options).unwrap();
    assert_eq!(model, source);
    assert_eq!(
        report.unmatched_rules,
        [
            "rename(\"encoder.wieght\" -> \"encoder.weight\")",
            "drop(/running_var/)"
        ]
    );
    assert_eq!(
        report.to_string(),
        "<All keys matched successfully: 4 loaded>; key rules that matched nothing: \
         [rename(\"encoder.wieght\" -> \"encoder.weight\"), drop(/running_var/)]"
    );

    // When the load fails, the unmatched rule is a hint.
    let typo = StateDictOptions::new().key_map(KeyMap::new().strip_prefix("modul."));
    let err = net(2.0).load_state_dict_with(&state, &typo).unwrap_err();
    assert!(
        err.hints().contains(
            &"the key rule strip_prefix(\"modul.\") matched no key of the checkpoint.".to_owned()
        ),
        "{err}"
    );
}

#[test]
fn a_map_runs_backwards_for_saves() {
    let model = net(1.0);
    let map = KeyMap::new()
        .strip_prefix("module.")
        .rename("fc.weight", "head.weight")
        .rename("fc.bias", "head.bias");
    assert_eq!(
        map.inverse().unwrap().to_string(),
        r#"rename("head.bias" -> "fc.bias") | rename("head.weight" -> "fc.weight") | add_prefix("module.")"#
    );
    let saved = map.apply_to_save(model.state_dict()).unwrap();
    assert_eq!(
        saved.keys().collect::<Vec<_>>(),
        [
            "module.encoder.weight",
            "module.encoder.bias",
            "module.fc.weight",
            "module.fc.bias"
        ]
    );
    assert_eq!(
        saved.get("module.fc.weight").unwrap().to_f64_vec().unwrap(),
        model
            .state_dict()
            .get("head.weight")
            .unwrap()
            .to_f64_vec()
            .unwrap()
    );

    // Loading what was saved through the same map gives the model back.
    let mut restored = net(5.0);
    let _ = restored
        .load_state_dict_with(&saved, &StateDictOptions::new().key_map(map))
        .unwrap();
    assert_eq!(restored, model);

    let lossy = KeyMap::new().add_prefix("x.").drop("bias").unwrap();
    assert_eq!(
        lossy.inverse().unwrap_err(),
        KeyMapError::NotInvertible {
            rule: "drop(/bias/)".into()
        }
    );
    assert!(
        lossy
            .apply_to_save(model.state_dict())
            .unwrap_err()
            .to_string()
            .starts_with("the key rule drop(/bias/) cannot be inverted")
    );
}

#[test]
fn a_sub_module_loads_from_a_bigger_checkpoint_in_one_line() {
    let big = net(1.0);
    let mut encoder = fc(3, 2, 9.0);
    let report = encoder
        .load_state_dict_with(
            &big.state_dict(),
            &StateDictOptions::new().key_map(KeyMap::new().select_prefix("encoder.")),
        )
        .unwrap();
    assert_eq!(encoder, big.encoder);
    assert_eq!(report.loaded_keys, ["weight", "bias"]);
    assert!(
        report.unexpected_keys.is_empty(),
        "head.* were filtered out"
    );
}

#[test]
fn auto_prefix_strips_a_wrappers_prefix_every_key_carries() {
    let source = net(1.0);
    for prefix in ["module.", "_orig_mod."] {
        let state = renamed(&source, |k| format!("{prefix}{k}"));
        let mut model = net(2.0);
        let report = model
            .load_state_dict_with(&state, &StateDictOptions::new().auto_prefix(true))
            .unwrap();
        assert_eq!(model, source);
        assert_eq!(
            report.auto_prefix.as_deref(),
            Some(format!("strip_prefix({prefix:?})").as_str())
        );
    }

    // A plain checkpoint is left alone.
    let mut model = net(2.0);
    let report = model
        .load_state_dict_with(
            &source.state_dict(),
            &StateDictOptions::new().auto_prefix(true),
        )
        .unwrap();
    assert_eq!(report.auto_prefix, None);
    assert_eq!(model, source);
}

#[test]
fn auto_prefix_adds_module_for_a_wrapped_model() {
    #[derive(StateDict, Debug, PartialEq)]
    struct Wrapped {
        module: Net,
    }
    let source = net(1.0);
    let mut wrapped = Wrapped { module: net(2.0) };
    let report = wrapped
        .load_state_dict_with(
            &source.state_dict(),
            &StateDictOptions::new().auto_prefix(true),
        )
        .unwrap();
    assert_eq!(wrapped.module, source);
    assert_eq!(
        report.auto_prefix.as_deref(),
        Some("add_prefix(\"module.\")")
    );
    assert_eq!(report.loaded_keys[0], "module.encoder.weight");
}

#[test]
fn auto_prefix_does_not_strip_when_only_some_keys_carry_it() {
    let source = net(1.0);
    let mut state = renamed(&source, |k| format!("module.{k}"));
    let bias = state.shift_remove("module.head.bias").unwrap();
    state.insert("head.bias".to_owned(), bias);
    let mut model = net(2.0);
    let err = model
        .load_state_dict_with(&state, &StateDictOptions::new().auto_prefix(true))
        .unwrap_err();
    assert_eq!(
        err.missing_keys(),
        ["encoder.weight", "encoder.bias", "head.weight"]
    );
    assert_eq!(model, net(2.0));
}

#[test]
fn stripping_a_prefix_is_the_hinted_one_line_option() {
    let source = net(1.0);
    let state = renamed(&source, |k| format!("model_state_dict.{k}"));
    let mut model = net(2.0);
    let err = model.load_state_dict(&state, true).unwrap_err();
    assert!(
        err.hints()[0].ends_with(
            "load with `StateDictOptions::new().key_map(KeyMap::new().strip_prefix(\"model_state_dict.\"))`."
        ),
        "{err}"
    );
    let _ = model
        .load_state_dict_with(
            &state,
            &StateDictOptions::new().key_map(KeyMap::new().strip_prefix("model_state_dict.")),
        )
        .unwrap();
    assert_eq!(model, source);
    assert!(state.get_tensor("model_state_dict.head.bias").is_some());
}

#[test]
fn auto_prefix_leaves_a_field_called_module_alone() {
    #[derive(StateDict, Debug, PartialEq)]
    struct Holder {
        module: Fc,
        other: Fc,
    }
    let source = Holder {
        module: fc(3, 2, 1.0),
        other: fc(2, 2, 1.0),
    };
    // Only the `module` field's keys: they all start with `module.`, and are the model's own.
    let mut state = source.state_dict();
    state.remove("other.weight");
    state.remove("other.bias");
    let mut model = Holder {
        module: fc(3, 2, 2.0),
        other: fc(2, 2, 2.0),
    };
    let options = StateDictOptions::new().strict(false).auto_prefix(true);
    let report = model.load_state_dict_with(&state, &options).unwrap();
    assert_eq!(report.auto_prefix, None);
    assert_eq!(report.loaded_keys, ["module.weight", "module.bias"]);
    assert_eq!(model.module, source.module);
    assert_eq!(model.other, fc(2, 2, 2.0));
}
