//! A Rust training checkpoint that PyTorch resumes: `adam_resume.pt` holds a model and its Adam
//! state after three steps taken in Rust, the gradients of a fourth step, and the parameters
//! Rust computes after it. `tests/python/resume_in_pytorch.py` loads the model and optimizer into
//! `torch.nn` / `torch.optim.Adam`, takes the fourth step there and compares.
//!
//! Set `CKPT_REGENERATE=1` to rewrite the file after a deliberate change.

use ckpt::nn::{Linear, Rng};
use ckpt::optim::{Adam, AdamConfig};
use ckpt::{StateDict, Tensor, Value, dict};

/// `nn.Sequential(Linear(8, 16), ReLU(), Linear(16, 4))`.
#[derive(StateDict)]
struct Mlp {
    #[state(rename = "0")]
    fc1: Linear,
    #[state(rename = "2")]
    fc2: Linear,
}

/// Gradients for step `step`: a fixed function of the parameters' keys, shapes and the step.
fn grads(model: &Mlp, step: usize) -> Value<'static> {
    model
        .named_parameters()
        .iter()
        .map(|(key, t)| {
            let n = t.numel();
            let data: Vec<f32> = (0..n)
                .map(|i| ((i * 7 + step * 13 + key.len()) as f32 * 0.37).sin() * 0.1)
                .collect();
            (key.to_owned(), Tensor::from_vec(data, t.shape()).unwrap())
        })
        .collect()
}

#[test]
fn a_rust_adam_checkpoint_for_pytorch_is_up_to_date() {
    let rng = &mut Rng::seed(3);
    let mut model = Mlp {
        fc1: Linear::new(8, 16, rng),
        fc2: Linear::new(16, 4, rng),
    };
    let config = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    let mut optimizer = Adam::new(&model, config);
    for step in 0..3 {
        let g = grads(&model, step);
        optimizer.step(&mut model, &g).unwrap();
    }
    let saved_model = model.state_dict().to_owned_tensors().unwrap();
    let saved_optimizer = optimizer.pytorch_state_dict().to_owned_value();
    let next = grads(&model, 3);
    optimizer.step(&mut model, &next).unwrap();

    let value = dict! {
        "model_state_dict" => saved_model.iter().map(|(k, t)| (k.as_str(), t)).collect::<Value<'_>>(),
        "optimizer_state_dict" => &saved_optimizer,
        "next_grads" => &next,
        "expected_after_step" => model.state_dict(),
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pytorch/resume/adam_resume.pt"
    );
    let mut bytes = std::io::Cursor::new(Vec::new());
    crate::common::pytorch::write(&value, &mut bytes).unwrap();
    let bytes = bytes.into_inner();
    if std::env::var_os("CKPT_REGENERATE").is_some() {
        std::fs::write(path, &bytes).unwrap();
    }
    assert!(
        std::fs::read(path).unwrap() == bytes,
        "adam_resume.pt is stale: run with CKPT_REGENERATE=1"
    );
    // What PyTorch will read is what Rust resumes from, too.
    let file = ckpt::load(path).unwrap();
    let mut resumed = Mlp {
        fc1: Linear::new(8, 16, &mut Rng::seed(0)),
        fc2: Linear::new(16, 4, &mut Rng::seed(0)),
    };
    let _ = resumed
        .load_state_dict(&file["model_state_dict"], true)
        .unwrap();
    let mut again = Adam::new(&resumed, AdamConfig::default());
    again
        .load_pytorch_state_dict(&file["optimizer_state_dict"])
        .unwrap();
    again.step(&mut resumed, &file["next_grads"]).unwrap();
    assert!(
        resumed.state_dict() == model.state_dict(),
        "resuming in Rust is exact"
    );
}
