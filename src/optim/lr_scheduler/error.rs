//! [`SchedulerError`]: why a learning-rate scheduler refused to be built, to step or to load.

use crate::optim::OptimError;

/// Why a scheduler refused to be built, to step or to load a state dict. A step or a load that
/// fails changes neither the scheduler nor the optimizer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// A scheduler resumed through `last_epoch` on an optimizer whose groups lack
    /// `initial_lr`: one that did not load the state of the optimizer it was saved with.
    #[error(
        "param 'initial_lr' is not specified in param_groups[{group}] when resuming scheduler with last_epoch >= 0: load the optimizer's state first, or start from last_epoch -1"
    )]
    MissingInitialLr {
        /// The group.
        group: usize,
    },
    /// A group lacks an entry the scheduler reads (`lr`, `max_lr`, …) or holds something else
    /// than a number there.
    #[error("param_groups[{group}][{key:?}]: {message}")]
    Group {
        /// The group.
        group: usize,
        /// The key.
        key: String,
        /// What was expected and found.
        message: String,
    },
    /// The optimizer has another number of groups than the scheduler was built for.
    #[error("the scheduler was built for {expected} parameter groups, the optimizer has {actual}")]
    GroupCount {
        /// The scheduler's.
        expected: usize,
        /// The optimizer's.
        actual: usize,
    },
    /// The scheduler's settings are invalid, in PyTorch's words.
    #[error("{scheduler}: {message}")]
    Config {
        /// PyTorch's name of the scheduler (`OneCycleLR`).
        scheduler: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `OneCycleLR` was stepped past its last step.
    #[error("Tried to step {step} times. The specified number of total steps is {total_steps}")]
    TooManySteps {
        /// The step asked for.
        step: i64,
        /// The schedule's length.
        total_steps: i64,
    },
    /// A step would count `counter` (`last_epoch`, `_step_count`, `num_bad_epochs`) past
    /// `i64::MAX`, where Python's integers would go on: only a state dict from elsewhere starts
    /// that high.
    #[error("{scheduler}: {counter} cannot count past {} (i64::MAX)", i64::MAX)]
    Overflow {
        /// PyTorch's name of the scheduler.
        scheduler: &'static str,
        /// The counter, by its state dict key.
        counter: &'static str,
    },
    /// A state dict is not laid out as this scheduler's.
    #[error("invalid {scheduler} state dict at {path}: {message}")]
    State {
        /// PyTorch's name of the scheduler.
        scheduler: &'static str,
        /// Where in the state dict (`base_lrs.1`, `_schedulers.0.gamma`).
        path: String,
        /// What was expected and found.
        message: String,
    },
    /// The optimizer refused a value.
    #[error(transparent)]
    Optimizer(#[from] OptimError),
}
