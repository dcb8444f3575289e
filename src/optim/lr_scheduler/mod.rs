//! Learning-rate schedulers of `torch.optim.lr_scheduler`, with PyTorch's arithmetic (its
//! chainable forms step from the groups' current learning rates and compound rounding as
//! PyTorch's do, so the learning rates are PyTorch's bit for bit) and its state dicts.
//!
//! A scheduler reads and writes an optimizer's [parameter groups](crate::optim::ParamGroups):
//! build it on the optimizer, then [`step`](LrScheduler::step) it once per epoch (or batch)
//! after the optimizer's step, as in PyTorch.
//!
//! ```
//! use ckpt::nn::{Linear, Rng};
//! use ckpt::optim::{LrScheduler, Scheduler, Sgd, SgdConfig, StepLr};
//!
//! let model = Linear::new(2, 1, &mut Rng::seed(0));
//! let mut opt = Sgd::new(&model, SgdConfig::default().lr(0.1));
//! let mut scheduler = Scheduler::new(&mut opt, StepLr::new(2, 0.5))?;
//! let mut lrs = Vec::new();
//! for _epoch in 0..5 {
//!     // … opt.step(&mut model, &grads)? …
//!     scheduler.step(&mut opt)?;
//!     lrs.push(scheduler.last_lr()[0]);
//! }
//! assert_eq!(lrs, [0.1, 0.05, 0.05, 0.025, 0.025]);
//!
//! // Saved next to the optimizer, in PyTorch's layout: torch.optim.lr_scheduler.StepLR loads it.
//! let checkpoint = ckpt::dict! {
//!     "optimizer" => opt.pytorch_state_dict(),
//!     "scheduler" => scheduler.state_dict(),
//! };
//! assert_eq!(checkpoint["scheduler"]["last_epoch"].as_i64(), Some(5));
//! assert_eq!(checkpoint["optimizer"]["param_groups"][0]["initial_lr"].as_f64(), Some(0.1));
//!
//! let mut resumed_opt = Sgd::new(&model, SgdConfig::default());
//! let mut resumed = Scheduler::new(&mut resumed_opt, StepLr::new(2, 0.5))?;
//! resumed_opt.load_pytorch_state_dict(&checkpoint["optimizer"])?;
//! resumed.load_state_dict(&checkpoint["scheduler"])?;
//! resumed.step(&mut resumed_opt)?;
//! scheduler.step(&mut opt)?;
//! assert_eq!(resumed.last_lr(), scheduler.last_lr());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cosine;
mod error;
mod exponential;
mod lambda;
mod linear;
mod one_cycle;
mod per_group;
mod plateau;
mod scheduler;
mod sequential;
mod state;
mod step;

pub use self::cosine::CosineAnnealingLr;
pub use self::error::SchedulerError;
pub use self::exponential::ExponentialLr;
pub use self::lambda::{LambdaLr, LrLambda};
pub use self::linear::LinearLr;
pub use self::one_cycle::{Anneal, OneCycleLr};
pub use self::per_group::PerGroup;
pub use self::plateau::{Mode, Plateau, ReduceLrOnPlateau, ThresholdMode};
pub use self::scheduler::{Progress, Schedule, Scheduler};
pub use self::sequential::SequentialLr;
pub use self::state::StateReader;
pub use self::step::{MultiStepLr, StepLr};

use crate::Value;
use crate::optim::ParamGroups;

/// An LR scheduler that steps by epochs: every [`Scheduler`] and [`SequentialLr`] (not
/// [`ReduceLrOnPlateau`], which steps on a metric).
pub trait LrScheduler {
    /// Moves one epoch on and sets every group's `lr`: PyTorch's `scheduler.step()`.
    fn step(&mut self, optimizer: &mut dyn ParamGroups) -> Result<(), SchedulerError>;

    /// Moves to `epoch` and sets every group's `lr` from the closed form where the schedule
    /// has one (from the base learning rates, not the current ones): PyTorch's deprecated
    /// `scheduler.step(epoch)`.
    fn step_to(
        &mut self,
        optimizer: &mut dyn ParamGroups,
        epoch: i64,
    ) -> Result<(), SchedulerError>;

    /// Every group's learning rate after the last step: PyTorch's `get_last_lr()`.
    fn last_lr(&self) -> &[f64];

    /// The epoch of the last step: PyTorch's `last_epoch`.
    fn last_epoch(&self) -> i64;

    /// The state in PyTorch's layout: `scheduler.state_dict()`, which
    /// `scheduler.load_state_dict` takes.
    fn state_dict(&self) -> Value<'_>;

    /// Loads a state dict in PyTorch's layout (one saved by PyTorch's scheduler of the same
    /// kind, or by this one); everything is checked before anything changes.
    fn load_state_dict(&mut self, state: &Value<'_>) -> Result<(), SchedulerError> {
        self.load_state_dict_at(state, "")
    }

    /// [`load_state_dict`](LrScheduler::load_state_dict) of a state dict found at `path` of a
    /// bigger one (`_schedulers.1` in a `SequentialLR`'s), for its errors.
    fn load_state_dict_at(&mut self, state: &Value<'_>, path: &str) -> Result<(), SchedulerError>;

    /// Moves to `epoch` (the next one if `None`) and sets every group's `lr` without counting a
    /// step: PyTorch's `_update_lr`, which [`SequentialLr`] calls with `Some(0)` when it
    /// reaches a milestone.
    fn update_lr(
        &mut self,
        optimizer: &mut dyn ParamGroups,
        epoch: Option<i64>,
    ) -> Result<(), SchedulerError>;

    /// Moves back one epoch without touching the optimizer: what [`SequentialLr`] does to the
    /// schedulers it is given, whose constructors already took their first step (PyTorch's
    /// `recursive_undo`).
    fn rewind(&mut self);

    /// Takes the constructor's first step again: PyTorch's `_initial_step`, which
    /// [`SequentialLr`] calls on its first scheduler.
    fn restart(&mut self, optimizer: &mut dyn ParamGroups) -> Result<(), SchedulerError>;

    /// This scheduler in a box, for the list [`SequentialLr::new`] takes.
    fn boxed(self) -> Box<dyn LrScheduler + Send>
    where
        Self: Sized + Send + 'static,
    {
        Box::new(self)
    }
}
