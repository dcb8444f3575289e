//! [`Dropout`]: random zeroing in training, the identity in evaluation.

use ndarray::{Array, ArrayBase, ArrayD, Data, Dimension};

use super::{Layer, NnError, Rng};
use crate::StateDict;

/// Zeroes each element with probability `p` in training mode and scales the rest by
/// `1 / (1 - p)`, as `torch.nn.Dropout`; the identity in evaluation mode.
///
/// It has no tensors in its state dict, as in PyTorch. Its generator's state is under the key
/// `rng` of [`rng_state`](crate::StateDict::rng_state) instead: save that beside the state
/// dict, restore it with [`load_rng_state`](crate::StateDict::load_rng_state), and a resumed
/// run draws the masks an uninterrupted one would.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::Dropout;
/// use ndarray::Array1;
///
/// let mut dropout = Dropout::new(0.5, 42).unwrap();
/// let x = Array1::<f32>::ones(8);
/// let y = dropout.forward(&x);
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// assert!(dropout.state_dict().is_empty());
///
/// // The generator's state, taken now, gives a fresh layer the next mask.
/// let saved = dropout.rng_state().to_owned_tensors();
/// let mut resumed = Dropout::new(0.5, 7).unwrap();
/// resumed.load_rng_state(&saved).unwrap();
/// assert_eq!(resumed.forward(&x), dropout.forward(&x));
///
/// dropout.eval();
/// assert_eq!(dropout.forward(&x), x);
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct Dropout {
    #[state(training)]
    training: bool,
    #[state(skip)]
    p: f32,
    rng: Rng,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1]`, drawing its masks from a generator seeded with
    /// `seed`; in training mode, as PyTorch modules start.
    pub fn new(p: f32, seed: u64) -> Result<Self, NnError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(NnError::config(
                "Dropout",
                format!("dropout probability has to be between 0 and 1, but got {p}"),
            ));
        }
        Ok(Dropout {
            training: true,
            p,
            rng: Rng::seed(seed),
        })
    }

    /// Draws from now on from a generator seeded with `seed`, as a clone of a layer must, so
    /// that clones do not drop the same elements.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Rng::seed(seed);
    }

    /// The probability of zeroing an element.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Applies dropout in training mode, nothing in evaluation mode.
    pub fn forward<S, D>(&mut self, x: &ArrayBase<S, D>) -> Array<f32, D>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        if !self.training || self.p == 0.0 {
            return x.to_owned();
        }
        if self.p == 1.0 {
            return Array::zeros(x.raw_dim());
        }
        let scale = 1.0 / (1.0 - self.p);
        x.mapv(|v| {
            if self.rng.unit() < self.p {
                0.0
            } else {
                v * scale
            }
        })
    }
}

impl Layer for Dropout {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        Ok(self.forward(&x))
    }
}
