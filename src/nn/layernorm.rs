//! [`LayerNorm`]: normalisation over the trailing dimensions, as `torch.nn.LayerNorm`.

use ndarray::{Array, ArrayBase, ArrayD, Data, Dimension, IxDyn};

use super::{Layer, NnError};
use crate::StateDict;

/// Normalises over the last `normalized_shape.len()` dimensions with their mean and biased
/// variance, then scales and shifts elementwise, as `torch.nn.LayerNorm`: keys `weight` (ones)
/// and `bias` (zeros), both of shape `normalized_shape`; no `bias` built
/// [`without_bias`](LayerNorm::without_bias) (`bias=False`).
#[derive(StateDict, Clone, Debug)]
pub struct LayerNorm {
    /// The scale, of shape `normalized_shape`.
    pub weight: ArrayD<f32>,
    /// The shift, of shape `normalized_shape`, absent without bias.
    pub bias: Option<ArrayD<f32>>,
    #[state(skip)]
    eps: f32,
}

/// What rebuilds a [`LayerNorm`] saved with [`save_model`](crate::model::save_model).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerNormConfig {
    /// The trailing dimensions normalised over.
    pub normalized_shape: Vec<usize>,
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Whether there is a `bias`; absent in files written before it existed.
    #[serde(default = "with_bias")]
    pub bias: bool,
}

fn with_bias() -> bool {
    true
}

impl crate::model::Model for LayerNorm {
    type Config = LayerNormConfig;

    fn config(&self) -> LayerNormConfig {
        LayerNormConfig {
            normalized_shape: self.weight.shape().to_vec(),
            eps: self.eps,
            bias: self.bias.is_some(),
        }
    }

    fn from_config(config: LayerNormConfig) -> Self {
        let norm = LayerNorm::new(&config.normalized_shape).eps(config.eps);
        if config.bias {
            norm
        } else {
            norm.without_bias()
        }
    }
}

impl LayerNorm {
    /// A layer over trailing dimensions `normalized_shape` with `eps = 1e-5`.
    pub fn new(normalized_shape: &[usize]) -> Self {
        LayerNorm {
            weight: ArrayD::ones(IxDyn(normalized_shape)),
            bias: Some(ArrayD::zeros(IxDyn(normalized_shape))),
            eps: 1e-5,
        }
    }

    /// Sets `eps`, added to the variance before the square root.
    #[must_use]
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// The same layer without `bias` (`bias=False`).
    #[must_use]
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// The trailing shape that is normalised.
    pub fn normalized_shape(&self) -> &[usize] {
        self.weight.shape()
    }

    /// Normalises `x`, whose shape must end with `normalized_shape`.
    pub fn forward<S, D>(&self, x: &ArrayBase<S, D>) -> Result<Array<f32, D>, NnError>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        let norm = self.normalized_shape();
        let shape = x.shape();
        let error = || NnError::shape("LayerNorm", format!("[*, {norm:?}]"), shape);
        if !shape.ends_with(norm) {
            return Err(error());
        }
        let width: usize = norm.iter().product();
        let rows = shape.iter().product::<usize>() / width.max(1);
        let mut y = x.to_shape((rows, width)).map_err(|_| error())?.into_owned();
        let weight = self.weight.iter().copied().collect::<Vec<_>>();
        let bias = match &self.bias {
            Some(bias) => bias.iter().copied().collect::<Vec<_>>(),
            None => vec![0.0; width],
        };
        for mut row in y.rows_mut() {
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let inv = 1.0 / (var + f64::from(self.eps)).sqrt();
            for ((v, &w), &b) in row.iter_mut().zip(&weight).zip(&bias) {
                *v = ((f64::from(*v) - mean) * inv) as f32 * w + b;
            }
        }
        // `y` keeps the memory order of `x`, which can be column-major; `into_shape_clone`
        // copies only then.
        y.into_shape_clone(x.raw_dim()).map_err(|_| error())
    }
}

impl Layer for LayerNorm {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        self.forward(&x)
    }
}
