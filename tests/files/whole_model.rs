//! Whole-model save and load: rebuilt from the file alone, and refactors reported key by key.

use ckpt::loading::Difference;
use ckpt::model::{Model, save_model};
use ckpt::nn::{BatchNorm1d, Linear, Rng};
use ckpt::{Error, StateDict};
use ndarray::{Array2, array};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct NetConfig {
    sizes: Vec<usize>,
    activation: String,
}

/// An MLP over `sizes` with a batch norm after the first layer.
#[derive(StateDict)]
struct Net {
    layers: Vec<Linear>,
    norm: BatchNorm1d,
    #[state(skip)]
    activation: String,
}

impl Model for Net {
    type Config = NetConfig;

    fn config(&self) -> NetConfig {
        let mut sizes: Vec<usize> = self.layers.iter().map(Linear::in_features).collect();
        sizes.extend(self.layers.last().map(Linear::out_features));
        NetConfig {
            sizes,
            activation: self.activation.clone(),
        }
    }

    fn from_config(config: NetConfig) -> Self {
        let mut rng = Rng::seed(7);
        Net {
            layers: config
                .sizes
                .windows(2)
                .map(|io| Linear::new(io[0], io[1], &mut rng))
                .collect(),
            norm: BatchNorm1d::new(config.sizes[1]),
            activation: config.activation,
        }
    }
}

impl Net {
    fn forward(&mut self, x: &Array2<f32>) -> Array2<f32> {
        let mut h = self.layers[0].forward(x).unwrap();
        h = self.norm.forward(&h).unwrap().mapv(|v| v.max(0.0));
        for layer in &self.layers[1..] {
            h = layer.forward(&h).unwrap();
        }
        h
    }
}

fn trained() -> Net {
    let mut net = Net::from_config(NetConfig {
        sizes: vec![4, 8, 3],
        activation: "relu".into(),
    });
    // A training step moves the running statistics and the batch counter.
    net.train();
    net.forward(&array![[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]);
    net.layers[1].weight.mapv_inplace(|w| w * 2.0);
    net
}

#[test]
fn a_model_comes_back_without_construction_code_in_eval_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.ckpt");
    let mut model = trained();
    save_model(&model, &path).unwrap();

    let mut restored: Net = ckpt::model::load_model(&path).unwrap();
    assert!(!restored.is_training(), "loaded models are in eval mode");
    assert_eq!(restored.activation, "relu");
    assert_eq!(
        crate::common::models::bytes_of(&restored),
        crate::common::models::bytes_of(&model),
        "buffers included"
    );
    model.eval();
    let x = array![[0.1, 0.2, 0.3, 0.4]];
    assert_eq!(restored.forward(&x), model.forward(&x));

    // The file records the type's name and the layout.
    let file = ckpt::load(&path).unwrap();
    assert_eq!(
        file["ckpt_model"]["type"].as_str(),
        Some(std::any::type_name::<Net>())
    );
    assert_eq!(file["schema"][0]["key"].as_str(), Some("layers.0.weight"));
    assert_eq!(file["schema"][4]["key"].as_str(), Some("norm.weight"));
}

#[test]
fn library_layers_are_models() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fc.ckpt");
    let fc = Linear::new(5, 2, &mut Rng::seed(3)).without_bias();
    save_model(&fc, &path).unwrap();
    let back: Linear = ckpt::model::load_model(&path).unwrap();
    assert!(back.bias.is_none());
    assert_eq!(back.weight, fc.weight);
}

fn mismatch(err: Error) -> (String, String, Vec<Difference>) {
    match err {
        Error::ModelMismatch {
            saved,
            loading,
            differences,
            ..
        } => (saved, loading, differences),
        other => panic!("expected a model mismatch, got {other}"),
    }
}

mod refactored {
    //! The same network after refactors, each a separate type.
    use super::*;

    /// `layers` renamed to `blocks`.
    #[derive(StateDict)]
    pub(super) struct Renamed {
        pub(super) blocks: Vec<Linear>,
        pub(super) norm: BatchNorm1d,
    }

    impl Model for Renamed {
        type Config = NetConfig;
        fn config(&self) -> NetConfig {
            unreachable!("only loaded")
        }
        fn from_config(config: NetConfig) -> Self {
            let net = Net::from_config(config);
            Renamed {
                blocks: net.layers,
                norm: net.norm,
            }
        }
    }

    /// The hidden layer twice as wide.
    pub(super) struct Wider(pub(super) Net);

    impl StateDict for Wider {
        fn visit<'a>(
            &'a self,
            p: &mut ckpt::state::KeyPath,
            r: ckpt::state::Role,
            v: &mut dyn ckpt::state::Visitor<'a>,
        ) {
            self.0.visit(p, r, v);
        }
        fn visit_mut(
            &mut self,
            p: &mut ckpt::state::KeyPath,
            r: ckpt::state::Role,
            v: &mut dyn ckpt::state::VisitorMut,
        ) {
            self.0.visit_mut(p, r, v);
        }
    }

    impl Model for Wider {
        type Config = NetConfig;
        fn config(&self) -> NetConfig {
            unreachable!("only loaded")
        }
        fn from_config(mut config: NetConfig) -> Self {
            config.sizes[1] *= 2;
            Wider(Net::from_config(config))
        }
    }

    /// The batch norm removed.
    #[derive(StateDict)]
    pub(super) struct NoNorm {
        pub(super) layers: Vec<Linear>,
    }

    impl Model for NoNorm {
        type Config = NetConfig;
        fn config(&self) -> NetConfig {
            unreachable!("only loaded")
        }
        fn from_config(config: NetConfig) -> Self {
            NoNorm {
                layers: Net::from_config(config).layers,
            }
        }
    }

    /// The config's `sizes` renamed to `widths`.
    #[derive(Serialize, Deserialize)]
    pub(super) struct WidthsConfig {
        pub(super) widths: Vec<usize>,
    }

    #[derive(StateDict)]
    pub(super) struct NewConfig(pub(super) Vec<Linear>);

    impl Model for NewConfig {
        type Config = WidthsConfig;
        fn config(&self) -> WidthsConfig {
            unreachable!("only loaded")
        }
        fn from_config(_: WidthsConfig) -> Self {
            unreachable!("the config never deserializes")
        }
    }

    /// The same layout under another name and module: a move, which pickle cannot survive.
    pub(super) type Moved = super::Net;
}

#[test]
fn each_refactor_is_reported_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.ckpt");
    save_model(&trained(), &path).unwrap();

    let err = ckpt::model::load_model::<refactored::Renamed>(&path)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the file holds a `files::whole_model::Net` whose layout differs from \
             `files::whole_model::refactored::Renamed`:\n\
             \t\"blocks.0.weight\" F32 [8, 4] is not in the file (a field added or renamed)\n\
             \t\"blocks.0.bias\" F32 [8] is not in the file (a field added or renamed)\n\
             \t\"blocks.1.weight\" F32 [3, 8] is not in the file (a field added or renamed)\n\
             \t\"blocks.1.bias\" F32 [3] is not in the file (a field added or renamed)\n\
             \t\"layers.0.weight\" F32 [8, 4] is only in the file (a field removed or renamed)\n\
             \t\"layers.0.bias\" F32 [8] is only in the file (a field removed or renamed)\n\
             \t\"layers.1.weight\" F32 [3, 8] is only in the file (a field removed or renamed)\n\
             \t\"layers.1.bias\" F32 [3] is only in the file (a field removed or renamed)\n\
             \tIf fields were only renamed, load with \
             StateDictOptions::new().key_map(KeyMap::new().rename(old, new)) and load_model_with.",
            path.display()
        )
    );

    let (_, _, differences) = mismatch(
        ckpt::model::load_model::<refactored::Wider>(&path)
            .err()
            .unwrap(),
    );
    assert_eq!(
        differences[..2],
        [
            Difference::Shape {
                key: "layers.0.weight".into(),
                saved: vec![8, 4],
                now: vec![16, 4]
            },
            Difference::Shape {
                key: "layers.0.bias".into(),
                saved: vec![8],
                now: vec![16]
            },
        ]
    );
    assert!(differences.contains(&Difference::Shape {
        key: "norm.running_mean".into(),
        saved: vec![8],
        now: vec![16]
    }));

    let (_, loading, differences) = mismatch(
        ckpt::model::load_model::<refactored::NoNorm>(&path)
            .err()
            .unwrap(),
    );
    assert!(loading.ends_with("NoNorm"));
    let removed: Vec<&str> = differences
        .iter()
        .map(|d| match d {
            Difference::Removed { key, .. } => key.as_str(),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        removed,
        [
            "norm.weight",
            "norm.bias",
            "norm.running_mean",
            "norm.running_var",
            "norm.num_batches_tracked"
        ]
    );

    let (_, _, differences) = mismatch(
        ckpt::model::load_model::<refactored::NewConfig>(&path)
            .err()
            .unwrap(),
    );
    assert_eq!(
        differences,
        [Difference::Config("missing field `widths`".into())]
    );

    let moved: refactored::Moved = ckpt::model::load_model(&path).unwrap();
    assert_eq!(moved.layers.len(), 2);

    // A refactor that only renamed keys loads with a key map.
    let renames = ckpt::keymap::KeyMap::new().rename("layers.0.weight", "blocks.0.weight");
    let renames = renames
        .rename("layers.0.bias", "blocks.0.bias")
        .rename("layers.1.weight", "blocks.1.weight")
        .rename("layers.1.bias", "blocks.1.bias");
    let options = ckpt::StateDictOptions::new().key_map(renames);
    let renamed: refactored::Renamed =
        ckpt::model::load_model_with(&path, &ckpt::LoadOptions::new(), &options).unwrap();
    assert_eq!(renamed.blocks[1].weight, moved.layers[1].weight);
    assert_eq!(renamed.norm.state_dict(), moved.norm.state_dict());
}

#[test]
fn a_plain_state_dict_is_not_a_whole_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sd.ckpt");
    ckpt::save(trained().state_dict(), &path).unwrap();
    let err = ckpt::model::load_model::<Net>(&path).err().unwrap();
    assert!(
        err.to_string()
            .contains("this file holds no whole model: save one with ckpt::model::save_model"),
        "{err}"
    );
}
