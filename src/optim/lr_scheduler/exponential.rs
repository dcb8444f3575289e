//! [`ExponentialLr`]: decays by `gamma` every epoch.

use super::scheduler::current_lrs;
use super::{Progress, Schedule, SchedulerError, StateReader};
use crate::Value;
use crate::optim::ParamGroups;

/// `torch.optim.lr_scheduler.ExponentialLR`: multiplies every group's learning rate by `gamma`
/// at every epoch (the constructor's step leaves it as it is).
///
/// Closed form: `base_lr * gamma ** epoch`.
#[doc(alias = "ExponentialLR")]
#[derive(Clone, Debug, PartialEq)]
pub struct ExponentialLr {
    gamma: f64,
}

impl ExponentialLr {
    /// Decays by `gamma` every epoch.
    pub fn new(gamma: f64) -> Self {
        ExponentialLr { gamma }
    }
}

impl Schedule for ExponentialLr {
    fn name(&self) -> &'static str {
        "ExponentialLR"
    }

    fn lr(
        &mut self,
        at: Progress<'_>,
        optimizer: &mut dyn ParamGroups,
    ) -> Result<Vec<f64>, SchedulerError> {
        let lrs = current_lrs(optimizer)?;
        // A scheduler resumed through `last_epoch` must not decay once more when built.
        if at.initial {
            return Ok(lrs);
        }
        Ok(lrs.into_iter().map(|lr| lr * self.gamma).collect())
    }

    fn closed_form_lr(&self, at: Progress<'_>) -> Option<Vec<f64>> {
        let factor = self.gamma.powf(at.last_epoch as f64);
        Some(at.base_lrs.iter().map(|base| base * factor).collect())
    }

    fn state(&self) -> Vec<(&'static str, Value<'static>)> {
        vec![("gamma", Value::Float(self.gamma))]
    }

    fn load_state(&mut self, state: &StateReader<'_, '_>) -> Result<(), SchedulerError> {
        self.gamma = state.float("gamma")?;
        Ok(())
    }
}
