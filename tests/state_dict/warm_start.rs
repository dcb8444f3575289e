//! Warm starts (PyTorch's recipe 5): part of one model into another, with renamed keys and a
//! new head whose shape differs.

use ckpt::StateDict;
use ckpt::StateDictOptions;
use ckpt::keymap::KeyMap;
use ckpt::loading::LoadProblem;
use ckpt::nn::{Linear, Rng};

#[derive(StateDict, Clone, Debug)]
struct Backbone {
    layers: Vec<Linear>,
}

/// The pretrained model: a backbone and a 10-class head called `fc`.
#[derive(StateDict, Clone, Debug)]
struct Pretrained {
    backbone: Backbone,
    fc: Linear,
}

/// The new model: the same backbone and a 3-class head called `classifier`.
#[derive(StateDict, Clone, Debug)]
struct Finetuned {
    backbone: Backbone,
    classifier: Linear,
}

/// Every tensor of a model, by key, as `f64` values: equal exactly when the models are.
fn values(model: &dyn StateDict) -> Vec<(String, Vec<f64>)> {
    model
        .state_dict()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_f64_vec().unwrap()))
        .collect()
}

fn backbone(rng: &mut Rng) -> Backbone {
    Backbone {
        layers: vec![Linear::new(8, 16, rng), Linear::new(16, 16, rng)],
    }
}

fn pretrained() -> Pretrained {
    let rng = &mut Rng::seed(1);
    Pretrained {
        backbone: backbone(rng),
        fc: Linear::new(16, 10, rng),
    }
}

fn finetuned() -> Finetuned {
    let rng = &mut Rng::seed(2);
    Finetuned {
        backbone: backbone(rng),
        classifier: Linear::new(16, 3, rng),
    }
}

fn renames() -> KeyMap {
    KeyMap::new().replace(r"^fc\.", "classifier.").unwrap()
}

#[test]
fn a_new_head_is_skipped_for_its_shape_and_the_backbone_loads() {
    let old = pretrained();
    let mut model = finetuned();
    let head_before = model.classifier.clone();
    let options = StateDictOptions::new()
        .key_map(renames())
        .skip_shape_mismatches(true);
    let report = model
        .load_state_dict_with(&old.state_dict(), &options)
        .unwrap();

    assert_eq!(values(&model.backbone), values(&old.backbone));
    assert_eq!(
        values(&model.classifier),
        values(&head_before),
        "the new head keeps its values"
    );
    assert_eq!(
        report.loaded_keys,
        [
            "backbone.layers.0.weight",
            "backbone.layers.0.bias",
            "backbone.layers.1.weight",
            "backbone.layers.1.bias",
        ]
    );
    assert_eq!(
        report.skipped_shape_mismatches,
        ["classifier.weight", "classifier.bias"]
    );
    assert!(report.is_complete());
    assert!(report.unmatched_rules.is_empty());
    assert_eq!(
        report.to_string(),
        "<All keys matched successfully: 4 loaded>; skipped for their shapes: \
         [\"classifier.weight\", \"classifier.bias\"]"
    );
}

#[test]
fn without_the_option_shape_mismatches_fail_and_change_nothing() {
    let old = pretrained();
    let mut model = finetuned();
    let before = model.clone();
    let options = StateDictOptions::new().strict(false).key_map(renames());
    let err = model
        .load_state_dict_with(&old.state_dict(), &options)
        .unwrap_err();
    assert_eq!(
        err.problems(),
        [
            LoadProblem::SizeMismatch {
                key: "classifier.weight".into(),
                checkpoint: vec![10, 16],
                model: vec![3, 16],
            },
            LoadProblem::SizeMismatch {
                key: "classifier.bias".into(),
                checkpoint: vec![10],
                model: vec![3],
            },
        ]
    );
    assert_eq!(values(&model), values(&before));
}

#[test]
fn non_strict_without_renames_reports_missing_and_unexpected() {
    let old = pretrained();
    let mut model = finetuned();
    let head_before = model.classifier.clone();
    let report = model.load_state_dict(&old.state_dict(), false).unwrap();
    assert_eq!(values(&model.backbone), values(&old.backbone));
    assert_eq!(values(&model.classifier), values(&head_before));
    assert_eq!(
        report.missing_keys,
        ["classifier.weight", "classifier.bias"]
    );
    assert_eq!(report.unexpected_keys, ["fc.weight", "fc.bias"]);
    assert!(report.skipped_shape_mismatches.is_empty());
}

#[test]
fn the_backbone_alone_loads_from_the_whole_checkpoint_in_one_line() {
    let old = pretrained();
    let mut backbone = finetuned().backbone;
    let report = backbone
        .load_state_dict_with(
            &old.state_dict(),
            &StateDictOptions::new().key_map(KeyMap::new().select_prefix("backbone.")),
        )
        .unwrap();
    assert_eq!(values(&backbone), values(&old.backbone));
    assert_eq!(report.loaded_keys.len(), 4);
}

#[test]
fn a_shape_skip_in_a_strict_load_still_needs_every_other_key() {
    let old = pretrained();
    let mut state = old.state_dict();
    state.remove("backbone.layers.1.bias");
    let mut model = finetuned();
    let before = model.clone();
    let options = StateDictOptions::new()
        .key_map(renames())
        .skip_shape_mismatches(true);
    let err = model.load_state_dict_with(&state, &options).unwrap_err();
    assert_eq!(err.missing_keys(), ["backbone.layers.1.bias"]);
    assert_eq!(values(&model), values(&before));
}
