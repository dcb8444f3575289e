//! [`OneCycleLr`]: the 1cycle policy, up to a maximum learning rate and down far below the start.

use std::f64::consts::PI;

use super::scheduler::group_number;
use super::{PerGroup, Progress, Schedule, SchedulerError, StateReader};
use crate::Value;
use crate::optim::ParamGroups;

/// How [`OneCycleLr`] goes from one learning rate to the next within a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anneal {
    /// Along a half cosine (PyTorch's `"cos"`, the default).
    Cos,
    /// Along a straight line (`"linear"`).
    Linear,
}

impl Anneal {
    fn name(self) -> &'static str {
        match self {
            Anneal::Cos => "cos",
            Anneal::Linear => "linear",
        }
    }

    /// From `start` to `end` as `pct` goes from 0 to 1, in PyTorch's arithmetic.
    fn at(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => {
                let cos_out = (PI * pct).cos() + 1.0;
                end + (start - end) / 2.0 * cos_out
            }
            Anneal::Linear => (end - start) * pct + start,
        }
    }
}

/// One phase of the cycle: from the group entries `start_*` to `end_*` by step `end_step`.
#[derive(Clone, Debug, PartialEq)]
struct Phase {
    end_step: f64,
    /// Whether PyTorch holds `end_step` as an int (the last phase's `total_steps - 1`).
    end_step_is_int: bool,
    start_lr: String,
    end_lr: String,
    start_momentum: String,
    end_momentum: String,
}

impl Phase {
    fn new(end_step: f64, end_step_is_int: bool, keys: [&str; 4]) -> Self {
        let [start_lr, end_lr, start_momentum, end_momentum] = keys.map(str::to_owned);
        Phase {
            end_step,
            end_step_is_int,
            start_lr,
            end_lr,
            start_momentum,
            end_momentum,
        }
    }
}

/// How long the cycle is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Length {
    Steps(i64),
    Epochs { epochs: i64, steps_per_epoch: i64 },
}

/// `torch.optim.lr_scheduler.OneCycleLR`: each group's learning rate goes from
/// `max_lr / div_factor` (`initial_lr`) up to `max_lr` over the first `pct_start` of
/// `total_steps`, then down to `initial_lr / final_div_factor` (`min_lr`); the momentum (SGD's
/// `momentum`, Adam's first beta) cycles the other way between `max_momentum` and
/// `base_momentum`. Step it after every batch; stepping past `total_steps` is an error.
///
/// Building it writes `initial_lr`, `max_lr`, `min_lr`, `max_momentum` and `base_momentum` into
/// every group (unless resumed through `last_epoch`), where each step reads them, as PyTorch's.
#[doc(alias = "OneCycleLR")]
#[derive(Clone, Debug, PartialEq)]
pub struct OneCycleLr {
    max_lr: PerGroup,
    length: Length,
    pct_start: f64,
    anneal: Anneal,
    cycle_momentum: bool,
    base_momentum: PerGroup,
    max_momentum: PerGroup,
    div_factor: f64,
    final_div_factor: f64,
    three_phase: bool,
    // The state dict's, set when attached or loaded:
    total_steps: i64,
    phases: Vec<Phase>,
    /// Whether the momentum is Adam's first beta; PyTorch sets it only when cycling momentum.
    use_beta1: Option<bool>,
}

impl OneCycleLr {
    /// A cycle of `total_steps` steps peaking at `max_lr` (one for every group, or one per
    /// group), with PyTorch's defaults: `pct_start` 0.3, cosine annealing, momentum cycled
    /// between 0.85 and 0.95, `div_factor` 25, `final_div_factor` 1e4, two phases.
    pub fn new(max_lr: impl Into<PerGroup>, total_steps: i64) -> Self {
        Self::with_length(max_lr.into(), Length::Steps(total_steps))
    }

    /// A cycle of `epochs * steps_per_epoch` steps, as PyTorch's `epochs` and
    /// `steps_per_epoch` arguments.
    pub fn with_epochs(max_lr: impl Into<PerGroup>, epochs: i64, steps_per_epoch: i64) -> Self {
        Self::with_length(
            max_lr.into(),
            Length::Epochs {
                epochs,
                steps_per_epoch,
            },
        )
    }

    fn with_length(max_lr: PerGroup, length: Length) -> Self {
        OneCycleLr {
            max_lr,
            length,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            cycle_momentum: true,
            base_momentum: PerGroup::All(0.85),
            max_momentum: PerGroup::All(0.95),
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
            total_steps: 0,
            phases: Vec::new(),
            use_beta1: None,
        }
    }

    /// The share of the cycle spent increasing the learning rate.
    #[must_use]
    pub fn pct_start(mut self, pct_start: f64) -> Self {
        self.pct_start = pct_start;
        self
    }

    /// How the learning rate moves within a phase.
    #[must_use]
    pub fn anneal_strategy(mut self, anneal: Anneal) -> Self {
        self.anneal = anneal;
        self
    }

    /// Whether the momentum cycles, inversely to the learning rate.
    #[must_use]
    pub fn cycle_momentum(mut self, cycle_momentum: bool) -> Self {
        self.cycle_momentum = cycle_momentum;
        self
    }

    /// The momentum at the learning rate's peak.
    #[must_use]
    pub fn base_momentum(mut self, base_momentum: impl Into<PerGroup>) -> Self {
        self.base_momentum = base_momentum.into();
        self
    }

    /// The momentum at the start and the end.
    #[must_use]
    pub fn max_momentum(mut self, max_momentum: impl Into<PerGroup>) -> Self {
        self.max_momentum = max_momentum.into();
        self
    }

    /// `initial_lr = max_lr / div_factor`.
    #[must_use]
    pub fn div_factor(mut self, div_factor: f64) -> Self {
        self.div_factor = div_factor;
        self
    }

    /// `min_lr = initial_lr / final_div_factor`.
    #[must_use]
    pub fn final_div_factor(mut self, final_div_factor: f64) -> Self {
        self.final_div_factor = final_div_factor;
        self
    }

    /// Three phases (up, back down to `initial_lr`, then down to `min_lr`), as the paper,
    /// instead of fastai's two.
    #[must_use]
    pub fn three_phase(mut self, three_phase: bool) -> Self {
        self.three_phase = three_phase;
        self
    }

    /// The cycle's length in steps.
    pub fn total_steps(&self) -> i64 {
        self.total_steps
    }

    fn config_error(message: String) -> SchedulerError {
        SchedulerError::Config {
            scheduler: "OneCycleLR",
            message,
        }
    }

    fn phases(&self) -> Vec<Phase> {
        let (pct, total) = (self.pct_start, self.total_steps);
        let up = pct * total as f64 - 1.0;
        let last = (total - 1) as f64;
        if self.three_phase {
            vec![
                Phase::new(
                    up,
                    false,
                    ["initial_lr", "max_lr", "max_momentum", "base_momentum"],
                ),
                Phase::new(
                    2.0 * pct * total as f64 - 2.0,
                    false,
                    ["max_lr", "initial_lr", "base_momentum", "max_momentum"],
                ),
                Phase::new(
                    last,
                    true,
                    ["initial_lr", "min_lr", "max_momentum", "max_momentum"],
                ),
            ]
        } else {
            vec![
                Phase::new(
                    up,
                    false,
                    ["initial_lr", "max_lr", "max_momentum", "base_momentum"],
                ),
                Phase::new(
                    last,
                    true,
                    ["max_lr", "min_lr", "base_momentum", "max_momentum"],
                ),
            ]
        }
    }
}

impl Schedule for OneCycleLr {
    fn name(&self) -> &'static str {
        "OneCycleLR"
    }

    fn attach(
        &mut self,
        optimizer: &mut dyn ParamGroups,
        last_epoch: i64,
    ) -> Result<(), SchedulerError> {
        let total_steps = match self.length {
            Length::Steps(n) if n <= 0 => {
                return Err(Self::config_error(format!(
                    "Expected positive integer total_steps, but got {n}"
                )));
            }
            Length::Steps(n) => n,
            Length::Epochs { epochs, .. } if epochs <= 0 => {
                return Err(Self::config_error(format!(
                    "Expected positive integer epochs, but got {epochs}"
                )));
            }
            Length::Epochs {
                steps_per_epoch, ..
            } if steps_per_epoch <= 0 => {
                return Err(Self::config_error(format!(
                    "Expected positive integer steps_per_epoch, but got {steps_per_epoch}"
                )));
            }
            Length::Epochs {
                epochs,
                steps_per_epoch,
            } => epochs.checked_mul(steps_per_epoch).ok_or_else(|| {
                Self::config_error(format!(
                    "{epochs} epochs of {steps_per_epoch} steps overflow"
                ))
            })?,
        };
        if !(0.0..=1.0).contains(&self.pct_start) {
            return Err(Self::config_error(format!(
                "Expected float between 0 and 1 pct_start, but got {}",
                self.pct_start
            )));
        }
        let groups = optimizer.group_count();
        let max_lrs = self
            .max_lr
            .resolve("max_lr", groups)
            .map_err(Self::config_error)?;
        let momenta = if self.cycle_momentum {
            // PyTorch asks the optimizer's defaults; ckpt's groups all have an algorithm's keys.
            let use_beta1 = optimizer.option(0, "betas").is_some();
            if !use_beta1 && optimizer.option(0, "momentum").is_none() {
                return Err(Self::config_error(
                    "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
                        .to_owned(),
                ));
            }
            let max = self
                .max_momentum
                .resolve("max_momentum", groups)
                .map_err(Self::config_error)?;
            let base = self
                .base_momentum
                .resolve("base_momentum", groups)
                .map_err(Self::config_error)?;
            Some((use_beta1, max, base))
        } else {
            None
        };
        self.total_steps = total_steps;
        self.phases = self.phases();
        self.use_beta1 = momenta.as_ref().map(|(use_beta1, ..)| *use_beta1);
        if last_epoch != -1 {
            return Ok(());
        }
        for (group, max_lr) in max_lrs.into_iter().enumerate() {
            let initial_lr = max_lr / self.div_factor;
            optimizer.set_option(group, "initial_lr", Value::Float(initial_lr))?;
            optimizer.set_option(group, "max_lr", Value::Float(max_lr))?;
            let min_lr = initial_lr / self.final_div_factor;
            optimizer.set_option(group, "min_lr", Value::Float(min_lr))?;
        }
        if let Some((use_beta1, max, base)) = momenta {
            for (group, (max, base)) in max.into_iter().zip(base).enumerate() {
                set_momentum(optimizer, group, use_beta1, max)?;
                optimizer.set_option(group, "max_momentum", Value::Float(max))?;
                optimizer.set_option(group, "base_momentum", Value::Float(base))?;
            }
        }
        Ok(())
    }

    fn lr(
        &mut self,
        at: Progress<'_>,
        optimizer: &mut dyn ParamGroups,
    ) -> Result<Vec<f64>, SchedulerError> {
        let step = at.last_epoch;
        if step > self.total_steps {
            return Err(SchedulerError::TooManySteps {
                step,
                total_steps: self.total_steps,
            });
        }
        let mut lrs = Vec::new();
        let mut momenta = Vec::new();
        for group in 0..optimizer.group_count() {
            let mut start_step = 0.0;
            for (i, phase) in self.phases.iter().enumerate() {
                let end_step = phase.end_step;
                if step as f64 <= end_step || i == self.phases.len() - 1 {
                    if end_step == start_step {
                        return Err(Self::config_error(format!(
                            "float division by zero: phase {i} of the cycle is empty"
                        )));
                    }
                    let pct = (step as f64 - start_step) / (end_step - start_step);
                    let read = |key: &str| group_number(optimizer, group, key);
                    lrs.push(
                        self.anneal
                            .at(read(&phase.start_lr)?, read(&phase.end_lr)?, pct),
                    );
                    if self.cycle_momentum {
                        let start = read(&phase.start_momentum)?;
                        momenta.push(self.anneal.at(start, read(&phase.end_momentum)?, pct));
                    }
                    break;
                }
                start_step = end_step;
            }
        }
        let use_beta1 = self.use_beta1.unwrap_or(false);
        for (group, momentum) in momenta.into_iter().enumerate() {
            set_momentum(optimizer, group, use_beta1, momentum)?;
        }
        Ok(lrs)
    }

    fn state(&self) -> Vec<(&'static str, Value<'static>)> {
        let phases = self
            .phases
            .iter()
            .map(|phase| {
                let end_step = if phase.end_step_is_int {
                    Value::Int(phase.end_step as i64)
                } else {
                    Value::Float(phase.end_step)
                };
                crate::dict! {
                    "end_step" => end_step,
                    "start_lr" => phase.start_lr.as_str(),
                    "end_lr" => phase.end_lr.as_str(),
                    "start_momentum" => phase.start_momentum.as_str(),
                    "end_momentum" => phase.end_momentum.as_str(),
                }
            })
            .collect::<Vec<_>>();
        let mut state = vec![
            ("total_steps", Value::Int(self.total_steps)),
            ("_schedule_phases", Value::List(phases)),
            ("_anneal_func_type", Value::from(self.anneal.name())),
            ("cycle_momentum", Value::Bool(self.cycle_momentum)),
        ];
        if let Some(use_beta1) = self.use_beta1 {
            state.push(("use_beta1", Value::Bool(use_beta1)));
        }
        state
    }

    fn load_state(&mut self, state: &StateReader<'_, '_>) -> Result<(), SchedulerError> {
        let total_steps = state.int("total_steps")?;
        let anneal = match state.str("_anneal_func_type")? {
            "cos" => Anneal::Cos,
            "linear" => Anneal::Linear,
            other => {
                return Err(state.error(
                    "_anneal_func_type",
                    format!("Unknown _anneal_func_type: {other}"),
                ));
            }
        };
        let cycle_momentum = state.bool("cycle_momentum")?;
        let use_beta1 = match state.get("use_beta1") {
            None => None,
            Some(_) => Some(state.bool("use_beta1")?),
        };
        let list = state.required("_schedule_phases")?;
        let items = list.as_list().ok_or_else(|| {
            state.error(
                "_schedule_phases",
                format!("expected a list of phases, got {}", list.kind()),
            )
        })?;
        if items.is_empty() {
            return Err(state.error("_schedule_phases", "no phases"));
        }
        let phases = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let phase = state.child(&format!("_schedule_phases.{i}"), item)?;
                let end_step = phase.float("end_step")?;
                let is_int = matches!(phase.get("end_step"), Some(Value::Int(_)));
                let key = |name: &str| phase.str(name).map(str::to_owned);
                Ok(Phase {
                    end_step,
                    end_step_is_int: is_int,
                    start_lr: key("start_lr")?,
                    end_lr: key("end_lr")?,
                    start_momentum: key("start_momentum")?,
                    end_momentum: key("end_momentum")?,
                })
            })
            .collect::<Result<Vec<_>, SchedulerError>>()?;
        self.total_steps = total_steps;
        self.anneal = anneal;
        self.cycle_momentum = cycle_momentum;
        self.use_beta1 = use_beta1;
        self.phases = phases;
        Ok(())
    }
}

/// Sets a group's momentum: SGD's `momentum`, or the first of Adam's `betas`.
fn set_momentum(
    optimizer: &mut dyn ParamGroups,
    group: usize,
    use_beta1: bool,
    momentum: f64,
) -> Result<(), SchedulerError> {
    if !use_beta1 {
        optimizer.set_option(group, "momentum", Value::Float(momentum))?;
        return Ok(());
    }
    let betas = optimizer.option(group, "betas");
    let mut betas = match betas {
        Some(Value::List(items)) if !items.is_empty() => items,
        other => {
            return Err(SchedulerError::Group {
                group,
                key: "betas".to_owned(),
                message: format!(
                    "expected a list of betas, got {}",
                    other.as_ref().map_or("nothing", Value::kind)
                ),
            });
        }
    };
    betas[0] = Value::Float(momentum);
    optimizer.set_option(group, "betas", Value::List(betas))?;
    Ok(())
}
