//! Recipe 4 of PyTorch's guide to saving models, in Rust: several models and optimizers in one
//! file. A generator and a discriminator learn a 1-D distribution; both models and both
//! optimizers are saved together, loaded into fresh objects, and training goes on with losses
//! bit-identical to training that was never interrupted.
//!
//! ```python
//! torch.save({'modelA_state_dict': netG.state_dict(), 'modelB_state_dict': netD.state_dict(),
//!             'optimizerA_state_dict': optimizerG.state_dict(),
//!             'optimizerB_state_dict': optimizerD.state_dict()}, PATH)
//!
//! modelA = TheModelAClass(*args, **kwargs)  # and modelB, optimizerA, optimizerB
//! checkpoint = torch.load(PATH, weights_only=True)
//! modelA.load_state_dict(checkpoint['modelA_state_dict'])
//! modelB.load_state_dict(checkpoint['modelB_state_dict'])
//! optimizerA.load_state_dict(checkpoint['optimizerA_state_dict'])
//! optimizerB.load_state_dict(checkpoint['optimizerB_state_dict'])
//! modelA.train(); modelB.train()
//! ```
//!
//! Run it with `cargo run --example gan`; it exits non-zero if a loss after the reload differs.

mod common;

use std::error::Error;
use std::ops::Range;

use ckpt::StateDict;
use ckpt::nn::Rng;
use ckpt::optim::{Adam, AdamConfig, Sgd, SgdConfig};
use common::{Mlp, same_bits};
use ndarray::{Array2, Axis, concatenate};

const BATCH: usize = 64;
const NOISE: usize = 2;
/// The distribution to learn: `N(MEAN, STD²)`.
const MEAN: f32 = 3.0;
const STD: f32 = 0.5;

/// Steps before the checkpoint, and after it.
const FIRST: usize = 400;
const THEN: usize = 200;

/// The generator (model A) with its Adam, and the discriminator (model B) with its SGD.
struct Gan {
    generator: Mlp,
    discriminator: Mlp,
    optimizer_g: Adam,
    optimizer_d: Sgd,
}

impl Gan {
    /// Models drawn from `seed`; optimizers with `config_g` and `config_d`.
    fn new(seed: u64, config_g: AdamConfig, config_d: SgdConfig) -> Self {
        let rng = &mut Rng::seed(seed);
        let generator = Mlp::new(NOISE, 16, 1, rng);
        let discriminator = Mlp::new(1, 16, 1, rng);
        Gan {
            optimizer_g: Adam::new(&generator, config_g),
            optimizer_d: Sgd::new(&discriminator, config_d),
            generator,
            discriminator,
        }
    }

    /// One step of each player, as PyTorch's DCGAN tutorial: the discriminator on real and
    /// (detached) fake samples, then the generator against the updated discriminator.
    /// Returns the two losses.
    fn step(&mut self, step: usize) -> Result<(f32, f32), Box<dyn Error>> {
        // The batch is a function of the step alone, so a resumed run sees the same data
        // without saving a generator state.
        let rng = &mut Rng::seed(1_000_000 + step as u64);
        let real = Array2::from_shape_simple_fn((BATCH, 1), || MEAN + STD * rng.normal());
        let noise = Array2::from_shape_simple_fn((BATCH, NOISE), || rng.normal());

        // Discriminator: BCE-with-logits of real samples against 1 and fake ones against 0,
        // each averaged over the batch: d/dlogit = (sigmoid(logit) - label) / BATCH.
        let (fake, _) = self.generator.forward(&noise)?;
        let samples = concatenate(Axis(0), &[real.view(), fake.view()])?;
        let labels = Array2::from_shape_fn((2 * BATCH, 1), |(i, _)| f32::from(i < BATCH));
        let (logits, trace) = self.discriminator.forward(&samples)?;
        let loss_d = bce_with_logits(&logits, &labels) * 2.0;
        let d_logits = (logits.mapv(sigmoid) - &labels) / BATCH as f32;
        let (grads_d, _) = self.discriminator.backward(&trace, &d_logits);
        self.optimizer_d.step(&mut self.discriminator, &grads_d)?;

        // Generator: fake samples judged real, through the discriminator to the generator.
        let (fake, trace_g) = self.generator.forward(&noise)?;
        let (logits, trace_d) = self.discriminator.forward(&fake)?;
        let ones = Array2::ones((BATCH, 1));
        let loss_g = bce_with_logits(&logits, &ones);
        let d_logits = (logits.mapv(sigmoid) - &ones) / BATCH as f32;
        let (_, d_fake) = self.discriminator.backward(&trace_d, &d_logits);
        let (grads_g, _) = self.generator.backward(&trace_g, &d_fake);
        self.optimizer_g.step(&mut self.generator, &grads_g)?;
        Ok((loss_d, loss_g))
    }

    /// Trains over `steps`, printing every 25th; returns every step's losses.
    fn train(&mut self, steps: Range<usize>) -> Result<Vec<(f32, f32)>, Box<dyn Error>> {
        let mut losses = Vec::new();
        for step in steps {
            let (loss_d, loss_g) = self.step(step)?;
            if step % 50 == 0 {
                println!("  step {step:>3}: loss_D {loss_d:.5}  loss_G {loss_g:.5}");
            }
            losses.push((loss_d, loss_g));
        }
        Ok(losses)
    }

    /// The mean and standard deviation of generated samples.
    fn sample_stats(&self) -> Result<(f32, f32), Box<dyn Error>> {
        let rng = &mut Rng::seed(7);
        let noise = Array2::from_shape_simple_fn((1000, NOISE), || rng.normal());
        let (samples, _) = self.generator.forward(&noise)?;
        let mean = samples.mean().unwrap_or(f32::NAN);
        Ok((mean, samples.std(0.0)))
    }
}

/// The mean binary cross-entropy of `logits` against `labels`, computed stably.
fn bce_with_logits(logits: &Array2<f32>, labels: &Array2<f32>) -> f32 {
    let softplus = |x: f32| x.max(0.0) + (-x.abs()).exp().ln_1p();
    let per_sample = ndarray::Zip::from(logits)
        .and(labels)
        .map_collect(|&l, &y| y * softplus(-l) + (1.0 - y) * softplus(l));
    per_sample.mean().unwrap_or(f32::NAN)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn main() -> Result<(), Box<dyn Error>> {
    // DCGAN's Adam betas for the generator; SGD with momentum for the discriminator.
    let config_g = AdamConfig::default().lr(0.01).betas(0.5, 0.999);
    let config_d = SgdConfig::default().lr(0.05).momentum(0.9);

    println!("training {FIRST} steps, then a checkpoint");
    let mut gan = Gan::new(0, config_g, config_d);
    gan.train(0..FIRST)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gan.ckpt");
    ckpt::save(
        ckpt::dict! {
            "modelA_state_dict" => gan.generator.state_dict(),
            "modelB_state_dict" => gan.discriminator.state_dict(),
            "optimizerA_state_dict" => gan.optimizer_g.state_dict(),
            "optimizerB_state_dict" => gan.optimizer_d.state_dict(),
        },
        &path,
    )?;
    println!(
        "saved {} ({} bytes)",
        path.display(),
        std::fs::metadata(&path)?.len()
    );

    println!("continuing without the reload");
    let uninterrupted = gan.train(FIRST..FIRST + THEN)?;

    // Fresh models with other weights and optimizers with default settings: everything
    // comes from the file.
    let mut resumed = Gan::new(99, AdamConfig::default(), SgdConfig::default());
    let checkpoint = ckpt::load(&path)?;
    let _ = resumed
        .generator
        .load_state_dict(&checkpoint["modelA_state_dict"], true)?;
    let _ = resumed
        .discriminator
        .load_state_dict(&checkpoint["modelB_state_dict"], true)?;
    resumed
        .optimizer_g
        .load_state_dict(&checkpoint["optimizerA_state_dict"])?;
    resumed
        .optimizer_d
        .load_state_dict(&checkpoint["optimizerB_state_dict"])?;
    resumed.generator.train();
    resumed.discriminator.train();
    assert_eq!(resumed.optimizer_g.groups()[0].config().betas, (0.5, 0.999));
    assert_eq!(resumed.optimizer_d.groups()[0].config().momentum, 0.9);

    println!("continuing after the reload into fresh objects");
    let after_reload = resumed.train(FIRST..FIRST + THEN)?;
    for (step, (a, b)) in (FIRST..).zip(uninterrupted.iter().zip(&after_reload)) {
        assert!(
            a.0.to_bits() == b.0.to_bits() && a.1.to_bits() == b.1.to_bits(),
            "step {step}: losses {a:?} without the reload, {b:?} after it"
        );
    }
    same_bits(
        "generator",
        &resumed.generator.state_dict().into(),
        &gan.generator.state_dict().into(),
    )?;
    same_bits(
        "optimizer_g",
        &resumed.optimizer_g.state_dict(),
        &gan.optimizer_g.state_dict(),
    )?;
    println!("all {THEN} steps after the reload give bit-identical losses");

    let (mean, std) = resumed.sample_stats()?;
    println!("generated samples: mean {mean:.3}, std {std:.3} (target: mean {MEAN}, std {STD})");
    Ok(())
}
