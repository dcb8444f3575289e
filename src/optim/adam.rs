//! [`AdamConfig`] and [`AdamWConfig`]: the update rules of `torch.optim.Adam` and `AdamW`.

use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

use super::state_dict::{read_flag, read_number, wrong, zero_as_int};
use super::{Algorithm, OptimError, ParamState};
use crate::Value;

/// The hyper-parameters of [`Adam`](super::Adam), with PyTorch's defaults (`lr = 1e-3`,
/// `betas = (0.9, 0.999)`, `eps = 1e-8`, no weight decay, no AMSGrad).
///
/// For each parameter `p` with gradient `g`, at step `t`: weight decay adds `weight_decay * p`
/// to `g` (or, decoupled as in AdamW, scales `p` by `1 - lr * weight_decay`);
/// `m = β₁ m + (1 - β₁) g`, `v = β₂ v + (1 - β₂) g²`, and
/// `p -= lr / (1 - β₁ᵗ) * m / (sqrt(v) / sqrt(1 - β₂ᵗ) + eps)`, where AMSGrad uses the running
/// maximum of `v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator for stability.
    pub eps: f64,
    /// Weight decay: an L2 penalty, or decoupled when `decoupled_weight_decay` is set.
    pub weight_decay: f64,
    /// Use the maximum of past second moments (AMSGrad).
    pub amsgrad: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// Apply weight decay to the parameter directly, as AdamW.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled_weight_decay: false,
        }
    }
}

/// The builder methods both configurations share.
macro_rules! setters {
    () => {
        /// Sets the learning rate.
        #[must_use]
        pub fn lr(mut self, lr: f64) -> Self {
            self.lr = lr;
            self
        }

        /// Sets the moment decay rates.
        #[must_use]
        pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
            self.betas = (beta1, beta2);
            self
        }

        /// Sets `eps`.
        #[must_use]
        pub fn eps(mut self, eps: f64) -> Self {
            self.eps = eps;
            self
        }

        /// Sets the weight decay.
        #[must_use]
        pub fn weight_decay(mut self, weight_decay: f64) -> Self {
            self.weight_decay = weight_decay;
            self
        }

        /// Sets AMSGrad.
        #[must_use]
        pub fn amsgrad(mut self, amsgrad: bool) -> Self {
            self.amsgrad = amsgrad;
            self
        }

        /// Sets maximisation.
        #[must_use]
        pub fn maximize(mut self, maximize: bool) -> Self {
            self.maximize = maximize;
            self
        }
    };
}

impl AdamConfig {
    setters!();
}

/// The hyper-parameters of [`AdamW`](super::AdamW): Adam's, with decoupled weight decay and
/// PyTorch's AdamW default `weight_decay = 0.01`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator for stability.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Use the maximum of past second moments (AMSGrad).
    pub amsgrad: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamWConfig {
    setters!();

    fn as_adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
            maximize: self.maximize,
            decoupled_weight_decay: true,
        }
    }
}

const ADAM_STATE: &[(&str, bool)] = &[
    ("step", true),
    ("exp_avg", false),
    ("exp_avg_sq", false),
    ("max_exp_avg_sq", false),
];

const ADAM_HYPER_PARAMETERS: &[&str] = &[
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "amsgrad",
    "maximize",
    "decoupled_weight_decay",
];

impl Algorithm for AdamConfig {
    fn state_entries(&self) -> &'static [(&'static str, bool)] {
        ADAM_STATE
    }

    fn update(&self, param: &mut ArrayD<f32>, grad: &ArrayViewD<'_, f32>, state: &mut ParamState) {
        let sign = if self.maximize { -1.0 } else { 1.0 };
        let mut g = grad.mapv(|g| sign * g);
        if self.weight_decay != 0.0 {
            if self.decoupled_weight_decay {
                let keep = (1.0 - self.lr * self.weight_decay) as f32;
                param.mapv_inplace(|p| p * keep);
            } else {
                let wd = self.weight_decay as f32;
                Zip::from(&mut g)
                    .and(&*param)
                    .for_each(|g, &p| *g += wd * p);
            }
        }
        let zeros = || ArrayD::<f32>::zeros(param.raw_dim());
        for (name, scalar) in ADAM_STATE {
            if *name != "max_exp_avg_sq" || self.amsgrad {
                state.entry((*name).to_owned()).or_insert_with(|| {
                    if *scalar {
                        ArrayD::zeros(IxDyn(&[]))
                    } else {
                        zeros()
                    }
                });
            }
        }
        // PyTorch keeps `step` as an f32 tensor and reads it back as a Python float.
        let step = state.get_mut("step").map_or(1.0, |s| {
            s.mapv_inplace(|t| t + 1.0);
            s.first().copied().map_or(1.0, f64::from)
        });
        let (beta1, beta2) = self.betas;
        let (w1, w2, b2) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32, beta2 as f32);
        let mut second = zeros();
        if let Some(m) = state.get_mut("exp_avg") {
            // `lerp_(g, 1 - β₁)`.
            Zip::from(m).and(&g).for_each(|m, &g| *m += w1 * (g - *m));
        }
        if let Some(v) = state.get_mut("exp_avg_sq") {
            Zip::from(&mut *v)
                .and(&g)
                .for_each(|v, &g| *v = *v * b2 + w2 * g * g);
            second.assign(v);
        }
        if self.amsgrad
            && let Some(max) = state.get_mut("max_exp_avg_sq")
        {
            Zip::from(&mut *max)
                .and(&second)
                .for_each(|max, &v| *max = max.max(v));
            second.assign(max);
        }
        let step_size = (self.lr / (1.0 - beta1.powf(step))) as f32;
        let bc2_sqrt = (1.0 - beta2.powf(step)).sqrt() as f32;
        let eps = self.eps as f32;
        if let Some(m) = state.get("exp_avg") {
            Zip::from(param)
                .and(m)
                .and(&second)
                .for_each(|p, &m, &v| *p += -step_size * (m / (v.sqrt() / bc2_sqrt + eps)));
        }
    }

    fn param_group(&self) -> Vec<(&'static str, Value<'static>)> {
        vec![
            ("lr", self.lr.into()),
            ("betas", vec![self.betas.0, self.betas.1].into()),
            ("eps", self.eps.into()),
            ("weight_decay", zero_as_int(self.weight_decay)),
            ("amsgrad", self.amsgrad.into()),
            ("maximize", self.maximize.into()),
            ("foreach", Value::None),
            ("capturable", false.into()),
            ("differentiable", false.into()),
            ("fused", Value::None),
            ("decoupled_weight_decay", self.decoupled_weight_decay.into()),
        ]
    }

    fn hyper_parameters(&self) -> &'static [&'static str] {
        ADAM_HYPER_PARAMETERS
    }

    fn load_param_group(&mut self, group: &Value<'_>) -> Result<(), OptimError> {
        read_number(group, "lr", &mut self.lr)?;
        match &group["betas"] {
            Value::None => {}
            Value::List(items) if items.len() == 2 => {
                let beta = |i: usize| {
                    items[i]
                        .as_f64()
                        .ok_or_else(|| wrong("betas", "two numbers", &group["betas"]))
                };
                self.betas = (beta(0)?, beta(1)?);
            }
            other => return Err(wrong("betas", "two numbers", other)),
        }
        read_number(group, "eps", &mut self.eps)?;
        read_number(group, "weight_decay", &mut self.weight_decay)?;
        read_flag(group, "amsgrad", &mut self.amsgrad)?;
        read_flag(group, "maximize", &mut self.maximize)?;
        read_flag(
            group,
            "decoupled_weight_decay",
            &mut self.decoupled_weight_decay,
        )
    }
}

impl Algorithm for AdamWConfig {
    fn state_entries(&self) -> &'static [(&'static str, bool)] {
        ADAM_STATE
    }

    fn update(&self, param: &mut ArrayD<f32>, grad: &ArrayViewD<'_, f32>, state: &mut ParamState) {
        self.as_adam().update(param, grad, state);
    }

    fn param_group(&self) -> Vec<(&'static str, Value<'static>)> {
        self.as_adam().param_group()
    }

    fn hyper_parameters(&self) -> &'static [&'static str] {
        ADAM_HYPER_PARAMETERS
    }

    fn load_param_group(&mut self, group: &Value<'_>) -> Result<(), OptimError> {
        let mut adam = self.as_adam();
        adam.load_param_group(group)?;
        if !adam.decoupled_weight_decay {
            return Err(wrong(
                "decoupled_weight_decay",
                "True for AdamW",
                &group["decoupled_weight_decay"],
            ));
        }
        *self = AdamWConfig {
            lr: adam.lr,
            betas: adam.betas,
            eps: adam.eps,
            weight_decay: adam.weight_decay,
            amsgrad: adam.amsgrad,
            maximize: adam.maximize,
        };
        Ok(())
    }
}
