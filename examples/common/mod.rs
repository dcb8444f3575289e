//! What the training examples share: a small MLP whose gradients are written by hand (ckpt has
//! no autograd; in PyTorch `loss.backward()` computes them) and a byte-for-byte comparison of
//! saved states.

use ckpt::nn::{Linear, NnError, Rng};
use ckpt::{StateDict, Tensor, Value};
use indexmap::IndexMap;
use ndarray::{Array2, Axis};

/// Gradients keyed like `named_parameters()`, as the optimizers take them.
pub(crate) type Grads = IndexMap<String, Tensor>;

/// `fc2(tanh(fc1(x)))`, keyed `fc1.weight`, `fc1.bias`, `fc2.weight`, `fc2.bias`.
#[derive(StateDict, Clone, Debug)]
pub(crate) struct Mlp {
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
    #[state(training)]
    training: bool,
}

/// What [`Mlp::backward`] needs from the forward pass.
pub(crate) struct Trace {
    input: Array2<f32>,
    hidden: Array2<f32>,
}

impl Mlp {
    /// PyTorch's default initialisation, drawn from `rng`.
    pub(crate) fn new(inputs: usize, hidden: usize, outputs: usize, rng: &mut Rng) -> Self {
        Mlp {
            fc1: Linear::new(inputs, hidden, rng),
            fc2: Linear::new(hidden, outputs, rng),
            training: true,
        }
    }

    /// The output for a batch `x` (`[N, inputs]`), and what the backward pass needs.
    pub(crate) fn forward(&self, x: &Array2<f32>) -> Result<(Array2<f32>, Trace), NnError> {
        let hidden = self.fc1.forward(x)?.mapv(f32::tanh);
        let output = self.fc2.forward(&hidden)?;
        let trace = Trace {
            input: x.clone(),
            hidden,
        };
        Ok((output, trace))
    }

    /// Backpropagates `d_output`, the gradient of the loss with respect to the output: returns
    /// the parameters' gradients and the gradient with respect to the input.
    pub(crate) fn backward(&self, trace: &Trace, d_output: &Array2<f32>) -> (Grads, Array2<f32>) {
        let mut grads = Grads::new();
        let d_hidden = d_output.dot(&self.fc2.weight);
        linear_grads(&mut grads, "fc2", &self.fc2, &trace.hidden, d_output);
        // tanh' = 1 - tanh².
        let d_pre = d_hidden * trace.hidden.mapv(|h| 1.0 - h * h);
        linear_grads(&mut grads, "fc1", &self.fc1, &trace.input, &d_pre);
        let d_input = d_pre.dot(&self.fc1.weight);
        (grads, d_input)
    }
}

/// The gradients of `y = x Wᵀ + b` given `dy`: `dW = dyᵀ x`, `db = Σ dy`.
fn linear_grads(grads: &mut Grads, name: &str, layer: &Linear, x: &Array2<f32>, dy: &Array2<f32>) {
    grads.insert(format!("{name}.weight"), Tensor::from(dy.t().dot(x)));
    if layer.bias.is_some() {
        grads.insert(format!("{name}.bias"), Tensor::from(dy.sum_axis(Axis(0))));
    }
}

/// Every tensor of `value` with its little-endian bytes, in order.
fn tensor_bytes(value: &Value<'_>) -> Vec<(String, Vec<u8>)> {
    value
        .tensors()
        .into_iter()
        .map(|(key, tensor)| (key, tensor.to_le_bytes().unwrap().into_owned()))
        .collect()
}

/// Checks that two states (a model's `state_dict()`, an optimizer's) hold the same keys, the
/// same plain values and bit-identical tensors; the error names the first difference.
pub(crate) fn same_bits(what: &str, a: &Value<'_>, b: &Value<'_>) -> Result<(), String> {
    let (a_bytes, b_bytes) = (tensor_bytes(a), tensor_bytes(b));
    let a_keys: Vec<&str> = a_bytes.iter().map(|(key, _)| key.as_str()).collect();
    let b_keys: Vec<&str> = b_bytes.iter().map(|(key, _)| key.as_str()).collect();
    if a_keys != b_keys {
        return Err(format!("{what}: keys differ: {a_keys:?} vs {b_keys:?}"));
    }
    if let Some((key, _)) = a_bytes.iter().zip(&b_bytes).find(|(x, y)| x.1 != y.1) {
        return Err(format!("{what}: the bytes of {:?} differ", key.0));
    }
    // Tensors are equal; this compares what is not a tensor (step counts, hyper-parameters).
    if a != b {
        return Err(format!("{what}: plain values differ: {a:?} vs {b:?}"));
    }
    Ok(())
}
