//! [`ReduceLrOnPlateau`]: reduces the learning rates when a metric stops improving.

use indexmap::IndexMap;

use super::scheduler::{advance, current_lrs, kept_entries};
use super::{PerGroup, SchedulerError, StateReader};
use crate::Value;
use crate::optim::ParamGroups;
use crate::optim::passthrough::overlay;

/// Whether the metric should go down (a loss) or up (an accuracy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Improving means decreasing (`"min"`, the default).
    Min,
    /// Improving means increasing (`"max"`).
    Max,
}

/// How [`Plateau::threshold`] measures a significant improvement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Relative to the best: `best * (1 - threshold)` in `min` mode (`"rel"`, the default).
    Rel,
    /// Absolute: `best - threshold` in `min` mode (`"abs"`).
    Abs,
}

/// The settings of a [`ReduceLrOnPlateau`], with PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Plateau {
    /// Whether the metric should decrease or increase.
    pub mode: Mode,
    /// A reduction multiplies the learning rate by this (< 1).
    pub factor: f64,
    /// How many epochs without improvement are tolerated before a reduction.
    pub patience: i64,
    /// The smallest change that counts as an improvement.
    pub threshold: f64,
    /// Whether `threshold` is relative or absolute.
    pub threshold_mode: ThresholdMode,
    /// Epochs to wait after a reduction before counting bad epochs again.
    pub cooldown: i64,
    /// The lowest learning rate, for every group or per group.
    pub min_lr: PerGroup,
    /// A reduction smaller than this is skipped.
    pub eps: f64,
}

impl Default for Plateau {
    fn default() -> Self {
        Plateau {
            mode: Mode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: PerGroup::All(0.0),
            eps: 1e-8,
        }
    }
}

/// `torch.optim.lr_scheduler.ReduceLROnPlateau`: after more than `patience` epochs without
/// improvement of the metric given to [`step`](ReduceLrOnPlateau::step), multiplies every
/// group's learning rate by `factor` (not below its `min_lr`, and not by less than `eps`), then
/// waits `cooldown` epochs. Its state dict is PyTorch's (the scheduler's attributes, `best`
/// and `mode_worse` possibly infinite).
///
/// ```
/// use ckpt::nn::{Linear, Rng};
/// use ckpt::optim::{Plateau, ReduceLrOnPlateau, Sgd, SgdConfig};
///
/// let model = Linear::new(2, 1, &mut Rng::seed(0));
/// let mut opt = Sgd::new(&model, SgdConfig::default().lr(0.1));
/// let settings = Plateau { patience: 1, factor: 0.5, ..Plateau::default() };
/// let mut scheduler = ReduceLrOnPlateau::new(&opt, settings)?;
/// for loss in [1.0, 0.9, 0.9, 0.9] {
///     scheduler.step(&mut opt, loss)?;
/// }
/// assert_eq!(scheduler.last_lr(), [0.05]); // two epochs without improvement
/// # Ok::<(), ckpt::optim::SchedulerError>(())
/// ```
#[doc(alias = "ReduceLROnPlateau")]
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceLrOnPlateau {
    factor: f64,
    /// `None` when `min_lr` was given per group.
    default_min_lr: Option<f64>,
    min_lrs: Vec<f64>,
    patience: i64,
    cooldown: i64,
    eps: f64,
    last_epoch: i64,
    last_lr: Vec<f64>,
    mode: Mode,
    threshold: f64,
    threshold_mode: ThresholdMode,
    best: f64,
    cooldown_counter: i64,
    num_bad_epochs: i64,
    kept: IndexMap<String, Value<'static>>,
}

const NAME: &str = "ReduceLROnPlateau";

impl ReduceLrOnPlateau {
    /// A scheduler of `optimizer`'s groups; it changes nothing until a step.
    pub fn new(optimizer: &dyn ParamGroups, settings: Plateau) -> Result<Self, SchedulerError> {
        let config = |message: String| SchedulerError::Config {
            scheduler: NAME,
            message,
        };
        if settings.factor >= 1.0 {
            return Err(config("Factor should be < 1.0.".to_owned()));
        }
        let groups = optimizer.group_count();
        let (default_min_lr, min_lrs) = match settings.min_lr {
            PerGroup::All(min_lr) => (Some(min_lr), vec![min_lr; groups]),
            PerGroup::Each(min_lrs) if min_lrs.len() != groups => {
                return Err(config(format!(
                    "expected {groups} min_lrs, got {}",
                    min_lrs.len()
                )));
            }
            PerGroup::Each(min_lrs) => (None, min_lrs),
        };
        let mode = settings.mode;
        Ok(ReduceLrOnPlateau {
            factor: settings.factor,
            default_min_lr,
            min_lrs,
            patience: settings.patience,
            cooldown: settings.cooldown,
            eps: settings.eps,
            last_epoch: 0,
            last_lr: current_lrs(optimizer)?,
            mode,
            threshold: settings.threshold,
            threshold_mode: settings.threshold_mode,
            best: worst(mode),
            cooldown_counter: 0,
            num_bad_epochs: 0,
            kept: IndexMap::new(),
        })
    }

    /// Records the epoch's `metric` and reduces the learning rates if it has not improved for
    /// more than `patience` epochs: PyTorch's `scheduler.step(metrics)`. Nothing changes on an
    /// error.
    pub fn step(
        &mut self,
        optimizer: &mut dyn ParamGroups,
        metric: f64,
    ) -> Result<(), SchedulerError> {
        let mut next = self.clone();
        next.last_epoch = advance(NAME, "last_epoch", next.last_epoch, 1)?;
        if next.is_better(metric) {
            next.best = metric;
            next.num_bad_epochs = 0;
        } else {
            next.num_bad_epochs = advance(NAME, "num_bad_epochs", next.num_bad_epochs, 1)?;
        }
        if next.cooldown_counter > 0 {
            next.cooldown_counter -= 1;
            // Bad epochs in a cooldown do not count.
            next.num_bad_epochs = 0;
        }
        let mut lrs = current_lrs(optimizer)?;
        if next.num_bad_epochs > next.patience {
            next.reduce(&mut lrs)?;
            next.cooldown_counter = next.cooldown;
            next.num_bad_epochs = 0;
        }
        for (group, lr) in lrs.iter().enumerate() {
            optimizer.set_option(group, "lr", Value::Float(*lr))?;
        }
        next.last_lr = lrs;
        *self = next;
        Ok(())
    }

    fn reduce(&mut self, lrs: &mut [f64]) -> Result<(), SchedulerError> {
        if lrs.len() != self.min_lrs.len() {
            let Some(default) = self.default_min_lr else {
                return Err(SchedulerError::Config {
                    scheduler: NAME,
                    message: format!(
                        "The number of param groups in the `optimizer` ({}) differs from when `ReduceLROnPlateau` was initialized ({}), usually due to a new param group being added to the optimizer. Please modify the `min_lrs` field to match the length of the `optimizer` param groups.",
                        lrs.len(),
                        self.min_lrs.len()
                    ),
                });
            };
            self.min_lrs = vec![default; lrs.len()];
        }
        for (lr, &min_lr) in lrs.iter_mut().zip(&self.min_lrs) {
            let old = *lr;
            // Python's `max(old * factor, min_lr)`: the first unless the second is greater.
            let reduced = old * self.factor;
            let new = if min_lr > reduced { min_lr } else { reduced };
            if old - new > self.eps {
                *lr = new;
            }
        }
        Ok(())
    }

    fn is_better(&self, metric: f64) -> bool {
        let (best, threshold) = (self.best, self.threshold);
        match (self.mode, self.threshold_mode) {
            (Mode::Min, ThresholdMode::Rel) => metric < best * (1.0 - threshold),
            (Mode::Min, ThresholdMode::Abs) => metric < best - threshold,
            (Mode::Max, ThresholdMode::Rel) => metric > best * (threshold + 1.0),
            (Mode::Max, ThresholdMode::Abs) => metric > best + threshold,
        }
    }

    /// Every group's learning rate after the last step: PyTorch's `get_last_lr()`.
    pub fn last_lr(&self) -> &[f64] {
        &self.last_lr
    }

    /// How many steps were taken.
    pub fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    /// The best metric so far (infinitely bad before the first step).
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Epochs since the last improvement, as counted towards `patience`.
    pub fn num_bad_epochs(&self) -> i64 {
        self.num_bad_epochs
    }

    /// Epochs of cooldown left.
    pub fn cooldown_counter(&self) -> i64 {
        self.cooldown_counter
    }

    /// The state in PyTorch's layout: `scheduler.state_dict()`.
    pub fn state_dict(&self) -> Value<'_> {
        let entries = vec![
            ("factor", Value::Float(self.factor)),
            ("default_min_lr", self.default_min_lr.into()),
            ("min_lrs", Value::from(self.min_lrs.clone())),
            ("patience", Value::Int(self.patience)),
            ("cooldown", Value::Int(self.cooldown)),
            ("eps", Value::Float(self.eps)),
            ("last_epoch", Value::Int(self.last_epoch)),
            ("_last_lr", Value::from(self.last_lr.clone())),
            ("mode_worse", Value::Float(worst(self.mode))),
            ("mode", Value::from(mode_name(self.mode))),
            ("threshold", Value::Float(self.threshold)),
            (
                "threshold_mode",
                Value::from(threshold_mode_name(self.threshold_mode)),
            ),
            ("best", Value::Float(self.best)),
            ("cooldown_counter", Value::Int(self.cooldown_counter)),
            ("num_bad_epochs", Value::Int(self.num_bad_epochs)),
        ];
        overlay(&self.kept, entries)
    }

    /// Loads a state dict in PyTorch's layout; everything is checked before anything changes.
    pub fn load_state_dict(&mut self, state: &Value<'_>) -> Result<(), SchedulerError> {
        let reader = StateReader::new(NAME, "", state)?;
        let groups = self.last_lr.len();
        let last_lr = reader.floats("_last_lr")?;
        let min_lrs = reader.floats("min_lrs")?;
        if last_lr.len() != groups {
            return Err(reader.error(
                "_last_lr",
                format!(
                    "{} values, for a scheduler of {groups} parameter groups",
                    last_lr.len()
                ),
            ));
        }
        let default_min_lr = match reader.get("default_min_lr") {
            None | Some(Value::None) => None,
            Some(_) => Some(reader.float("default_min_lr")?),
        };
        let mode = match reader.str("mode")? {
            "min" => Mode::Min,
            "max" => Mode::Max,
            other => return Err(reader.error("mode", format!("mode {other} is unknown!"))),
        };
        let threshold_mode = match reader.str("threshold_mode")? {
            "rel" => ThresholdMode::Rel,
            "abs" => ThresholdMode::Abs,
            other => {
                return Err(reader.error(
                    "threshold_mode",
                    format!("threshold mode {other} is unknown!"),
                ));
            }
        };
        *self = ReduceLrOnPlateau {
            factor: reader.float("factor")?,
            default_min_lr,
            min_lrs,
            patience: reader.int("patience")?,
            cooldown: reader.int("cooldown")?,
            eps: reader.float("eps")?,
            last_epoch: reader.int("last_epoch")?,
            last_lr,
            mode,
            threshold: reader.float("threshold")?,
            threshold_mode,
            best: reader.float("best")?,
            cooldown_counter: reader.int("cooldown_counter")?,
            num_bad_epochs: reader.int("num_bad_epochs")?,
            kept: kept_entries(&reader)?,
        };
        Ok(())
    }
}

/// The worst metric of a mode, where `best` starts (PyTorch's `mode_worse`).
fn worst(mode: Mode) -> f64 {
    match mode {
        Mode::Min => f64::INFINITY,
        Mode::Max => f64::NEG_INFINITY,
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Min => "min",
        Mode::Max => "max",
    }
}

fn threshold_mode_name(mode: ThresholdMode) -> &'static str {
    match mode {
        ThresholdMode::Rel => "rel",
        ThresholdMode::Abs => "abs",
    }
}
