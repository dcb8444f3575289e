//! [`SequentialLr`]: schedulers one after another, switching at milestones.

use indexmap::IndexMap;

use super::scheduler::{advance, group_number, kept_entries};
use super::{LrScheduler, SchedulerError, StateReader};
use crate::Value;
use crate::optim::ParamGroups;
use crate::optim::passthrough::overlay;

const NAME: &str = "SequentialLR";

/// `torch.optim.lr_scheduler.SequentialLR`: runs its schedulers one after another, the next one
/// taking over at each milestone (a warm-up, then a decay).
///
/// It is built from schedulers already built on the same optimizer, as in PyTorch: it puts
/// every group's learning rate back to its `initial_lr`, moves each scheduler back one epoch
/// (their constructors took a step), and takes the first one's first step again. At a
/// milestone the next scheduler starts from epoch 0 of its closed form; its state dict nests
/// theirs under `_schedulers`.
///
/// ```
/// use ckpt::nn::{Linear, Rng};
/// use ckpt::optim::{CosineAnnealingLr, LinearLr, LrScheduler, Scheduler, SequentialLr, Sgd, SgdConfig};
///
/// let model = Linear::new(2, 1, &mut Rng::seed(0));
/// let mut opt = Sgd::new(&model, SgdConfig::default().lr(0.1));
/// let warmup = Scheduler::new(&mut opt, LinearLr::new(0.1, 1.0, 5))?;
/// let decay = Scheduler::new(&mut opt, CosineAnnealingLr::new(25, 0.001))?;
/// let mut scheduler = SequentialLr::new(&mut opt, vec![warmup.boxed(), decay.boxed()], vec![5])?;
/// assert_eq!(scheduler.last_lr(), [0.010000000000000002]); // 0.1 * 0.1
/// for _ in 0..5 {
///     scheduler.step(&mut opt)?;
/// }
/// assert_eq!(scheduler.last_lr(), [0.1]); // the cosine's epoch 0
/// # Ok::<(), ckpt::optim::SchedulerError>(())
/// ```
#[doc(alias = "SequentialLR")]
pub struct SequentialLr {
    schedulers: Vec<Box<dyn LrScheduler + Send>>,
    milestones: Vec<i64>,
    last_epoch: i64,
    last_lr: Vec<f64>,
    kept: IndexMap<String, Value<'static>>,
}

impl std::fmt::Debug for SequentialLr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequentialLr")
            .field("milestones", &self.milestones)
            .field("last_epoch", &self.last_epoch)
            .field("last_lr", &self.last_lr)
            .finish_non_exhaustive()
    }
}

impl SequentialLr {
    /// Runs `schedulers` (built on `optimizer`, in this order) one after another, switching at
    /// `milestones` (one fewer than the schedulers).
    pub fn new(
        optimizer: &mut dyn ParamGroups,
        mut schedulers: Vec<Box<dyn LrScheduler + Send>>,
        milestones: Vec<i64>,
    ) -> Result<Self, SchedulerError> {
        let config = |message: String| SchedulerError::Config {
            scheduler: NAME,
            message,
        };
        if schedulers.is_empty() {
            return Err(config(
                "SequentialLR expects at least one scheduler, but got no scheduler.".to_owned(),
            ));
        }
        if milestones.len() != schedulers.len() - 1 {
            return Err(config(format!(
                "Sequential Schedulers expects number of schedulers provided to be one more than the number of milestone points, but got number of schedulers {} and the number of milestones to be equal to {}",
                schedulers.len(),
                milestones.len()
            )));
        }
        let initial = (0..optimizer.group_count())
            .map(|group| match optimizer.option(group, "initial_lr") {
                None => Err(SchedulerError::MissingInitialLr { group }),
                Some(_) => group_number(optimizer, group, "initial_lr"),
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (group, lr) in initial.into_iter().enumerate() {
            optimizer.set_option(group, "lr", Value::Float(lr))?;
        }
        for scheduler in &mut schedulers {
            scheduler.rewind();
        }
        let first = bisect_right(&milestones, 0);
        schedulers[first].restart(optimizer)?;
        let last_lr = schedulers[first].last_lr().to_vec();
        Ok(SequentialLr {
            schedulers,
            milestones,
            last_epoch: 0,
            last_lr,
            kept: IndexMap::new(),
        })
    }

    /// The schedulers, in order.
    pub fn schedulers(&self) -> &[Box<dyn LrScheduler + Send>] {
        &self.schedulers
    }

    fn unsupported(what: &str) -> SchedulerError {
        SchedulerError::Config {
            scheduler: NAME,
            message: format!("SequentialLR has no {what}: it steps one epoch at a time"),
        }
    }
}

impl LrScheduler for SequentialLr {
    fn step(&mut self, optimizer: &mut dyn ParamGroups) -> Result<(), SchedulerError> {
        let epoch = advance(NAME, "last_epoch", self.last_epoch, 1)?;
        let index = bisect_right(&self.milestones, epoch);
        let scheduler = &mut self.schedulers[index];
        if index > 0 && self.milestones[index - 1] == epoch {
            scheduler.update_lr(optimizer, Some(0))?;
        } else {
            scheduler.step(optimizer)?;
        }
        self.last_lr = scheduler.last_lr().to_vec();
        self.last_epoch = epoch;
        Ok(())
    }

    fn step_to(&mut self, _: &mut dyn ParamGroups, _: i64) -> Result<(), SchedulerError> {
        Err(Self::unsupported("step(epoch)"))
    }

    fn last_lr(&self) -> &[f64] {
        &self.last_lr
    }

    fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    fn state_dict(&self) -> Value<'_> {
        let schedulers = self.schedulers.iter().map(|s| s.state_dict()).collect();
        let entries = vec![
            ("_milestones", Value::from(self.milestones.clone())),
            ("last_epoch", Value::Int(self.last_epoch)),
            ("_last_lr", Value::from(self.last_lr.clone())),
            ("_schedulers", Value::List(schedulers)),
        ];
        overlay(&self.kept, entries)
    }

    fn load_state_dict_at(&mut self, state: &Value<'_>, path: &str) -> Result<(), SchedulerError> {
        let reader = StateReader::new(NAME, path, state)?;
        let milestones = reader.required("_milestones")?;
        let milestones = milestones
            .as_list()
            .and_then(|items| items.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                reader.error(
                    "_milestones",
                    format!("expected a list of ints, got {}", milestones.kind()),
                )
            })?;
        if milestones.len() != self.schedulers.len() - 1 {
            return Err(reader.error(
                "_milestones",
                format!(
                    "{} milestones, for {} schedulers",
                    milestones.len(),
                    self.schedulers.len()
                ),
            ));
        }
        let last_epoch = reader.int("last_epoch")?;
        let last_lr = reader.floats("_last_lr")?;
        let nested = reader.required("_schedulers")?;
        let nested = match nested.as_list() {
            Some(items) if items.len() == self.schedulers.len() => items,
            _ => {
                return Err(reader.error(
                    "_schedulers",
                    format!(
                        "expected a list of {} state dicts, got {}",
                        self.schedulers.len(),
                        nested.kind()
                    ),
                ));
            }
        };
        let kept = kept_entries(&reader)?;
        // Each scheduler checks its own state; if one refuses, those already loaded go back.
        let before: Vec<Value<'static>> = self
            .schedulers
            .iter()
            .map(|s| s.state_dict().to_owned_value())
            .collect();
        for (i, state) in nested.iter().enumerate() {
            let at = if path.is_empty() {
                format!("_schedulers.{i}")
            } else {
                format!("{path}._schedulers.{i}")
            };
            if let Err(e) = self.schedulers[i].load_state_dict_at(state, &at) {
                for (scheduler, state) in self.schedulers.iter_mut().zip(&before).take(i) {
                    // A state a scheduler wrote itself loads back.
                    let _ = scheduler.load_state_dict(state);
                }
                return Err(e);
            }
        }
        self.milestones = milestones;
        self.last_epoch = last_epoch;
        self.last_lr = last_lr;
        self.kept = kept;
        Ok(())
    }

    fn update_lr(&mut self, _: &mut dyn ParamGroups, _: Option<i64>) -> Result<(), SchedulerError> {
        // PyTorch's `_update_lr` on a SequentialLR calls the `get_lr` it does not have.
        Err(Self::unsupported("get_lr"))
    }

    fn rewind(&mut self) {
        for scheduler in &mut self.schedulers {
            scheduler.rewind();
        }
    }

    fn restart(&mut self, optimizer: &mut dyn ParamGroups) -> Result<(), SchedulerError> {
        self.step(optimizer)
    }
}

/// Python's `bisect.bisect_right`, probe for probe (milestones are meant to be sorted; PyTorch
/// does not check).
fn bisect_right(sorted: &[i64], x: i64) -> usize {
    let (mut lo, mut hi) = (0, sorted.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if x < sorted[mid] {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}
