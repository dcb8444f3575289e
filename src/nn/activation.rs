//! [`ReLU`]: `max(x, 0)`, a layer without parameters.

use ndarray::{Array, ArrayBase, ArrayD, Data, Dimension};

use super::{Layer, NnError};
use crate::StateDict;

/// `max(x, 0)` elementwise, as `torch.nn.ReLU`. It has no tensors, but in a
/// [`Sequential`](super::Sequential) it still takes an index, as in PyTorch.
#[derive(StateDict, Clone, Copy, Debug, Default)]
pub struct ReLU;

impl ReLU {
    /// Applies `max(x, 0)`; NaN stays NaN, as in PyTorch.
    pub fn forward<S, D>(&self, x: &ArrayBase<S, D>) -> Array<f32, D>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        x.mapv(|v| if v < 0.0 { 0.0 } else { v })
    }
}

impl Layer for ReLU {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        Ok(self.forward(&x))
    }
}
