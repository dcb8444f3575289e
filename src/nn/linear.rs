//! [`Linear`]: `y = x Wᵀ + b`, as `torch.nn.Linear`.

use ndarray::{Array, Array1, Array2, ArrayBase, ArrayD, Data, Dimension, IxDyn};

use super::{Layer, NnError, Rng, init};
use crate::StateDict;

/// A fully connected layer, as `torch.nn.Linear`: keys `weight` `[out, in]` and `bias` `[out]`.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{Linear, Rng};
///
/// let fc = Linear::new(5, 3, &mut Rng::seed(0));
/// assert_eq!(fc.state_dict().keys().collect::<Vec<_>>(), ["weight", "bias"]);
/// let y = fc.forward(&ndarray::Array2::<f32>::ones((2, 5))).unwrap();
/// assert_eq!(y.shape(), &[2, 3]);
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Array2<f32>,
    /// `[out_features]`, absent when built [`without_bias`](Linear::without_bias).
    pub bias: Option<Array1<f32>>,
}

/// What rebuilds a [`Linear`] saved with [`save_model`](crate::model::save_model).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinearConfig {
    /// The size of each input.
    pub in_features: usize,
    /// The size of each output.
    pub out_features: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl crate::model::Model for Linear {
    type Config = LinearConfig;

    fn config(&self) -> LinearConfig {
        LinearConfig {
            in_features: self.in_features(),
            out_features: self.out_features(),
            bias: self.bias.is_some(),
        }
    }

    fn from_config(config: LinearConfig) -> Self {
        let layer = Linear::new(config.in_features, config.out_features, &mut Rng::seed(0));
        if config.bias {
            layer
        } else {
            layer.without_bias()
        }
    }
}

impl Linear {
    /// A layer with PyTorch's default initialisation: weight and bias from
    /// `U(-1/sqrt(in), 1/sqrt(in))`.
    pub fn new(in_features: usize, out_features: usize, rng: &mut Rng) -> Self {
        let bound = init::fan_in_bound(in_features);
        Linear {
            weight: init::uniform((out_features, in_features), bound, rng),
            bias: Some(init::uniform(out_features, bound, rng)),
        }
    }

    /// The same layer with no bias (`bias=False`): no `bias` key.
    #[must_use]
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// The number of input features.
    pub fn in_features(&self) -> usize {
        self.weight.ncols()
    }

    /// The number of output features.
    pub fn out_features(&self) -> usize {
        self.weight.nrows()
    }

    /// Applies the layer to the last dimension of `x` (`[*, in]` to `[*, out]`).
    pub fn forward<S, D>(&self, x: &ArrayBase<S, D>) -> Result<Array<f32, D>, NnError>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        let shape = x.shape().to_vec();
        let (&last, lead) = shape.split_last().ok_or_else(|| self.shape_error(&shape))?;
        if last != self.in_features() {
            return Err(self.shape_error(&shape));
        }
        let rows: usize = lead.iter().product();
        let flat = x
            .to_shape((rows, last))
            .map_err(|_| self.shape_error(&shape))?;
        let mut y = flat.dot(&self.weight.t());
        if let Some(bias) = &self.bias {
            y += bias;
        }
        let mut out_shape = shape.clone();
        out_shape[lead.len()] = self.out_features();
        // The product can come back column-major (one input feature, or one row), which a
        // row-major reshape refuses; `into_shape_clone` copies only then.
        let y = y
            .into_shape_clone(IxDyn(&out_shape))
            .map_err(|_| self.shape_error(&shape))?;
        y.into_dimensionality::<D>()
            .map_err(|_| self.shape_error(&shape))
    }

    fn shape_error(&self, actual: &[usize]) -> NnError {
        NnError::shape("Linear", format!("[*, {}]", self.in_features()), actual)
    }
}

impl Layer for Linear {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        self.forward(&x)
    }
}
