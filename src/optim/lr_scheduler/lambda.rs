//! [`LambdaLr`]: the base learning rate times a function of the epoch.

use std::fmt;

use super::{Progress, Schedule, SchedulerError, StateReader};
use crate::Value;
use crate::optim::ParamGroups;

/// A factor of the epoch for [`LambdaLr`]: any `Fn(i64) -> f64` closure, or a type with state
/// to save.
///
/// PyTorch does not save the functions either: `LambdaLR.state_dict()` holds `None` for a plain
/// function or lambda, and a callable object's `__dict__` (its attributes). A closure here saves
/// `None`; a type implementing [`state`](LrLambda::state) and
/// [`load_state`](LrLambda::load_state) saves and loads what PyTorch's callable object would.
/// Either way the code comes from the program that resumes, not from the file.
pub trait LrLambda {
    /// The factor of the base learning rate at `epoch`.
    fn factor(&self, epoch: i64) -> f64;

    /// What the state dict keeps: `None` (the default), or the attributes of PyTorch's
    /// equivalent callable object (`{"warmup": 5}`).
    fn state(&self) -> Value<'static> {
        Value::None
    }

    /// Takes back what [`state`](LrLambda::state) gave, checking it before changing anything;
    /// `Err` says what is wrong. Called only for entries that are not `None`; the default
    /// ignores them, as a closure has nothing to restore.
    fn load_state(&mut self, state: &Value<'_>) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

impl<F: Fn(i64) -> f64> LrLambda for F {
    fn factor(&self, epoch: i64) -> f64 {
        self(epoch)
    }
}

type Lambda = Box<dyn LrLambda + Send>;

/// `torch.optim.lr_scheduler.LambdaLR`: each group's learning rate is its base learning rate
/// times `lambda(epoch)`. See [`LrLambda`] for what its state dict holds of the lambdas: as in
/// PyTorch, the functions are not saved.
///
/// ```
/// use ckpt::nn::{Linear, Rng};
/// use ckpt::optim::{LambdaLr, LrScheduler, Scheduler, Sgd, SgdConfig};
///
/// let model = Linear::new(2, 1, &mut Rng::seed(0));
/// let mut opt = Sgd::new(&model, SgdConfig::default().lr(0.1));
/// let warmup = |epoch: i64| ((epoch + 1) as f64 / 4.0).min(1.0);
/// let mut scheduler = Scheduler::new(&mut opt, LambdaLr::new(warmup))?;
/// assert_eq!(scheduler.last_lr(), [0.025]);
/// assert!(scheduler.state_dict()["lr_lambdas"][0].is_none()); // the closure is not saved
/// # Ok::<(), ckpt::optim::SchedulerError>(())
/// ```
#[doc(alias = "LambdaLR")]
pub struct LambdaLr {
    lambdas: Lambdas,
    /// Set when attached: how many groups share a [`Lambdas::Shared`] lambda.
    groups: usize,
}

enum Lambdas {
    /// One lambda for every group (PyTorch repeats the same object).
    Shared(Lambda),
    /// One per group.
    Each(Vec<Lambda>),
}

impl LambdaLr {
    /// The same factor for every group.
    pub fn new(lambda: impl LrLambda + Send + 'static) -> Self {
        LambdaLr {
            lambdas: Lambdas::Shared(Box::new(lambda)),
            groups: 0,
        }
    }

    /// One factor per group, in group order.
    pub fn per_group(lambdas: Vec<Box<dyn LrLambda + Send>>) -> Self {
        LambdaLr {
            lambdas: Lambdas::Each(lambdas),
            groups: 0,
        }
    }

    fn lambda(&self, group: usize) -> &(dyn LrLambda + Send) {
        match &self.lambdas {
            Lambdas::Shared(lambda) => lambda.as_ref(),
            Lambdas::Each(lambdas) => lambdas[group].as_ref(),
        }
    }

    fn lambda_mut(&mut self, group: usize) -> &mut (dyn LrLambda + Send) {
        match &mut self.lambdas {
            Lambdas::Shared(lambda) => lambda.as_mut(),
            Lambdas::Each(lambdas) => lambdas[group].as_mut(),
        }
    }
}

impl fmt::Debug for LambdaLr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let states: Vec<Value<'static>> =
            (0..self.groups).map(|g| self.lambda(g).state()).collect();
        f.debug_struct("LambdaLr")
            .field("lr_lambdas", &states)
            .finish_non_exhaustive()
    }
}

impl Schedule for LambdaLr {
    fn name(&self) -> &'static str {
        "LambdaLR"
    }

    fn attach(&mut self, optimizer: &mut dyn ParamGroups, _: i64) -> Result<(), SchedulerError> {
        let groups = optimizer.group_count();
        if let Lambdas::Each(lambdas) = &self.lambdas
            && lambdas.len() != groups
        {
            return Err(SchedulerError::Config {
                scheduler: "LambdaLR",
                message: format!("Expected {groups} lr_lambdas, but got {}", lambdas.len()),
            });
        }
        self.groups = groups;
        Ok(())
    }

    fn lr(
        &mut self,
        at: Progress<'_>,
        _: &mut dyn ParamGroups,
    ) -> Result<Vec<f64>, SchedulerError> {
        Ok(at
            .base_lrs
            .iter()
            .enumerate()
            .map(|(group, base)| base * self.lambda(group).factor(at.last_epoch))
            .collect())
    }

    fn state(&self) -> Vec<(&'static str, Value<'static>)> {
        Vec::new()
    }

    fn trailing_state(&self) -> Vec<(&'static str, Value<'static>)> {
        let states = (0..self.groups).map(|g| self.lambda(g).state()).collect();
        vec![("lr_lambdas", Value::List(states))]
    }

    fn load_state(&mut self, state: &StateReader<'_, '_>) -> Result<(), SchedulerError> {
        let list = state.required("lr_lambdas")?;
        let items = list.as_list().ok_or_else(|| {
            state.error(
                "lr_lambdas",
                format!("expected a list, got {}", list.kind()),
            )
        })?;
        if items.len() != self.groups {
            return Err(state.error(
                "lr_lambdas",
                format!(
                    "{} entries, for a scheduler of {} parameter groups",
                    items.len(),
                    self.groups
                ),
            ));
        }
        for (group, item) in items.iter().enumerate() {
            if !item.is_none() {
                self.lambda_mut(group)
                    .load_state(item)
                    .map_err(|message| state.error(&format!("lr_lambdas.{group}"), message))?;
            }
        }
        Ok(())
    }
}
