//! Recipe 5 of PyTorch's guide to saving models, in Rust: warm-start a model from the
//! parameters of another. A pretrained network (`features` + a 10-class `fc`) is saved; a new
//! model (`backbone` + a 3-class `head`) takes its backbone, renamed by a `KeyMap`, while the
//! new head, whose shape differs, is skipped and listed instead of failing the load.
//!
//! Run it with `cargo run --example warm_start`; it exits non-zero if anything differs.

use ckpt::LoadFrom;
use ckpt::StateDictOptions;
use ckpt::keymap::KeyMap;
use ckpt::nn::{Linear, ReLU, Rng, Sequential};
use ckpt::{LoadOptions, StateDict};

/// The pretrained network, as it was trained.
#[derive(StateDict)]
struct Pretrained {
    features: Sequential,
    fc: Linear,
}

/// The new network: the same backbone under another name, and a new head for 3 classes.
#[derive(StateDict)]
struct Classifier {
    backbone: Sequential,
    head: Linear,
}

fn backbone(rng: &mut Rng) -> Sequential {
    Sequential::new()
        .push(Linear::new(8, 16, rng))
        .push(ReLU)
        .push(Linear::new(16, 16, rng))
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
    let rng = &mut Rng::seed(1);
    let pretrained = Pretrained {
        features: backbone(rng),
        fc: Linear::new(16, 10, rng),
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pretrained.ckpt");
    ckpt::save(pretrained.state_dict(), &path)?;

    let rng = &mut Rng::seed(2);
    let mut model = Classifier {
        backbone: backbone(rng),
        head: Linear::new(16, 3, rng),
    };
    let new_head = values(&model.head);

    // torch: model.load_state_dict(renamed(torch.load(PATH)), strict=False), by hand.
    let key_map = KeyMap::new()
        .replace(r"^features\.", "backbone.")?
        .rename("fc.weight", "head.weight")
        .rename("fc.bias", "head.bias");
    println!("key map: {key_map}");
    let options = StateDictOptions::new()
        .key_map(key_map)
        .skip_shape_mismatches(true);
    let report = model.load_from_with(&path, &LoadOptions::new(), &options)?;
    println!("{report}");

    assert_eq!(
        report.loaded_keys,
        [
            "backbone.0.weight",
            "backbone.0.bias",
            "backbone.2.weight",
            "backbone.2.bias"
        ]
    );
    assert_eq!(
        report.skipped_shape_mismatches,
        ["head.weight", "head.bias"]
    );
    assert!(report.unmatched_rules.is_empty());
    assert_eq!(
        values(&model.backbone),
        values(&pretrained.features),
        "the backbone is the pretrained one"
    );
    assert_eq!(values(&model.head), new_head, "the new head is untouched");

    // The backbone alone, out of the whole checkpoint, in one line.
    let mut features = backbone(&mut Rng::seed(3));
    let checkpoint = ckpt::load(&path)?;
    let _ = features.load_state_dict_with(
        &checkpoint,
        &StateDictOptions::new().key_map(KeyMap::new().select_prefix("features.")),
    )?;
    assert_eq!(values(&features), values(&pretrained.features));
    println!("backbone warm-started; new head kept its initialisation");
    Ok(())
}
