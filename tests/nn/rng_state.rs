//! Dropout's generators are part of a checkpoint: training with dropout, saved to a file and
//! resumed in another process, in a model built from another seed, draws bit for bit the
//! masks, outputs and weights of the run that never stopped; without the generators it does
//! not.

use std::path::Path;
use std::process::Command;

use ckpt::nn::{Dropout, Linear, RNG_STATE_LEN, Rng};
use ckpt::state::TensorSource;
use ckpt::{StateDict, Tensor, Value};
use ndarray::{Array2, Axis};

/// `fc2(dropout(relu(fc1(x))))`, with a second dropout on the input.
#[derive(StateDict)]
struct Net {
    input_dropout: Dropout,
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
}

impl Net {
    fn new(seed: u64) -> Self {
        let rng = &mut Rng::seed(seed);
        Net {
            input_dropout: Dropout::new(0.2, rng.next_u64()).unwrap(),
            fc1: Linear::new(6, 16, rng),
            dropout: Dropout::new(0.5, rng.next_u64()).unwrap(),
            fc2: Linear::new(16, 3, rng),
        }
    }

    /// The output and the dropped hidden activations the gradient needs.
    fn forward(&mut self, x: &Array2<f32>) -> (Array2<f32>, Array2<f32>) {
        let x = self.input_dropout.forward(x);
        let h = self.fc1.forward(&x).unwrap().mapv(|v| v.max(0.0));
        let h = self.dropout.forward(&h);
        (self.fc2.forward(&h).unwrap(), h)
    }
}

/// The batch of step `step`: inputs and regression targets.
fn batch(step: usize) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((8, 6), |(i, j)| {
        ((step * 31 + i * 7 + j * 3) % 17) as f32 / 8.0 - 1.0
    });
    let t = Array2::from_shape_fn((8, 3), |(i, j)| ((i + 2 * j + step) % 5) as f32 / 4.0);
    (x, t)
}

/// One SGD step on the mean squared error, updating `fc2` (the gradient flows through both
/// dropout masks); returns the step's output.
fn step(net: &mut Net, step: usize) -> Array2<f32> {
    let (x, t) = batch(step);
    let (y, h) = net.forward(&x);
    let dy = (&y - &t) * (2.0 / y.len() as f32);
    let lr = 0.1;
    net.fc2.weight.scaled_add(-lr, &dy.t().dot(&h));
    if let Some(bias) = &mut net.fc2.bias {
        bias.scaled_add(-lr, &dy.sum_axis(Axis(0)));
    }
    y
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn generators_are_their_own_map_beside_pytorchs_keys() {
    let net = Net::new(0);
    let keys: Vec<_> = net.state_dict().keys().map(str::to_owned).collect();
    assert_eq!(keys, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    let rng = net.rng_state();
    assert_eq!(
        rng.keys().collect::<Vec<_>>(),
        ["input_dropout.rng", "dropout.rng"]
    );
    for (_, state) in rng.iter() {
        assert_eq!(state.dtype(), ckpt::DType::U8);
        assert_eq!(state.shape(), [RNG_STATE_LEN]);
    }
    assert_eq!(
        net.named_parameters().len(),
        4,
        "a generator is no parameter"
    );
    assert!(net.named_buffers().contains_key("dropout.rng"));
}

/// Set in the child process that resumes from the checkpoint this names.
const CHILD: &str = "CKPT_NN_RESUME_FROM";
const FIRST: usize = 5;
const TOTAL: usize = 12;

/// The child's part: a fresh model from another seed, the checkpoint's state dict and
/// generators, the remaining steps; their outputs and the final state go to `resumed.ckpt`
/// beside the checkpoint.
fn resume_in_this_process(path: &Path) {
    let checkpoint = ckpt::load(path).unwrap();
    let start: usize = checkpoint.get("step").unwrap();
    let mut net = Net::new(42);
    let _ = net
        .load_state_dict(&checkpoint["model_state_dict"], true)
        .unwrap();
    let report = net.load_rng_state(&checkpoint["rng_state"]).unwrap();
    assert_eq!(report.loaded_keys, ["input_dropout.rng", "dropout.rng"]);
    let outputs: Vec<(String, Tensor)> = (start..TOTAL)
        .map(|i| (i.to_string(), Tensor::from(step(&mut net, i))))
        .collect();
    let outputs: Value<'_> = outputs.iter().map(|(k, t)| (k.as_str(), t)).collect();
    ckpt::save(
        ckpt::dict! {
            "outputs" => outputs,
            "model_state_dict" => net.state_dict(),
            "rng_state" => net.rng_state(),
        },
        path.with_file_name("resumed.ckpt"),
    )
    .unwrap();
}

/// Five steps, a checkpoint, and the other seven steps in another process: every output of
/// those, the weights and the generators at the end are the uninterrupted run's, bit for bit.
#[test]
fn a_run_resumed_in_another_process_draws_the_masks_of_an_uninterrupted_one() {
    if let Some(path) = std::env::var_os(CHILD) {
        resume_in_this_process(Path::new(&path));
        return;
    }
    let mut reference = Net::new(0);
    let expected: Vec<Array2<f32>> = (0..TOTAL).map(|i| step(&mut reference, i)).collect();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.ckpt");
    let mut net = Net::new(0);
    for (i, expected) in expected.iter().enumerate().take(FIRST) {
        assert_eq!(bits(&step(&mut net, i)), bits(expected));
    }
    ckpt::save(
        ckpt::dict! {
            "model_state_dict" => net.state_dict(),
            "rng_state" => net.rng_state(),
            "step" => FIRST,
        },
        &path,
    )
    .unwrap();

    let test = crate::common::test_name(
        module_path!(),
        "a_run_resumed_in_another_process_draws_the_masks_of_an_uninterrupted_one",
    );
    let output = Command::new(std::env::current_exe().unwrap())
        .args([&test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the resuming process failed:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let resumed = ckpt::load(dir.path().join("resumed.ckpt")).unwrap();
    for (i, expected) in expected.iter().enumerate().skip(FIRST) {
        let actual = resumed["outputs"].get_tensor(&i.to_string()).unwrap();
        let actual: Array2<f32> = actual.to_array().unwrap();
        assert_eq!(bits(&actual), bits(expected), "step {i}");
    }
    for (key, tensor) in reference.state_dict().iter() {
        let actual = resumed["model_state_dict"].get_tensor(key).unwrap();
        assert_eq!(actual, *tensor, "{key} after {TOTAL} steps");
    }
    for (key, tensor) in reference.rng_state().iter() {
        let actual = resumed["rng_state"].get_tensor(key).unwrap();
        assert_eq!(actual, *tensor, "generator {key}");
    }

    // The control: the same resume without the generators draws other masks.
    let checkpoint = ckpt::load(&path).unwrap();
    let mut without = Net::new(42);
    let _ = without
        .load_state_dict(&checkpoint["model_state_dict"], true)
        .unwrap();
    assert_ne!(bits(&step(&mut without, FIRST)), bits(&expected[FIRST]));
}

#[test]
fn restoring_generators_is_strict_and_all_or_nothing() {
    let mut net = Net::new(0);
    let before = net.rng_state().to_owned_tensors();
    let mut partial = Net::new(1).rng_state().to_owned_tensors();
    partial.shift_remove("dropout.rng");
    partial.insert("extra.rng".to_owned(), before["input_dropout.rng"].clone());
    let err = net.load_rng_state(&partial).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Error(s) in loading state_dict for Net (random generators):\n\t\
         Missing key(s) in state_dict: \"dropout.rng\".\n\t\
         Unexpected key(s) in state_dict: \"extra.rng\"."
    );
    for (key, tensor) in net.rng_state().iter() {
        assert_eq!(
            *tensor,
            before[key].view(),
            "{key} unchanged after the error"
        );
    }
    // A state dict is no generator state: the model's parameters are unexpected there.
    let state = net.state_dict().to_owned_tensors();
    assert!(net.load_rng_state(&state).is_err());
}
