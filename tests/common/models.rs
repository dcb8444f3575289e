//! Small models the tests save and load.

use ckpt::{StateDict, Tensor};
use ndarray::{Array1, Array2};

/// `nn.Linear`.
#[derive(StateDict, Debug, Clone, PartialEq)]
pub struct Linear {
    pub weight: Array2<f32>,
    pub bias: Array1<f32>,
}

impl Linear {
    pub fn new(out: usize, inp: usize, seed: f32) -> Self {
        Linear {
            weight: Array2::from_shape_fn((out, inp), |(i, j)| {
                ((seed + 1.0) * (i * inp + j + 1) as f32).sin()
            }),
            bias: Array1::from_shape_fn(out, |i| ((seed + 2.0) * (i + 1) as f32).cos()),
        }
    }

    pub fn forward(&self, x: &Array2<f32>) -> Array2<f32> {
        x.dot(&self.weight.t()) + &self.bias
    }
}

/// Linear + batch norm statistics + a mode flag: a small model with buffers.
#[derive(StateDict, Debug, Clone, PartialEq)]
pub struct Net {
    pub fc1: Linear,
    #[state(buffer)]
    pub running_mean: Tensor,
    #[state(buffer)]
    pub num_batches_tracked: Tensor,
    pub fc2: Linear,
    #[state(training)]
    pub training: bool,
}

impl Net {
    pub fn new(seed: f32) -> Self {
        Net {
            fc1: Linear::new(8, 4, seed),
            running_mean: Tensor::from(Array1::from_elem(8, seed)),
            num_batches_tracked: Tensor::scalar(seed as i64),
            fc2: Linear::new(3, 8, seed + 0.5),
            training: true,
        }
    }

    pub fn forward(&self, x: &Array2<f32>) -> Array2<f32> {
        let mean = self.running_mean.to_array::<f32, ndarray::Ix1>().unwrap();
        let h = (self.fc1.forward(x) - &mean).mapv(|v| v.max(0.0));
        self.fc2.forward(&h)
    }
}

/// Every key with its little-endian bytes.
pub fn bytes_of(model: &dyn StateDict) -> Vec<(String, Vec<u8>)> {
    model
        .state_dict()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_le_bytes().unwrap().into_owned()))
        .collect()
}
