//! Recipe 2 of PyTorch's guide to saving models: save the whole model and load it back without
//! building it first (`torch.save(model, PATH)`; `model = torch.load(PATH)`; `model.eval()`).
//!
//! Pickle stores a class path, so a refactor breaks such files in confusing ways. ckpt stores
//! the model's configuration (through serde) and its tensors; loading rebuilds the model from the
//! configuration and checks the layout key by key, so a refactor is reported precisely.
//!
//! Run it with `cargo run --example whole_model`.

use ckpt::StateDict;
use ckpt::model::Model;
use ckpt::nn::{Linear, Rng};
use ndarray::{Array2, array};
use serde::{Deserialize, Serialize};

/// What decides the classifier's structure.
#[derive(Serialize, Deserialize)]
struct ClassifierConfig {
    inputs: usize,
    hidden: usize,
    classes: usize,
}

#[derive(StateDict)]
struct Classifier {
    fc1: Linear,
    fc2: Linear,
    /// Set by `train()` / `eval()`; a loaded model comes back with it `false`.
    #[state(training)]
    training: bool,
}

impl Model for Classifier {
    type Config = ClassifierConfig;

    fn config(&self) -> ClassifierConfig {
        ClassifierConfig {
            inputs: self.fc1.in_features(),
            hidden: self.fc1.out_features(),
            classes: self.fc2.out_features(),
        }
    }

    fn from_config(c: ClassifierConfig) -> Self {
        let mut rng = Rng::seed(0);
        Classifier {
            fc1: Linear::new(c.inputs, c.hidden, &mut rng),
            fc2: Linear::new(c.hidden, c.classes, &mut rng),
            training: true,
        }
    }
}

impl Classifier {
    fn forward(&self, x: &Array2<f32>) -> Array2<f32> {
        let h = self
            .fc1
            .forward(x)
            .expect("input width")
            .mapv(|v| v.max(0.0));
        self.fc2.forward(&h).expect("hidden width")
    }
}

/// The same network after a refactor: `fc2` renamed `head`, and a wider hidden layer.
#[derive(StateDict)]
struct ClassifierV2 {
    fc1: Linear,
    head: Linear,
}

impl Model for ClassifierV2 {
    type Config = ClassifierConfig;

    fn config(&self) -> ClassifierConfig {
        unreachable!("this example only loads ClassifierV2")
    }

    fn from_config(c: ClassifierConfig) -> Self {
        let mut rng = Rng::seed(0);
        ClassifierV2 {
            fc1: Linear::new(c.inputs, 2 * c.hidden, &mut rng),
            head: Linear::new(2 * c.hidden, c.classes, &mut rng),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng::seed(42);
    let model = Classifier {
        fc1: Linear::new(4, 16, &mut rng),
        fc2: Linear::new(16, 3, &mut rng),
        training: true,
    };
    let x = array![[0.5f32, -1.0, 2.0, 0.25], [1.0, 1.0, -0.5, 0.0]];
    let expected = model.forward(&x);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("classifier.ckpt");
    ckpt::model::save_model(&model, &path)?; // torch.save(model, PATH)
    println!("saved the whole model to {}", path.display());

    // model = torch.load(PATH); model.eval() -- no construction code here.
    let restored: Classifier = ckpt::model::load_model(&path)?;
    assert!(!restored.is_training());
    assert_eq!(
        restored.forward(&x),
        expected,
        "outputs differ after load_model"
    );
    println!("loaded it back without building it first: identical outputs");

    // A refactored type gets a precise error instead of a silent misload.
    match ckpt::model::load_model::<ClassifierV2>(&path) {
        Ok(_) => return Err("a refactored type must not load silently".into()),
        Err(err) => println!("loading it as the refactored type:\n{err}"),
    }
    Ok(())
}
