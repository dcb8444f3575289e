//! Recipe 3 of PyTorch's guide to saving models, in Rust: save a general checkpoint for
//! resuming training, then resume it in a fresh model and optimizer, and get bit for bit what
//! training without the interruption gives.
//!
//! ```python
//! torch.save({'epoch': epoch, 'model_state_dict': model.state_dict(),
//!             'optimizer_state_dict': optimizer.state_dict(), 'loss': loss}, PATH)
//!
//! model = TheModelClass(*args, **kwargs)
//! optimizer = TheOptimizerClass(*args, **kwargs)
//! checkpoint = torch.load(PATH, weights_only=True)
//! model.load_state_dict(checkpoint['model_state_dict'])
//! optimizer.load_state_dict(checkpoint['optimizer_state_dict'])
//! epoch = checkpoint['epoch']
//! loss = checkpoint['loss']
//! model.train()  # or model.eval() for inference
//! ```
//!
//! Run it with `cargo run --example checkpoint_resume`; it exits non-zero if the resumed run
//! differs from the uninterrupted one in a single bit.

mod common;

use std::error::Error;
use std::ops::Range;

use ckpt::StateDict;
use ckpt::nn::Rng;
use ckpt::optim::{Adam, AdamConfig};
use common::{Mlp, same_bits};
use ndarray::Array2;

/// Steps before the checkpoint, and after it.
const FIRST: usize = 150;
const THEN: usize = 150;

/// A toy regression: 64 points of `sin(2x)` on `[-2, 2]`, as `[N, 1]` inputs and targets.
fn dataset() -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((64, 1), |(i, _)| -2.0 + 4.0 * i as f32 / 63.0);
    let y = x.mapv(|x| (2.0 * x).sin());
    (x, y)
}

/// `model = Net(); optimizer = optim.Adam(model.parameters(), lr=0.01)`, from a seed.
fn build(seed: u64, config: AdamConfig) -> (Mlp, Adam) {
    let model = Mlp::new(1, 32, 1, &mut Rng::seed(seed));
    let optimizer = Adam::new(&model, config);
    (model, optimizer)
}

/// Full-batch training over `steps`, minimising the mean squared error; returns the last loss.
fn train(
    model: &mut Mlp,
    optimizer: &mut Adam,
    steps: Range<usize>,
    (x, y): &(Array2<f32>, Array2<f32>),
) -> Result<f32, Box<dyn Error>> {
    let mut loss = f32::NAN;
    for step in steps {
        let (prediction, trace) = model.forward(x)?;
        let error = prediction - y;
        loss = error.mapv(|e| e * e).mean().unwrap_or(f32::NAN);
        // d(mean(e²))/de = 2e / N.
        let d_prediction = error * (2.0 / y.len() as f32);
        let (grads, _) = model.backward(&trace, &d_prediction);
        optimizer.step(model, &grads)?;
        if step % 50 == 0 {
            println!("  step {step:>3}: loss {loss:.6}");
        }
    }
    Ok(loss)
}

fn main() -> Result<(), Box<dyn Error>> {
    let data = dataset();
    let config = AdamConfig::default().lr(0.01);

    println!("uninterrupted: {} steps", FIRST + THEN);
    let (mut reference, mut reference_optimizer) = build(0, config);
    let reference_loss = train(
        &mut reference,
        &mut reference_optimizer,
        0..FIRST + THEN,
        &data,
    )?;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("checkpoint.ckpt");
    println!("interrupted: {FIRST} steps, then a checkpoint");
    {
        let (mut model, mut optimizer) = build(0, config);
        let loss = train(&mut model, &mut optimizer, 0..FIRST, &data)?;
        ckpt::save(
            ckpt::dict! {
                "epoch" => FIRST,
                "model_state_dict" => model.state_dict(),
                "optimizer_state_dict" => optimizer.state_dict(),
                "loss" => loss,
            },
            &path,
        )?;
        println!(
            "saved {} ({} bytes)",
            path.display(),
            std::fs::metadata(&path)?.len()
        );
    } // The model and the optimizer are gone, as if the process had ended.

    // Fresh objects, as a new process builds them: other weights, and the default learning
    // rate, which the checkpoint's `param_groups` replace.
    let (mut model, mut optimizer) = build(42, AdamConfig::default());
    let checkpoint = ckpt::load(&path)?;
    let _ = model.load_state_dict(&checkpoint["model_state_dict"], true)?;
    optimizer.load_state_dict(&checkpoint["optimizer_state_dict"])?;
    let epoch: usize = checkpoint.get("epoch")?;
    let loss: f32 = checkpoint.get("loss")?;
    assert_eq!(
        optimizer.groups()[0].config().lr,
        0.01,
        "lr comes from the checkpoint"
    );
    model.train();
    println!("resumed at step {epoch} (loss {loss:.6})");
    let resumed_loss = train(&mut model, &mut optimizer, epoch..FIRST + THEN, &data)?;

    same_bits(
        "model",
        &model.state_dict().into(),
        &reference.state_dict().into(),
    )?;
    same_bits(
        "optimizer",
        &optimizer.state_dict(),
        &reference_optimizer.state_dict(),
    )?;
    assert_eq!(resumed_loss.to_bits(), reference_loss.to_bits());
    println!(
        "after {} steps, resumed and uninterrupted training agree bit for bit: parameters, \
         Adam's step, exp_avg and exp_avg_sq, and the loss {resumed_loss:.6}",
        FIRST + THEN
    );

    // Inference, recipe 1: the state dict alone, loaded into a fresh model in eval mode.
    let weights = dir.path().join("model.ckpt");
    ckpt::save(model.state_dict(), &weights)?;
    let mut deployed = Mlp::new(1, 32, 1, &mut Rng::seed(7));
    let _ = deployed.load_state_dict(&ckpt::load(&weights)?, true)?;
    deployed.eval();
    assert!(!deployed.is_training());
    let x = ndarray::array![[-1.5f32], [0.0], [0.75]];
    let (prediction, _) = deployed.forward(&x)?;
    assert_eq!(prediction, model.forward(&x)?.0);
    for (x, y) in x.iter().zip(&prediction) {
        println!(
            "  model({x:5.2}) = {y:8.5}   sin(2x) = {:8.5}",
            (2.0 * x).sin()
        );
    }
    assert!(resumed_loss < 0.01, "training should fit sin(2x)");
    Ok(())
}
