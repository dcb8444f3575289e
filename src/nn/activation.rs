//! [`ReLU`] and [`GELU`], layers without parameters, and [`Activation`], the choice a
//! transformer layer takes.

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
        x.mapv(Activation::Relu.function())
    }
}

impl Layer for ReLU {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        Ok(self.forward(&x))
    }
}

/// `x Φ(x)` elementwise, with `Φ` the standard normal CDF, as `torch.nn.GELU()` (the exact
/// form, `approximate='none'`). It has no tensors.
///
/// ```
/// use ckpt::nn::GELU;
///
/// let y = GELU.forward(&ndarray::array![-1.0f32, 0.0, 1.0]);
/// assert!((y[2] - 0.841_344_7).abs() < 1e-6);
/// assert_eq!(y[1], 0.0);
/// ```
#[derive(StateDict, Clone, Copy, Debug, Default)]
pub struct GELU;

impl GELU {
    /// Applies `x Φ(x)`.
    pub fn forward<S, D>(&self, x: &ArrayBase<S, D>) -> Array<f32, D>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        x.mapv(Activation::Gelu.function())
    }
}

impl Layer for GELU {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        Ok(self.forward(&x))
    }
}

/// The activation of a transformer layer's feed-forward block, PyTorch's `activation="relu"`
/// or `"gelu"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// `max(x, 0)`, PyTorch's default.
    #[default]
    Relu,
    /// The exact GELU, `x Φ(x)`.
    Gelu,
}

impl Activation {
    /// The function, elementwise.
    pub fn function(self) -> fn(f32) -> f32 {
        match self {
            Activation::Relu => |v| if v < 0.0 { 0.0 } else { v },
            // In f64, then rounded once: PyTorch's f32 kernel is within an ulp of this.
            Activation::Gelu => |v| {
                let x = f64::from(v);
                (0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2))) as f32
            },
        }
    }
}
