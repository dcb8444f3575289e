//! [`CosineAnnealingLr`]: cosine annealing from the base learning rate to `eta_min`.

use std::f64::consts::PI;

use super::scheduler::current_lrs;
use super::{Progress, Schedule, SchedulerError, StateReader};
use crate::Value;
use crate::optim::ParamGroups;

/// `torch.optim.lr_scheduler.CosineAnnealingLR`: anneals every group's learning rate from its
/// base to `eta_min` over `t_max` epochs along a cosine, then back up, and so on (no restarts).
///
/// The closed form is `eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2`;
/// each step uses PyTorch's recursive form from the current learning rate (so that other
/// changes to it compound), the closed form on the first step after a resume through
/// `last_epoch`, and PyTorch's special step at the bottom of each period.
#[doc(alias = "CosineAnnealingLR")]
#[derive(Clone, Debug, PartialEq)]
pub struct CosineAnnealingLr {
    t_max: i64,
    eta_min: f64,
}

impl CosineAnnealingLr {
    /// Half a period of `t_max` epochs down to `eta_min` (PyTorch's default is 0.0).
    pub fn new(t_max: i64, eta_min: f64) -> Self {
        CosineAnnealingLr { t_max, eta_min }
    }

    fn check(t_max: i64) -> Result<(), String> {
        if t_max <= 0 {
            return Err(format!("T_max must be a positive integer, got {t_max}"));
        }
        Ok(())
    }

    fn closed_form(&self, base_lrs: &[f64], epoch: i64) -> Vec<f64> {
        let cos = (PI * epoch as f64 / self.t_max as f64).cos();
        base_lrs
            .iter()
            .map(|base| self.eta_min + (base - self.eta_min) * (1.0 + cos) / 2.0)
            .collect()
    }
}

impl Schedule for CosineAnnealingLr {
    fn name(&self) -> &'static str {
        "CosineAnnealingLR"
    }

    fn attach(&mut self, _: &mut dyn ParamGroups, _: i64) -> Result<(), SchedulerError> {
        CosineAnnealingLr::check(self.t_max).map_err(|message| SchedulerError::Config {
            scheduler: "CosineAnnealingLR",
            message,
        })
    }

    fn lr(
        &mut self,
        at: Progress<'_>,
        optimizer: &mut dyn ParamGroups,
    ) -> Result<Vec<f64>, SchedulerError> {
        let lrs = current_lrs(optimizer)?;
        let (epoch, t_max, eta_min) = (at.last_epoch, self.t_max, self.eta_min);
        if at.initial {
            return Ok(lrs);
        }
        if at.step_count == 1 && epoch > 0 {
            // `(last_epoch) * math.pi / T_max`: the same product as the closed form's.
            return Ok(self.closed_form(at.base_lrs, epoch));
        }
        // In i128, as Python's integers would not overflow: epoch and T_max are any i64 a
        // state dict holds.
        let (wide_epoch, wide_t_max) = (i128::from(epoch), i128::from(t_max));
        if (wide_epoch - 1 - wide_t_max).rem_euclid(2 * wide_t_max) == 0 {
            // The bottom of a period, where the recursive form would divide by zero.
            let cos = (PI / t_max as f64).cos();
            return Ok(lrs
                .iter()
                .zip(at.base_lrs)
                .map(|(lr, base)| lr + (base - eta_min) * (1.0 - cos) / 2.0)
                .collect());
        }
        let ratio = (1.0 + (PI * epoch as f64 / t_max as f64).cos())
            / (1.0 + (PI * (wide_epoch - 1) as f64 / t_max as f64).cos());
        Ok(lrs
            .into_iter()
            .map(|lr| ratio * (lr - eta_min) + eta_min)
            .collect())
    }

    fn closed_form_lr(&self, at: Progress<'_>) -> Option<Vec<f64>> {
        Some(self.closed_form(at.base_lrs, at.last_epoch))
    }

    fn state(&self) -> Vec<(&'static str, Value<'static>)> {
        vec![
            ("T_max", Value::Int(self.t_max)),
            ("eta_min", Value::Float(self.eta_min)),
        ]
    }

    fn load_state(&mut self, state: &StateReader<'_, '_>) -> Result<(), SchedulerError> {
        let t_max = state.int("T_max")?;
        CosineAnnealingLr::check(t_max).map_err(|message| state.error("T_max", message))?;
        self.eta_min = state.float("eta_min")?;
        self.t_max = t_max;
        Ok(())
    }
}
