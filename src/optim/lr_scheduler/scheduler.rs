//! [`Scheduler`]: what every epoch-based schedule shares (PyTorch's `LRScheduler`): the base
//! learning rates, the epoch and step counts, the constructor's first step, and the state dict.

use indexmap::IndexMap;

use super::{LrScheduler, SchedulerError, StateReader};
use crate::Value;
use crate::optim::ParamGroups;
use crate::optim::passthrough::overlay;
use crate::value::Key;

/// A learning-rate rule: what distinguishes [`StepLr`](super::StepLr) from
/// [`CosineAnnealingLr`](super::CosineAnnealingLr). Implement it to add a schedule;
/// [`Scheduler`] does the rest, as PyTorch's `LRScheduler` subclasses implement `get_lr`.
pub trait Schedule {
    /// PyTorch's class name (`"StepLR"`), for messages.
    fn name(&self) -> &'static str;

    /// Prepares the optimizer's groups before the scheduler reads their `initial_lr`
    /// (`OneCycleLR` writes its learning rates there); `last_epoch` is the constructor's.
    fn attach(
        &mut self,
        optimizer: &mut dyn ParamGroups,
        last_epoch: i64,
    ) -> Result<(), SchedulerError> {
        let _ = (optimizer, last_epoch);
        Ok(())
    }

    /// Every group's learning rate at `at.last_epoch`: PyTorch's `get_lr()`, usually from the
    /// groups' current `lr` (the chainable form). It may write other group entries
    /// (`OneCycleLR` cycles the momentum), and must check everything before it writes.
    fn lr(
        &mut self,
        at: Progress<'_>,
        optimizer: &mut dyn ParamGroups,
    ) -> Result<Vec<f64>, SchedulerError>;

    /// Every group's learning rate at `at.last_epoch` from the base learning rates alone:
    /// PyTorch's `_get_closed_form_lr()`, which [`step_to`](LrScheduler::step_to) uses. `None`
    /// for a schedule without one.
    fn closed_form_lr(&self, at: Progress<'_>) -> Option<Vec<f64>> {
        let _ = at;
        None
    }

    /// The schedule's own state dict entries, in PyTorch's order; they come before the base
    /// ones (`base_lrs`, `last_epoch`, …).
    fn state(&self) -> Vec<(&'static str, Value<'static>)>;

    /// Entries that come after the base ones (`LambdaLR`'s `lr_lambdas`).
    fn trailing_state(&self) -> Vec<(&'static str, Value<'static>)> {
        Vec::new()
    }

    /// Reads the entries [`state`](Schedule::state) writes, checking all of them before
    /// changing anything.
    fn load_state(&mut self, state: &StateReader<'_, '_>) -> Result<(), SchedulerError>;
}

/// Where a schedule is, as [`Schedule::lr`] sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Progress<'a> {
    /// The epoch whose learning rates are asked for (already advanced).
    pub last_epoch: i64,
    /// Steps taken, this one included (PyTorch's `_step_count`).
    pub step_count: i64,
    /// Whether this is the constructor's step (PyTorch's `_is_initial`).
    pub initial: bool,
    /// Every group's `initial_lr` when the scheduler was built.
    pub base_lrs: &'a [f64],
}

/// An LR scheduler following a [`Schedule`]: PyTorch's `LRScheduler`. `Scheduler<StepLr>` is
/// `torch.optim.lr_scheduler.StepLR`.
///
/// Building one takes PyTorch's first step: every group gets an `initial_lr` (its current `lr`)
/// unless it has one, the base learning rates are read from there, and the learning rates of
/// epoch 0 are set. Each [`step`](LrScheduler::step) then moves one epoch on. The state dict
/// has PyTorch's keys, types and order, and loads into PyTorch's scheduler (and back); keys ckpt
/// does not use are kept and saved back.
#[derive(Debug)]
pub struct Scheduler<S> {
    schedule: S,
    base_lrs: Vec<f64>,
    last_epoch: i64,
    step_count: i64,
    last_lr: Vec<f64>,
    /// The state dict last loaded, if any: its other keys pass through, and its values keep
    /// their types where they did not change.
    kept: IndexMap<String, Value<'static>>,
}

impl<S: Schedule> Scheduler<S> {
    /// A scheduler starting at epoch 0, as PyTorch's constructor with `last_epoch=-1`.
    pub fn new(optimizer: &mut dyn ParamGroups, schedule: S) -> Result<Self, SchedulerError> {
        Self::with_last_epoch(optimizer, schedule, -1)
    }

    /// A scheduler resumed through the constructor, as PyTorch's with `last_epoch`: every
    /// group must have an `initial_lr` (loaded with the optimizer's state), which gives the
    /// base learning rates, and the constructor's step moves to `last_epoch + 1`. Loading the
    /// scheduler's state dict is the exact way to resume; this is PyTorch's other one.
    pub fn with_last_epoch(
        optimizer: &mut dyn ParamGroups,
        mut schedule: S,
        last_epoch: i64,
    ) -> Result<Self, SchedulerError> {
        schedule.attach(optimizer, last_epoch)?;
        let groups = optimizer.group_count();
        let mut base_lrs = Vec::with_capacity(groups);
        for group in 0..groups {
            let initial = match optimizer.option(group, "initial_lr") {
                Some(initial) => initial,
                None if last_epoch == -1 => {
                    let lr = group_number(optimizer, group, "lr")?;
                    optimizer.set_option(group, "initial_lr", Value::Float(lr))?;
                    Value::Float(lr)
                }
                None => return Err(SchedulerError::MissingInitialLr { group }),
            };
            base_lrs.push(number(&initial, group, "initial_lr")?);
        }
        let mut scheduler = Scheduler {
            schedule,
            base_lrs,
            last_epoch,
            step_count: 0,
            last_lr: Vec::new(),
            kept: IndexMap::new(),
        };
        scheduler.update(optimizer, None, true, true)?;
        Ok(scheduler)
    }

    /// The schedule.
    pub fn schedule(&self) -> &S {
        &self.schedule
    }

    /// Every group's base learning rate (`base_lrs`, from `initial_lr`).
    pub fn base_lrs(&self) -> &[f64] {
        &self.base_lrs
    }

    /// Moves to `epoch` (the next one if `None`) and sets every group's `lr`: PyTorch's
    /// `_update_lr`, with its step counted if `count`; `initial` for the constructor's step.
    /// Nothing changes on an error.
    fn update(
        &mut self,
        optimizer: &mut dyn ParamGroups,
        epoch: Option<i64>,
        count: bool,
        initial: bool,
    ) -> Result<(), SchedulerError> {
        check_groups(self.base_lrs.len(), optimizer)?;
        let name = self.schedule.name();
        let last_epoch = match epoch {
            Some(epoch) => epoch,
            None => advance(name, "last_epoch", self.last_epoch, 1)?,
        };
        let at = Progress {
            last_epoch,
            step_count: advance(name, "_step_count", self.step_count, i64::from(count))?,
            initial,
            base_lrs: &self.base_lrs,
        };
        let closed_form = epoch.and_then(|_| self.schedule.closed_form_lr(at));
        let lrs = match closed_form {
            Some(lrs) => lrs,
            None => self.schedule.lr(at, optimizer)?,
        };
        check_groups(lrs.len(), optimizer)?;
        for (group, lr) in lrs.iter().enumerate() {
            optimizer.set_option(group, "lr", Value::Float(*lr))?;
        }
        self.last_epoch = at.last_epoch;
        self.step_count = at.step_count;
        self.last_lr = lrs;
        Ok(())
    }
}

impl<S: Schedule> LrScheduler for Scheduler<S> {
    fn step(&mut self, optimizer: &mut dyn ParamGroups) -> Result<(), SchedulerError> {
        self.update(optimizer, None, true, false)
    }

    fn step_to(
        &mut self,
        optimizer: &mut dyn ParamGroups,
        epoch: i64,
    ) -> Result<(), SchedulerError> {
        self.update(optimizer, Some(epoch), true, false)
    }

    fn last_lr(&self) -> &[f64] {
        &self.last_lr
    }

    fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    fn state_dict(&self) -> Value<'_> {
        let mut entries = self.schedule.state();
        entries.extend([
            ("base_lrs", Value::from(self.base_lrs.clone())),
            ("last_epoch", Value::Int(self.last_epoch)),
            ("_step_count", Value::Int(self.step_count)),
            // Both are `True` only inside a step.
            ("_is_initial", Value::Bool(false)),
            ("_get_lr_called_within_step", Value::Bool(false)),
            ("_last_lr", Value::from(self.last_lr.clone())),
        ]);
        entries.extend(self.schedule.trailing_state());
        overlay(&self.kept, entries)
    }

    fn load_state_dict(&mut self, state: &Value<'_>) -> Result<(), SchedulerError> {
        self.load_state_dict_at(state, "")
    }

    fn update_lr(
        &mut self,
        optimizer: &mut dyn ParamGroups,
        epoch: Option<i64>,
    ) -> Result<(), SchedulerError> {
        self.update(optimizer, epoch, false, false)
    }

    fn rewind(&mut self) {
        // Saturating: a scheduler at i64::MIN (from a hostile state dict) stays there rather
        // than panicking; no real one is.
        self.last_epoch = self.last_epoch.saturating_sub(1);
    }

    fn restart(&mut self, optimizer: &mut dyn ParamGroups) -> Result<(), SchedulerError> {
        let count = std::mem::replace(&mut self.step_count, 0);
        self.update(optimizer, None, true, true).inspect_err(|_| {
            self.step_count = count;
        })
    }

    fn load_state_dict_at(&mut self, state: &Value<'_>, path: &str) -> Result<(), SchedulerError> {
        let reader = StateReader::new(self.schedule.name(), path, state)?;
        let groups = self.base_lrs.len();
        let base_lrs = reader.floats("base_lrs")?;
        let last_lr = reader.floats("_last_lr")?;
        for (key, values) in [("base_lrs", &base_lrs), ("_last_lr", &last_lr)] {
            if values.len() != groups {
                return Err(reader.error(
                    key,
                    format!(
                        "{} values, for a scheduler of {groups} parameter groups",
                        values.len()
                    ),
                ));
            }
        }
        let last_epoch = reader.int("last_epoch")?;
        let step_count = reader.int("_step_count")?;
        let kept = kept_entries(&reader)?;
        self.schedule.load_state(&reader)?;
        self.base_lrs = base_lrs;
        self.last_lr = last_lr;
        self.last_epoch = last_epoch;
        self.step_count = step_count;
        self.kept = kept;
        Ok(())
    }
}

/// A loaded state dict's entries, owned, to save back what ckpt does not use.
pub(super) fn kept_entries(
    reader: &StateReader<'_, '_>,
) -> Result<IndexMap<String, Value<'static>>, SchedulerError> {
    reader
        .entries()
        .iter()
        .map(|(key, value)| match key {
            Key::Str(key) => Ok((key.clone(), value.to_owned_value())),
            Key::Int(_) => Err(reader.error(&key.to_string(), "scheduler state keys are strings")),
        })
        .collect()
}

/// Refuses an optimizer with another number of groups than `expected`.
pub(super) fn check_groups(
    expected: usize,
    optimizer: &dyn ParamGroups,
) -> Result<(), SchedulerError> {
    let actual = optimizer.group_count();
    if actual != expected {
        return Err(SchedulerError::GroupCount { expected, actual });
    }
    Ok(())
}

/// `param_groups[group][key]` as a number.
pub(super) fn group_number(
    optimizer: &dyn ParamGroups,
    group: usize,
    key: &str,
) -> Result<f64, SchedulerError> {
    let value = optimizer
        .option(group, key)
        .ok_or_else(|| SchedulerError::Group {
            group,
            key: key.to_owned(),
            message: "missing".to_owned(),
        })?;
    number(&value, group, key)
}

fn number(value: &Value<'_>, group: usize, key: &str) -> Result<f64, SchedulerError> {
    value.as_f64().ok_or_else(|| SchedulerError::Group {
        group,
        key: key.to_owned(),
        message: format!("expected a number, got {}", value.kind()),
    })
}

/// `value + by`, or [`SchedulerError::Overflow`] naming `scheduler`'s `counter`.
pub(super) fn advance(
    scheduler: &'static str,
    counter: &'static str,
    value: i64,
    by: i64,
) -> Result<i64, SchedulerError> {
    value
        .checked_add(by)
        .ok_or(SchedulerError::Overflow { scheduler, counter })
}

/// Every group's current `lr`.
pub(super) fn current_lrs(optimizer: &dyn ParamGroups) -> Result<Vec<f64>, SchedulerError> {
    (0..optimizer.group_count())
        .map(|group| group_number(optimizer, group, "lr"))
        .collect()
}
