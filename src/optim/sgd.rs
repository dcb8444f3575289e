//! [`SgdConfig`]: the update rule of `torch.optim.SGD`.

use ndarray::{ArrayD, ArrayViewD, Zip};

use super::state_dict::{read_flag, read_number, zero_as_int};
use super::{Algorithm, OptimError, ParamState};
use crate::Value;

/// The hyper-parameters of [`Sgd`](super::Sgd), with PyTorch's defaults (`lr = 1e-3`, no
/// momentum, dampening or weight decay).
///
/// For each parameter `p` with gradient `g`: `g += weight_decay * p`; with momentum,
/// `buf = g` on the first step and `buf = momentum * buf + (1 - dampening) * g` after, then
/// `g = g + momentum * buf` (Nesterov) or `g = buf`; finally `p -= lr * g`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor; 0 keeps no state.
    pub momentum: f64,
    /// Dampening of the gradient's contribution to the momentum.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl SgdConfig {
    /// Sets the learning rate.
    #[must_use]
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }

    /// Sets the momentum.
    #[must_use]
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the dampening.
    #[must_use]
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }

    /// Sets the weight decay.
    #[must_use]
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Sets Nesterov momentum.
    #[must_use]
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// Sets maximisation.
    #[must_use]
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl Algorithm for SgdConfig {
    fn state_entries(&self) -> &'static [(&'static str, bool)] {
        &[("momentum_buffer", false)]
    }

    fn update(&self, param: &mut ArrayD<f32>, grad: &ArrayViewD<'_, f32>, state: &mut ParamState) {
        let sign = if self.maximize { -1.0 } else { 1.0 };
        let wd = self.weight_decay as f32;
        let mut d_p = grad.mapv(|g| sign * g);
        if self.weight_decay != 0.0 {
            Zip::from(&mut d_p)
                .and(&*param)
                .for_each(|d, &p| *d += wd * p);
        }
        if self.momentum != 0.0 {
            let (momentum, keep) = (self.momentum as f32, (1.0 - self.dampening) as f32);
            let buf = match state.get_mut("momentum_buffer") {
                Some(buf) => {
                    Zip::from(&mut *buf)
                        .and(&d_p)
                        .for_each(|b, &d| *b = *b * momentum + keep * d);
                    buf.clone()
                }
                None => {
                    state.insert("momentum_buffer".to_owned(), d_p.clone());
                    d_p.clone()
                }
            };
            if self.nesterov {
                Zip::from(&mut d_p)
                    .and(&buf)
                    .for_each(|d, &b| *d += momentum * b);
            } else {
                d_p = buf;
            }
        }
        let lr = self.lr as f32;
        Zip::from(param).and(&d_p).for_each(|p, &d| *p += -lr * d);
    }

    fn param_group(&self) -> Vec<(&'static str, Value<'static>)> {
        vec![
            ("lr", self.lr.into()),
            ("momentum", zero_as_int(self.momentum)),
            ("dampening", zero_as_int(self.dampening)),
            ("weight_decay", zero_as_int(self.weight_decay)),
            ("nesterov", self.nesterov.into()),
            ("maximize", self.maximize.into()),
            ("foreach", Value::None),
            ("differentiable", false.into()),
            ("fused", Value::None),
        ]
    }

    fn hyper_parameters(&self) -> &'static [&'static str] {
        &[
            "lr",
            "momentum",
            "dampening",
            "weight_decay",
            "nesterov",
            "maximize",
        ]
    }

    fn load_param_group(&mut self, group: &Value<'_>) -> Result<(), OptimError> {
        read_number(group, "lr", &mut self.lr)?;
        read_number(group, "momentum", &mut self.momentum)?;
        read_number(group, "dampening", &mut self.dampening)?;
        read_number(group, "weight_decay", &mut self.weight_decay)?;
        read_flag(group, "nesterov", &mut self.nesterov)?;
        read_flag(group, "maximize", &mut self.maximize)
    }
}
