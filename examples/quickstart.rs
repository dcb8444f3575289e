//! Recipe 1 of PyTorch's guide to saving models, in Rust: save a model's state dict, build a
//! fresh model, `load_state_dict(load(path))`, `eval()`, and get the same outputs.
//!
//! Run it with `cargo run --example quickstart`; it exits non-zero if anything differs.

use ckpt::StateDict;
use ndarray::{Array1, Array2, array};

/// `nn.Linear`: `weight` is [out, in], as in PyTorch.
#[derive(StateDict)]
struct Linear {
    weight: Array2<f32>,
    bias: Array1<f32>,
}

impl Linear {
    /// Deterministic pseudo-random weights, different for each `seed`.
    fn new(inputs: usize, outputs: usize, seed: u64) -> Self {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.5) / (inputs as f32).sqrt()
        };
        Linear {
            weight: Array2::from_shape_simple_fn((outputs, inputs), &mut next),
            bias: Array1::from_shape_simple_fn(outputs, &mut next),
        }
    }

    fn forward(&self, x: &Array2<f32>) -> Array2<f32> {
        x.dot(&self.weight.t()) + &self.bias
    }
}

/// `nn.Sequential(Linear(4, 8), ReLU(), Linear(8, 3))` with the same keys: `0.weight` …
#[derive(StateDict)]
struct Mlp {
    #[state(rename = "0")]
    hidden: Linear,
    #[state(rename = "2")]
    out: Linear,
    #[state(training)]
    training: bool,
}

impl Mlp {
    fn new(seed: u64) -> Self {
        Mlp {
            hidden: Linear::new(4, 8, seed),
            out: Linear::new(8, 3, seed + 1),
            training: true,
        }
    }

    fn forward(&self, x: &Array2<f32>) -> Array2<f32> {
        self.out
            .forward(&self.hidden.forward(x).mapv(|v| v.max(0.0)))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let trained = Mlp::new(1);
    let x = array![[0.5f32, -1.0, 2.0, 0.25], [1.0, 1.0, -0.5, 0.0]];
    let expected = trained.forward(&x);

    // torch: torch.save(model.state_dict(), PATH)
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mlp.ckpt");
    ckpt::save(trained.state_dict(), &path)?;
    println!(
        "saved {} ({} bytes):",
        path.display(),
        std::fs::metadata(&path)?.len()
    );
    for info in ckpt::inspect(&path)?.tensors {
        println!("  {:<10} {} {:?}", info.key, info.dtype, info.shape);
    }

    // torch: model = Mlp(); model.load_state_dict(torch.load(PATH)); model.eval()
    let state = ckpt::load(&path)?;
    let mut model = Mlp::new(99);
    assert_ne!(
        model.forward(&x),
        expected,
        "a fresh model starts with other weights"
    );
    let report = model.load_state_dict(&state, true)?;
    model.eval();
    println!("{report}");

    let got = model.forward(&x);
    assert_eq!(got, expected, "outputs differ after load_state_dict");
    assert!(!model.is_training());
    println!("outputs identical after load: {got:?}");
    Ok(())
}
