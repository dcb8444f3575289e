//! [`StepLr`] and [`MultiStepLr`]: decays by `gamma` every `step_size` epochs, or at milestones.

use indexmap::IndexMap;

use super::scheduler::current_lrs;
use super::{Progress, Schedule, SchedulerError, StateReader};
use crate::Value;
use crate::optim::ParamGroups;
use crate::value::Key;

/// `torch.optim.lr_scheduler.StepLR`: multiplies every group's learning rate by `gamma` at each
/// epoch that is a positive multiple of `step_size`.
///
/// Closed form: `base_lr * gamma ** (epoch // step_size)`.
#[doc(alias = "StepLR")]
#[derive(Clone, Debug, PartialEq)]
pub struct StepLr {
    step_size: i64,
    gamma: f64,
}

impl StepLr {
    /// Decays by `gamma` (PyTorch's default is 0.1) every `step_size` epochs.
    pub fn new(step_size: i64, gamma: f64) -> Self {
        StepLr { step_size, gamma }
    }

    fn check(step_size: i64) -> Result<(), String> {
        if step_size <= 0 {
            return Err(format!(
                "step_size must be a positive integer, got {step_size}"
            ));
        }
        Ok(())
    }
}

impl Schedule for StepLr {
    fn name(&self) -> &'static str {
        "StepLR"
    }

    fn attach(&mut self, _: &mut dyn ParamGroups, _: i64) -> Result<(), SchedulerError> {
        StepLr::check(self.step_size).map_err(|message| SchedulerError::Config {
            scheduler: "StepLR",
            message,
        })
    }

    fn lr(
        &mut self,
        at: Progress<'_>,
        optimizer: &mut dyn ParamGroups,
    ) -> Result<Vec<f64>, SchedulerError> {
        let lrs = current_lrs(optimizer)?;
        if at.last_epoch == 0 || at.last_epoch.rem_euclid(self.step_size) != 0 {
            return Ok(lrs);
        }
        Ok(lrs.into_iter().map(|lr| lr * self.gamma).collect())
    }

    fn closed_form_lr(&self, at: Progress<'_>) -> Option<Vec<f64>> {
        // Python's `//` floors, as `div_euclid` does for a positive divisor.
        let decays = at.last_epoch.div_euclid(self.step_size) as f64;
        let factor = self.gamma.powf(decays);
        Some(at.base_lrs.iter().map(|base| base * factor).collect())
    }

    fn state(&self) -> Vec<(&'static str, Value<'static>)> {
        vec![
            ("step_size", Value::Int(self.step_size)),
            ("gamma", Value::Float(self.gamma)),
        ]
    }

    fn load_state(&mut self, state: &StateReader<'_, '_>) -> Result<(), SchedulerError> {
        let step_size = state.int("step_size")?;
        StepLr::check(step_size).map_err(|message| state.error("step_size", message))?;
        self.gamma = state.float("gamma")?;
        self.step_size = step_size;
        Ok(())
    }
}

/// `torch.optim.lr_scheduler.MultiStepLR`: multiplies every group's learning rate by `gamma`
/// at each milestone, by `gamma ** n` at a milestone given `n` times.
///
/// Closed form: `base_lr * gamma ** (the number of milestones <= epoch)`. The state dict holds
/// the milestones as PyTorch's does, a `collections.Counter`
/// ([`Value::Counter`](crate::Value::Counter)); a dict of counts loads too.
#[doc(alias = "MultiStepLR")]
#[derive(Clone, Debug, PartialEq)]
pub struct MultiStepLr {
    /// Each milestone with its count, in the order first given.
    milestones: IndexMap<i64, i64>,
    gamma: f64,
}

impl MultiStepLr {
    /// Decays by `gamma` (PyTorch's default is 0.1) at each of `milestones` (increasing
    /// epochs; a repeated one decays as many times).
    pub fn new(milestones: impl IntoIterator<Item = i64>, gamma: f64) -> Self {
        let mut counts = IndexMap::new();
        for milestone in milestones {
            *counts.entry(milestone).or_insert(0) += 1;
        }
        MultiStepLr {
            milestones: counts,
            gamma,
        }
    }

    /// Each milestone with how many times it was given.
    pub fn milestones(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.milestones.iter().map(|(&m, &n)| (m, n))
    }
}

impl Schedule for MultiStepLr {
    fn name(&self) -> &'static str {
        "MultiStepLR"
    }

    fn lr(
        &mut self,
        at: Progress<'_>,
        optimizer: &mut dyn ParamGroups,
    ) -> Result<Vec<f64>, SchedulerError> {
        let lrs = current_lrs(optimizer)?;
        let Some(&count) = self.milestones.get(&at.last_epoch) else {
            return Ok(lrs);
        };
        let factor = self.gamma.powf(count as f64);
        Ok(lrs.into_iter().map(|lr| lr * factor).collect())
    }

    fn closed_form_lr(&self, at: Progress<'_>) -> Option<Vec<f64>> {
        // `bisect_right(sorted(milestones.elements()), epoch)`.
        let passed: i64 = self
            .milestones
            .iter()
            .filter(|&(&m, _)| m <= at.last_epoch)
            .map(|(_, &n)| n)
            .sum();
        let factor = self.gamma.powf(passed as f64);
        Some(at.base_lrs.iter().map(|base| base * factor).collect())
    }

    fn state(&self) -> Vec<(&'static str, Value<'static>)> {
        let milestones = self
            .milestones
            .iter()
            .map(|(&m, &n)| (Key::Int(m), Value::Int(n)))
            .collect();
        vec![
            ("milestones", Value::Counter(milestones)),
            ("gamma", Value::Float(self.gamma)),
        ]
    }

    fn load_state(&mut self, state: &StateReader<'_, '_>) -> Result<(), SchedulerError> {
        let milestones = match state.required("milestones")? {
            // A Counter, or a dict of counts.
            value @ (Value::Counter(_) | Value::Map(_)) => value
                .as_map()
                .into_iter()
                .flatten()
                .map(|(key, count)| match (key, count) {
                    (Key::Int(m), Value::Int(n)) => Ok((*m, *n)),
                    _ => Err(state.error(
                        &format!("milestones.{key}"),
                        format!("expected an int epoch and count, got {}", count.kind()),
                    )),
                })
                .collect::<Result<IndexMap<_, _>, _>>()?,
            // A list of epochs, as the constructor takes them.
            Value::List(items) => {
                let epochs = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        item.as_i64().ok_or_else(|| {
                            state.error(
                                &format!("milestones.{i}"),
                                format!("expected an int, got {}", item.kind()),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                MultiStepLr::new(epochs, 0.0).milestones
            }
            other => {
                return Err(state.error(
                    "milestones",
                    format!("expected a Counter of epochs, got {}", other.kind()),
                ));
            }
        };
        self.gamma = state.float("gamma")?;
        self.milestones = milestones;
        Ok(())
    }
}
