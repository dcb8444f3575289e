//! [`LinearLr`]: a linear ramp of a multiplicative factor, for warm-ups.

use super::scheduler::current_lrs;
use super::{Progress, Schedule, SchedulerError, StateReader};
use crate::Value;
use crate::optim::ParamGroups;

/// `torch.optim.lr_scheduler.LinearLR`: scales every group's learning rate by a factor going
/// linearly from `start_factor` at epoch 0 to `end_factor` at `total_iters`, then leaves it.
///
/// Closed form: `base_lr * (start + (end - start) * min(total_iters, epoch) / total_iters)`;
/// each step uses PyTorch's recursive form.
#[doc(alias = "LinearLR")]
#[derive(Clone, Debug, PartialEq)]
pub struct LinearLr {
    start_factor: f64,
    end_factor: f64,
    total_iters: i64,
}

impl LinearLr {
    /// From `start_factor` to `end_factor` over `total_iters` epochs (PyTorch's defaults:
    /// 1/3, 1.0 and 5).
    pub fn new(start_factor: f64, end_factor: f64, total_iters: i64) -> Self {
        LinearLr {
            start_factor,
            end_factor,
            total_iters,
        }
    }

    /// PyTorch's checks: the key at fault and its message.
    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !(self.start_factor > 0.0 && self.start_factor <= 1.0) {
            return Err((
                "start_factor",
                "Starting multiplicative factor expected to be greater than 0 and less or equal to 1.",
            ));
        }
        if !(0.0..=1.0).contains(&self.end_factor) {
            return Err((
                "end_factor",
                "Ending multiplicative factor expected to be between 0 and 1.",
            ));
        }
        Ok(())
    }
}

impl Schedule for LinearLr {
    fn name(&self) -> &'static str {
        "LinearLR"
    }

    fn attach(&mut self, _: &mut dyn ParamGroups, _: i64) -> Result<(), SchedulerError> {
        self.check().map_err(|(_, message)| SchedulerError::Config {
            scheduler: "LinearLR",
            message: message.to_owned(),
        })
    }

    fn lr(
        &mut self,
        at: Progress<'_>,
        optimizer: &mut dyn ParamGroups,
    ) -> Result<Vec<f64>, SchedulerError> {
        let lrs = current_lrs(optimizer)?;
        let (start, end, total) = (self.start_factor, self.end_factor, self.total_iters);
        if at.last_epoch == 0 {
            return Ok(lrs.into_iter().map(|lr| lr * start).collect());
        }
        if at.initial || at.last_epoch > total {
            return Ok(lrs);
        }
        let factor = 1.0
            + (end - start) / (total as f64 * start + (at.last_epoch - 1) as f64 * (end - start));
        Ok(lrs.into_iter().map(|lr| lr * factor).collect())
    }

    fn closed_form_lr(&self, at: Progress<'_>) -> Option<Vec<f64>> {
        let (start, end, total) = (self.start_factor, self.end_factor, self.total_iters);
        let factor = start + (end - start) * total.min(at.last_epoch) as f64 / total as f64;
        Some(at.base_lrs.iter().map(|base| base * factor).collect())
    }

    fn state(&self) -> Vec<(&'static str, Value<'static>)> {
        vec![
            ("start_factor", Value::Float(self.start_factor)),
            ("end_factor", Value::Float(self.end_factor)),
            ("total_iters", Value::Int(self.total_iters)),
        ]
    }

    fn load_state(&mut self, state: &StateReader<'_, '_>) -> Result<(), SchedulerError> {
        let loaded = LinearLr {
            start_factor: state.float("start_factor")?,
            end_factor: state.float("end_factor")?,
            total_iters: state.int("total_iters")?,
        };
        loaded
            .check()
            .map_err(|(key, message)| state.error(key, message))?;
        *self = loaded;
        Ok(())
    }
}
