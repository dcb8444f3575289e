//! [`BatchNorm1d`] and [`BatchNorm2d`]: batch normalisation with running statistics.

use ndarray::{Array, Array0, Array1, ArrayBase, ArrayD, Axis, Data, Dimension, Ix3};

use super::{Layer, NnError};
use crate::state::{KeyPath, Role, TensorSource, Visitor, VisitorMut};
use crate::{StateDict, Tensor};

/// What both batch norms hold; each wraps one with `#[state(flatten)]`, so the keys are the same.
#[derive(StateDict, Clone, Debug)]
struct Norm {
    weight: Array1<f32>,
    bias: Array1<f32>,
    #[state(buffer)]
    running_mean: Array1<f32>,
    #[state(buffer)]
    running_var: Array1<f32>,
    #[state(buffer)]
    num_batches_tracked: Array0<i64>,
    #[state(training)]
    training: bool,
    #[state(skip)]
    momentum: Option<f32>,
    #[state(skip)]
    eps: f32,
}

/// What rebuilds a batch-norm layer saved with [`save_model`](crate::model::save_model).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchNormConfig {
    /// The number of channels.
    pub num_features: usize,
    /// Added to the variance before the square root.
    pub eps: f32,
    /// The running statistics' momentum; `None` for a cumulative average.
    pub momentum: Option<f32>,
}

impl Norm {
    fn new(num_features: usize) -> Self {
        Norm {
            weight: Array1::ones(num_features),
            bias: Array1::zeros(num_features),
            running_mean: Array1::zeros(num_features),
            running_var: Array1::ones(num_features),
            num_batches_tracked: Array0::zeros(()),
            training: true,
            momentum: Some(0.1),
            eps: 1e-5,
        }
    }

    /// PyTorch's versioned-load rule (`_NormBase._load_from_state_dict`): a checkpoint saved
    /// before version 2, or without versions at all (a state dict rebuilt in Python), may lack
    /// `num_batches_tracked`, which then keeps this layer's current count instead of being
    /// missing.
    fn upgrade_counter(
        &self,
        prefix: &str,
        saved_version: Option<i64>,
        source: &dyn TensorSource,
        supply: &mut dyn FnMut(String, Tensor),
    ) {
        if saved_version.is_some_and(|version| version >= 2) {
            return;
        }
        let key = if prefix.is_empty() {
            "num_batches_tracked".to_owned()
        } else {
            format!("{prefix}.num_batches_tracked")
        };
        if source.get_tensor(&key).is_none() {
            supply(key, Tensor::from(self.num_batches_tracked.clone()));
        }
    }

    /// Normalises `x`, whose dimensions are `ndims`, over every axis but axis 1 (channels).
    fn forward<S, D>(
        &mut self,
        layer: &'static str,
        ndims: &[usize],
        x: &ArrayBase<S, D>,
    ) -> Result<Array<f32, D>, NnError>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        let c = self.weight.len();
        let shape = x.shape();
        let expected = || {
            let dims = ndims.iter().map(|d| format!("{d}-D")).collect::<Vec<_>>();
            format!("{} with {c} channels in axis 1", dims.join(" or "))
        };
        if !ndims.contains(&shape.len()) || shape[1] != c {
            return Err(NnError::shape(layer, expected(), shape));
        }
        let (n, rest) = (shape[0], shape[2..].iter().product::<usize>());
        let x3 = x
            .to_shape((n, c, rest))
            .map_err(|_| NnError::shape(layer, expected(), shape))?;
        let count = n * rest;
        let (mean, var) = if self.training {
            if count <= 1 {
                return Err(NnError::shape(
                    layer,
                    format!(
                        "{} (more than 1 value per channel when training)",
                        expected()
                    ),
                    shape,
                ));
            }
            let (mean, var) = batch_stats(&x3);
            self.update_running(&mean, &var, count);
            (mean, var)
        } else {
            (self.running_mean.clone(), self.running_var.clone())
        };
        let scale: Array1<f32> = ndarray::Zip::from(&self.weight)
            .and(&var)
            .map_collect(|&w, &v| w / (v + self.eps).sqrt());
        let mut y = x3.into_owned();
        for ((mut channel, &m), (&s, &b)) in y
            .axis_iter_mut(Axis(1))
            .zip(&mean)
            .zip(scale.iter().zip(&self.bias))
        {
            channel.mapv_inplace(|v| (v - m) * s + b);
        }
        // `y` keeps the memory order of `x`, which can be column-major; `into_shape_clone`
        // copies only then.
        y.into_shape_clone(x.raw_dim())
            .map_err(|_| NnError::shape(layer, expected(), shape))
    }

    /// PyTorch's update: the running mean and the unbiased variance move by `momentum`, or by
    /// `1 / num_batches_tracked` (a cumulative average) when the momentum is `None`.
    fn update_running(&mut self, mean: &Array1<f32>, var: &Array1<f32>, count: usize) {
        let tracked = self.num_batches_tracked.first_mut();
        if let Some(t) = tracked {
            *t = t.saturating_add(1);
        }
        let batches = self.num_batches_tracked.first().copied().unwrap_or(1);
        let factor = self.momentum.unwrap_or(1.0 / batches.max(1) as f32);
        let unbias = count as f32 / (count - 1) as f32;
        ndarray::Zip::from(&mut self.running_mean)
            .and(mean)
            .for_each(|r, &m| *r = (1.0 - factor) * *r + factor * m);
        ndarray::Zip::from(&mut self.running_var)
            .and(var)
            .for_each(|r, &v| *r = (1.0 - factor) * *r + factor * v * unbias);
    }
}

/// Per-channel mean and biased variance of `[N, C, L]`, accumulated in `f64`.
fn batch_stats<S: Data<Elem = f32>>(x: &ArrayBase<S, Ix3>) -> (Array1<f32>, Array1<f32>) {
    let c = x.shape()[1];
    let mut mean = Array1::zeros(c);
    let mut var = Array1::zeros(c);
    for (i, channel) in x.axis_iter(Axis(1)).enumerate() {
        let count = channel.len() as f64;
        let m = channel.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
        let v = channel
            .iter()
            .map(|&v| (f64::from(v) - m).powi(2))
            .sum::<f64>()
            / count;
        mean[i] = m as f32;
        var[i] = v as f32;
    }
    (mean, var)
}

macro_rules! batch_norm {
    ($(#[$doc:meta])* $name:ident, $ndims:expr, $dims:literal) => {
        $(#[$doc])*
        ///
        /// Keys: `weight`, `bias` (parameters, ones and zeros), `running_mean`, `running_var`
        /// (buffers, zeros and ones) and `num_batches_tracked` (an `I64` scalar buffer). In
        /// training mode the forward pass normalises with the batch's mean and biased variance
        /// and moves the running statistics toward the batch's mean and unbiased variance by
        /// `momentum` (0.1); in evaluation mode it normalises with the running statistics.
        ///
        /// Version 2, as PyTorch's: a checkpoint of version 1, or with no versions (a state
        /// dict rebuilt in Python, without `_metadata`), may lack `num_batches_tracked`, and
        /// loads keeping the layer's current count, as in PyTorch; one of version 2 may not.
        #[derive(Clone, Debug)]
        pub struct $name {
            norm: Norm,
        }

        /// The keys of its `Norm`, with PyTorch's version and versioned-load rule.
        impl StateDict for $name {
            fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
                self.norm.visit(path, role, visitor);
            }

            fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
                self.norm.visit_mut(path, role, visitor);
            }

            fn set_training(&mut self, training: bool) {
                self.norm.set_training(training);
            }

            fn training_mode(&self) -> Option<bool> {
                self.norm.training_mode()
            }

            fn module_name(&self) -> &'static str {
                stringify!($name)
            }

            fn version(&self) -> Option<i64> {
                Some(2)
            }

            fn upgrade_state(
                &self,
                prefix: &str,
                saved_version: Option<i64>,
                source: &dyn TensorSource,
                supply: &mut dyn FnMut(String, Tensor),
            ) {
                self.norm.upgrade_counter(prefix, saved_version, source, supply);
            }
        }

        /// Saved whole with its channel count, `eps` and momentum.
        impl crate::model::Model for $name {
            type Config = BatchNormConfig;

            fn config(&self) -> BatchNormConfig {
                BatchNormConfig {
                    num_features: self.norm.weight.len(),
                    eps: self.norm.eps,
                    momentum: self.norm.momentum,
                }
            }

            fn from_config(config: BatchNormConfig) -> Self {
                $name::new(config.num_features)
                    .eps(config.eps)
                    .momentum(config.momentum)
            }
        }

        impl $name {
            /// A layer over `num_features` channels with PyTorch's defaults: `eps = 1e-5`,
            /// `momentum = 0.1`, in training mode.
            pub fn new(num_features: usize) -> Self {
                $name { norm: Norm::new(num_features) }
            }

            /// Sets `eps`, added to the variance before the square root.
            #[must_use]
            pub fn eps(mut self, eps: f32) -> Self {
                self.norm.eps = eps;
                self
            }

            /// Sets the momentum; `None` keeps a cumulative average, as `momentum=None`.
            #[must_use]
            pub fn momentum(mut self, momentum: Option<f32>) -> Self {
                self.norm.momentum = momentum;
                self
            }

            /// The number of channels.
            pub fn num_features(&self) -> usize {
                self.norm.weight.len()
            }

            /// The scale, `[num_features]`.
            pub fn weight(&self) -> &Array1<f32> {
                &self.norm.weight
            }

            /// The shift, `[num_features]`.
            pub fn bias(&self) -> &Array1<f32> {
                &self.norm.bias
            }

            /// The running mean, `[num_features]`.
            pub fn running_mean(&self) -> &Array1<f32> {
                &self.norm.running_mean
            }

            /// The running (unbiased) variance, `[num_features]`.
            pub fn running_var(&self) -> &Array1<f32> {
                &self.norm.running_var
            }

            /// How many training-mode batches have updated the running statistics.
            pub fn num_batches_tracked(&self) -> i64 {
                self.norm.num_batches_tracked.first().copied().unwrap_or(0)
            }

            #[doc = concat!("Normalises a ", $dims, " input over every axis but channels (axis 1).")]
            pub fn forward<S, D>(&mut self, x: &ArrayBase<S, D>) -> Result<Array<f32, D>, NnError>
            where
                S: Data<Elem = f32>,
                D: Dimension,
            {
                self.norm.forward(stringify!($name), $ndims, x)
            }
        }

        impl Layer for $name {
            fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
                self.forward(&x)
            }
        }
    };
}

batch_norm!(
    /// Batch normalisation over `[N, C]` or `[N, C, L]` inputs, as `torch.nn.BatchNorm1d`.
    BatchNorm1d,
    &[2, 3],
    "`[N, C]` or `[N, C, L]`"
);

batch_norm!(
    /// Batch normalisation over `[N, C, H, W]` inputs, as `torch.nn.BatchNorm2d`.
    BatchNorm2d,
    &[4],
    "`[N, C, H, W]`"
);
