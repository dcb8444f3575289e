//! Recipe 4 of PyTorch's guide to saving models, as its seq2seq translation tutorial uses it: a
//! GRU encoder and a GRU decoder with embeddings, saved with their optimizers in one file.
//! Greedy decoding gives the same tokens (and bit-identical scores) after the load as before
//! the save; the encoder alone is then loaded into a fresh encoder.
//!
//! ```python
//! torch.save({'encoder': encoder.state_dict(), 'decoder': decoder.state_dict(),
//!             'encoder_optimizer': encoder_optimizer.state_dict(),
//!             'decoder_optimizer': decoder_optimizer.state_dict()}, PATH)
//!
//! checkpoint = torch.load(PATH, weights_only=True)
//! encoder.load_state_dict(checkpoint['encoder'])
//! decoder.load_state_dict(checkpoint['decoder'])
//! encoder_optimizer.load_state_dict(checkpoint['encoder_optimizer'])
//! decoder_optimizer.load_state_dict(checkpoint['decoder_optimizer'])
//! encoder.eval(); decoder.eval()
//! ```
//!
//! Run it with `cargo run --example seq2seq`; it exits non-zero if decoding changes.

use std::error::Error;

use ckpt::StateDict;
use ckpt::nn::{Embedding, GRU, Linear, NnError, Rng, RnnConfig};
use ckpt::optim::{Sgd, SgdConfig};
use indexmap::IndexMap;
use ndarray::{Array1, Array2, Array3, Axis, s};

const SOS: i64 = 0;
const EOS: i64 = 1;
const VOCAB: usize = 12;
const EMBED: usize = 8;
const HIDDEN: usize = 16;
const MAX_LEN: usize = 6;

/// `EncoderRNN`: `embedding` then `gru`, keys `embedding.weight`, `gru.weight_ih_l0`, ….
#[derive(StateDict)]
struct Encoder {
    embedding: Embedding,
    gru: GRU,
    #[state(training)]
    training: bool,
}

impl Encoder {
    fn new(rng: &mut Rng) -> Result<Self, NnError> {
        Ok(Encoder {
            embedding: Embedding::new(VOCAB, EMBED, rng),
            gru: GRU::new(EMBED, HIDDEN, RnnConfig::default(), rng)?,
            training: true,
        })
    }

    /// The final hidden state `[1, N, H]` after reading `tokens` (`[L, N]`).
    fn forward(&self, tokens: &Array2<i64>) -> Result<Array3<f32>, NnError> {
        let embedded = self.embedding.forward(tokens)?;
        let (_, hidden) = self.gru.forward(&embedded, None)?;
        Ok(hidden)
    }
}

/// `DecoderRNN`: `embedding`, `gru` and the projection `out` onto the vocabulary.
#[derive(StateDict)]
struct Decoder {
    embedding: Embedding,
    gru: GRU,
    out: Linear,
    #[state(training)]
    training: bool,
}

impl Decoder {
    fn new(rng: &mut Rng) -> Result<Self, NnError> {
        Ok(Decoder {
            embedding: Embedding::new(VOCAB, EMBED, rng),
            gru: GRU::new(EMBED, HIDDEN, RnnConfig::default(), rng)?,
            out: Linear::new(HIDDEN, VOCAB, rng),
            training: true,
        })
    }

    /// One step from the previous tokens (`[N]`) and hidden state.
    fn step(&self, tokens: &Array1<i64>, hidden: &Array3<f32>) -> Result<Step, NnError> {
        let embedded = self
            .embedding
            .forward(&tokens.view().insert_axis(Axis(0)))?;
        let (output, hidden) = self.gru.forward(&embedded, Some(hidden.view()))?;
        let output = output.index_axis_move(Axis(0), 0);
        let scores = self.out.forward(&output)?;
        Ok(Step {
            output,
            scores,
            hidden,
        })
    }
}

/// What one decoder step computes.
struct Step {
    /// The GRU's output `[N, H]`.
    output: Array2<f32>,
    /// Scores over the vocabulary `[N, V]`.
    scores: Array2<f32>,
    /// The next hidden state `[1, N, H]`.
    hidden: Array3<f32>,
}

/// Greedy decoding of every column of `inputs` (`[L, N]`): `MAX_LEN` tokens each, the highest
/// score at every step, and every step's scores.
fn greedy(
    encoder: &Encoder,
    decoder: &Decoder,
    inputs: &Array2<i64>,
) -> Result<(Array2<i64>, Vec<Array2<f32>>), NnError> {
    let mut hidden = encoder.forward(inputs)?;
    let mut tokens = Array1::from_elem(inputs.ncols(), SOS);
    let mut decoded = Array2::zeros((inputs.ncols(), MAX_LEN));
    let mut all_scores = Vec::new();
    for t in 0..MAX_LEN {
        let step = decoder.step(&tokens, &hidden)?;
        tokens = step.scores.map_axis(Axis(1), |row| argmax(row.iter()));
        decoded.column_mut(t).assign(&tokens);
        all_scores.push(step.scores);
        hidden = step.hidden;
    }
    Ok((decoded, all_scores))
}

fn argmax<'a>(scores: impl Iterator<Item = &'a f32>) -> i64 {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &score) in scores.enumerate() {
        if score > best.1 {
            best = (i, score);
        }
    }
    best.0 as i64
}

/// A few steps of teacher-forced training of the decoder's projection `out` towards
/// `targets` (`[N, MAX_LEN]`), with cross-entropy; the GRUs and embeddings stay frozen, since
/// backpropagating through them is autograd's work, not ckpt's. Returns the last loss.
fn train_projection(
    encoder: &Encoder,
    decoder: &mut Decoder,
    optimizer: &mut Sgd,
    inputs: &Array2<i64>,
    targets: &Array2<i64>,
    steps: usize,
) -> Result<f32, Box<dyn Error>> {
    let n = inputs.ncols();
    let mut loss = f32::NAN;
    for step in 0..steps {
        let mut hidden = encoder.forward(inputs)?;
        let mut tokens = Array1::from_elem(n, SOS);
        let mut d_weight = Array2::<f32>::zeros((VOCAB, HIDDEN));
        let mut d_bias = Array1::<f32>::zeros(VOCAB);
        loss = 0.0;
        for t in 0..MAX_LEN {
            let step = decoder.step(&tokens, &hidden)?;
            let target = targets.column(t);
            // Softmax minus one-hot is the gradient of cross-entropy with respect to the scores.
            let mut d_scores = softmax(&step.scores);
            for (mut row, &y) in d_scores.rows_mut().into_iter().zip(target) {
                loss -= row[y as usize].ln();
                row[y as usize] -= 1.0;
            }
            d_scores /= (n * MAX_LEN) as f32;
            d_weight += &d_scores.t().dot(&step.output);
            d_bias += &d_scores.sum_axis(Axis(0));
            tokens = target.to_owned();
            hidden = step.hidden;
        }
        loss /= (n * MAX_LEN) as f32;
        let grads = IndexMap::from([
            ("out.weight".to_owned(), ckpt::Tensor::from(d_weight)),
            ("out.bias".to_owned(), ckpt::Tensor::from(d_bias)),
        ]);
        optimizer.step(decoder, &grads)?;
        if step % 10 == 0 {
            println!("  step {step:>2}: cross-entropy {loss:.4}");
        }
    }
    Ok(loss)
}

fn softmax(scores: &Array2<f32>) -> Array2<f32> {
    let mut p = scores.clone();
    for mut row in p.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        row.mapv_inplace(|x| (x - max).exp());
        let sum = row.sum();
        row /= sum;
    }
    p
}

fn main() -> Result<(), Box<dyn Error>> {
    // Three sentences of four tokens, one per column; the task: the sentence reversed, then EOS.
    let sentences = ndarray::array![[2i64, 3, 4, 5], [6, 7, 8, 9], [10, 11, 2, 7]];
    let inputs = sentences.t().to_owned();
    let mut targets = Array2::from_elem((sentences.nrows(), MAX_LEN), EOS);
    targets
        .slice_mut(s![.., ..4])
        .assign(&sentences.slice(s![.., ..;-1]));

    let rng = &mut Rng::seed(0);
    let mut encoder = Encoder::new(rng)?;
    let mut decoder = Decoder::new(rng)?;
    let config = SgdConfig::default().lr(0.5).momentum(0.9);
    // The encoder stays frozen here, so its optimizer takes no step and holds no state; it is
    // saved all the same, as the tutorial saves both.
    let encoder_optimizer = Sgd::new(&encoder, config);
    let mut decoder_optimizer = Sgd::new(&decoder, config);
    println!("training the decoder's projection for a few steps");
    let loss = train_projection(
        &encoder,
        &mut decoder,
        &mut decoder_optimizer,
        &inputs,
        &targets,
        30,
    )?;
    println!("cross-entropy after training: {loss:.4}");
    encoder.eval();
    decoder.eval();
    let (before, scores_before) = greedy(&encoder, &decoder, &inputs)?;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("seq2seq.ckpt");
    ckpt::save(
        ckpt::dict! {
            "encoder" => encoder.state_dict(),
            "decoder" => decoder.state_dict(),
            "encoder_optimizer" => encoder_optimizer.state_dict(),
            "decoder_optimizer" => decoder_optimizer.state_dict(),
        },
        &path,
    )?;
    println!("saved {}:", path.display());
    for info in ckpt::inspect(&path)?.tensors {
        println!("  {:<50} {} {:?}", info.key, info.dtype, info.shape);
    }

    // Fresh models and optimizers, other weights: everything comes from the file.
    let checkpoint = ckpt::load(&path)?;
    let rng = &mut Rng::seed(1);
    let mut encoder2 = Encoder::new(rng)?;
    let mut decoder2 = Decoder::new(rng)?;
    let mut encoder_optimizer2 = Sgd::new(&encoder2, SgdConfig::default());
    let mut decoder_optimizer2 = Sgd::new(&decoder2, SgdConfig::default());
    let _ = encoder2.load_state_dict(&checkpoint["encoder"], true)?;
    let _ = decoder2.load_state_dict(&checkpoint["decoder"], true)?;
    encoder_optimizer2.load_state_dict(&checkpoint["encoder_optimizer"])?;
    decoder_optimizer2.load_state_dict(&checkpoint["decoder_optimizer"])?;
    encoder2.eval();
    decoder2.eval();
    assert_eq!(decoder_optimizer2.groups()[0].config().lr, 0.5);
    assert!(decoder_optimizer2.state("out.weight").is_some());

    let (after, scores_after) = greedy(&encoder2, &decoder2, &inputs)?;
    assert_eq!(after, before, "greedy decoding changed after the load");
    for (a, b) in scores_before.iter().zip(&scores_after) {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "decoder scores changed after the load"
        );
    }
    for ((sentence, decoded), target) in sentences
        .rows()
        .into_iter()
        .zip(after.rows())
        .zip(targets.rows())
    {
        println!("  {sentence} -> {decoded}   (target {target})");
    }
    println!("greedy decoding is identical before the save and after the load");

    // Only the encoder, say to reuse it in another model: `checkpoint["encoder"]` is its state
    // dict, and the rest of the file is left alone.
    let checkpoint = ckpt::load(&path)?;
    let mut encoder_only = Encoder::new(&mut Rng::seed(2))?;
    let report = encoder_only.load_state_dict(&checkpoint["encoder"], true)?;
    println!("{report}");
    let hidden = encoder_only.forward(&inputs)?;
    assert_eq!(hidden, encoder.forward(&inputs)?);
    println!(
        "the encoder alone loads into a fresh encoder: same hidden states {:?}",
        hidden.shape()
    );
    Ok(())
}
