//! [`GroupNorm`]: normalisation over groups of channels, as `torch.nn.GroupNorm`.

use ndarray::{Array, Array1, ArrayBase, ArrayD, Data, Dimension};

use super::{Layer, NnError};
use crate::StateDict;

/// Splits the channels (axis 1) of `[N, C, *]` into `num_groups` groups and normalises each
/// group of each sample with its mean and biased variance, then scales and shifts per channel,
/// as `torch.nn.GroupNorm`: keys `weight` (ones) and `bias` (zeros), both `[C]`, or none
/// [`without_affine`](GroupNorm::without_affine). It has no running statistics, so training
/// and evaluation compute the same.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::GroupNorm;
///
/// let norm = GroupNorm::new(2, 6)?;
/// assert_eq!(norm.state_dict().keys().collect::<Vec<_>>(), ["weight", "bias"]);
/// let y = norm.forward(&ndarray::Array3::<f32>::ones((2, 6, 5)))?;
/// assert_eq!(y.shape(), &[2, 6, 5]);
/// # Ok::<(), ckpt::nn::NnError>(())
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct GroupNorm {
    /// The per-channel scale `[C]`, absent without affine parameters.
    pub weight: Option<Array1<f32>>,
    /// The per-channel shift `[C]`, absent without affine parameters.
    pub bias: Option<Array1<f32>>,
    #[state(skip)]
    num_groups: usize,
    #[state(skip)]
    num_channels: usize,
    #[state(skip)]
    eps: f32,
}

impl GroupNorm {
    /// `num_groups` groups over `num_channels` channels, `eps = 1e-5`, with `weight` and
    /// `bias`; fails unless `num_groups` divides `num_channels`, as PyTorch does.
    pub fn new(num_groups: usize, num_channels: usize) -> Result<Self, NnError> {
        if num_groups == 0 || num_channels % num_groups != 0 {
            return Err(NnError::config(
                "GroupNorm",
                format!(
                    "num_channels ({num_channels}) must be divisible by num_groups ({num_groups})"
                ),
            ));
        }
        Ok(GroupNorm {
            weight: Some(Array1::ones(num_channels)),
            bias: Some(Array1::zeros(num_channels)),
            num_groups,
            num_channels,
            eps: 1e-5,
        })
    }

    /// Sets `eps`, added to the variance before the square root.
    #[must_use]
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// The same layer without `weight` and `bias` (`affine=False`): an empty state dict.
    #[must_use]
    pub fn without_affine(mut self) -> Self {
        self.weight = None;
        self.bias = None;
        self
    }

    /// The number of groups.
    pub fn num_groups(&self) -> usize {
        self.num_groups
    }

    /// The number of channels.
    pub fn num_channels(&self) -> usize {
        self.num_channels
    }

    /// Normalises `x` of shape `[N, C, *]`.
    pub fn forward<S, D>(&self, x: &ArrayBase<S, D>) -> Result<Array<f32, D>, NnError>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        let shape = x.shape();
        let c = self.num_channels;
        let error = || {
            NnError::shape(
                "GroupNorm",
                format!("[N, {c}, *] with at least 2 dimensions"),
                shape,
            )
        };
        if shape.len() < 2 || shape[1] != c {
            return Err(error());
        }
        let n = shape[0];
        let per_channel: usize = shape[2..].iter().product();
        let per_group = c / self.num_groups * per_channel;
        // Row-major, each sample's groups are consecutive runs of `per_group` values.
        let mut y = x
            .to_shape((n * self.num_groups, per_group))
            .map_err(|_| error())?
            .into_owned();
        for (row, mut group) in y.rows_mut().into_iter().enumerate() {
            let count = group.len().max(1) as f64;
            let mean = group.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
            let var = group
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / count;
            let inv = 1.0 / (var + f64::from(self.eps)).sqrt();
            let first_channel = row % self.num_groups * (c / self.num_groups);
            for (i, v) in group.iter_mut().enumerate() {
                let channel = first_channel + i / per_channel.max(1);
                let mut out = ((f64::from(*v) - mean) * inv) as f32;
                if let Some(weight) = &self.weight {
                    out *= weight[channel];
                }
                if let Some(bias) = &self.bias {
                    out += bias[channel];
                }
                *v = out;
            }
        }
        y.into_shape_clone(x.raw_dim()).map_err(|_| error())
    }
}

impl Layer for GroupNorm {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        self.forward(&x)
    }
}
