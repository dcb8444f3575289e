//! The LR schedulers against PyTorch 2.15's `tests/fixtures/schedulers/`: every learning rate
//! of 60 steps equal bit for bit, state dicts with PyTorch's keys, types, order and values,
//! resumes from PyTorch's step-30 checkpoints, closed forms, and resumes through `last_epoch`.

use crate::common::optim::{
    Tree, assert_floats, floats, json, number, pt, same_float, typed_mismatch,
};
use ckpt::optim::{
    Anneal, CosineAnnealingLr, ExponentialLr, LambdaLr, LinearLr, LrLambda, LrScheduler, Mode,
    MultiStepLr, OneCycleLr, ParamGroup, ParamGroups, PerGroup, Plateau, ReduceLrOnPlateau,
    Scheduler, SchedulerError, SequentialLr, Sgd, SgdConfig, StepLr, ThresholdMode,
};
use ckpt::{StateDict, Value};
use ndarray::{Array1, Array2};
use serde_json::Value as Json;

/// The fixtures' schedulers, in `make_scheduler_fixtures.py`'s order.
pub(crate) const NAMES: [&str; 10] = [
    "steplr",
    "multisteplr",
    "exponentiallr",
    "cosineannealinglr",
    "linearlr",
    "onecyclelr",
    "onecyclelr_linear_three_phase",
    "reducelronplateau",
    "sequentiallr",
    "lambdalr",
];

/// The fixtures' two parameters.
#[derive(StateDict)]
pub(crate) struct Params {
    p0: Array2<f32>,
    p1: Array1<f32>,
}

/// `SGD([{"params": [p0], "lr": 0.1}, {"params": [p1], "lr": 0.02}], lr=0.1, momentum=0.9)`.
pub(crate) fn optimizer() -> Sgd {
    let params = Params {
        p0: Array2::zeros((2, 2)),
        p1: Array1::zeros(2),
    };
    let sgd = SgdConfig::default().lr(0.1).momentum(0.9);
    Sgd::with_groups(
        &params,
        [
            ParamGroup::with_keys(["p0"], sgd),
            ParamGroup::with_keys(["p1"], sgd.lr(0.02)),
        ],
    )
    .unwrap()
}

/// `decay(epoch) = 0.95 ** epoch`, a plain function: PyTorch saves `None` for it.
fn decay(epoch: i64) -> f64 {
    0.95f64.powf(epoch as f64)
}

/// The fixture's `WarmupLambda(5)`: a callable object, whose `__dict__` PyTorch saves.
pub(crate) struct Warmup {
    warmup: i64,
}

impl LrLambda for Warmup {
    fn factor(&self, epoch: i64) -> f64 {
        // min(1.0, (epoch + 1) / self.warmup)
        1.0f64.min((epoch + 1) as f64 / self.warmup as f64)
    }

    fn state(&self) -> Value<'static> {
        ckpt::dict! { "warmup" => self.warmup }
    }

    fn load_state(&mut self, state: &Value<'_>) -> Result<(), String> {
        self.warmup = state["warmup"]
            .as_i64()
            .ok_or_else(|| format!("warmup is {}", state["warmup"].kind()))?;
        Ok(())
    }
}

/// A scheduler of either kind.
pub(crate) enum Sched {
    Epochs(Box<dyn LrScheduler + Send>),
    Plateau(ReduceLrOnPlateau),
}

/// The metrics `ReduceLROnPlateau`'s fixture steps on.
pub(crate) fn plateau_metrics() -> Vec<f64> {
    floats(&json("schedulers/reducelronplateau.json")["metrics"])
}

impl Sched {
    /// The fixture's step `i` (1-based): `step()`, or `step(metrics[i - 1])`.
    pub(crate) fn step(&mut self, opt: &mut Sgd, i: usize, metrics: &[f64]) {
        self.try_step(opt, i, metrics).unwrap();
    }

    /// [`step`](Sched::step), which may fail.
    pub(crate) fn try_step(
        &mut self,
        opt: &mut Sgd,
        i: usize,
        metrics: &[f64],
    ) -> Result<(), SchedulerError> {
        match self {
            Sched::Epochs(s) => s.step(opt),
            Sched::Plateau(s) => s.step(opt, metrics[i - 1]),
        }
    }

    pub(crate) fn last_lr(&self) -> &[f64] {
        match self {
            Sched::Epochs(s) => s.last_lr(),
            Sched::Plateau(s) => s.last_lr(),
        }
    }

    pub(crate) fn last_epoch(&self) -> i64 {
        match self {
            Sched::Epochs(s) => s.last_epoch(),
            Sched::Plateau(s) => s.last_epoch(),
        }
    }

    pub(crate) fn state_dict(&self) -> Value<'_> {
        match self {
            Sched::Epochs(s) => s.state_dict(),
            Sched::Plateau(s) => s.state_dict(),
        }
    }

    pub(crate) fn load_state_dict(&mut self, state: &Value<'_>) -> Result<(), SchedulerError> {
        match self {
            Sched::Epochs(s) => s.load_state_dict(state),
            Sched::Plateau(s) => s.load_state_dict(state),
        }
    }
}

/// The scheduler of fixture `name`, built on `opt` as the fixture's constructor, resumed through
/// `last_epoch` if it is not -1.
pub(crate) fn build_at(
    name: &str,
    opt: &mut Sgd,
    last_epoch: i64,
) -> Result<Sched, SchedulerError> {
    fn epochs<S: ckpt::optim::Schedule + Send + 'static>(
        opt: &mut Sgd,
        schedule: S,
        last_epoch: i64,
    ) -> Result<Sched, SchedulerError> {
        Ok(Sched::Epochs(
            Scheduler::with_last_epoch(opt, schedule, last_epoch)?.boxed(),
        ))
    }
    match name {
        "steplr" => epochs(opt, StepLr::new(7, 0.5), last_epoch),
        "multisteplr" => epochs(opt, MultiStepLr::new([10, 25, 25, 40], 0.3), last_epoch),
        "exponentiallr" => epochs(opt, ExponentialLr::new(0.93), last_epoch),
        "cosineannealinglr" => epochs(opt, CosineAnnealingLr::new(20, 0.001), last_epoch),
        "linearlr" => epochs(opt, LinearLr::new(0.25, 1.0, 12), last_epoch),
        "onecyclelr" => epochs(opt, OneCycleLr::new([0.5, 0.05], 60), last_epoch),
        "onecyclelr_linear_three_phase" => epochs(
            opt,
            OneCycleLr::new(0.3, 60)
                .pct_start(0.25)
                .anneal_strategy(Anneal::Linear)
                .three_phase(true)
                .base_momentum(0.8)
                .max_momentum(0.9)
                .div_factor(10.0)
                .final_div_factor(100.0),
            last_epoch,
        ),
        "reducelronplateau" => {
            assert_eq!(last_epoch, -1, "ReduceLROnPlateau takes no last_epoch");
            let settings = Plateau {
                mode: Mode::Min,
                factor: 0.5,
                patience: 2,
                threshold: 0.05,
                threshold_mode: ThresholdMode::Rel,
                cooldown: 3,
                min_lr: PerGroup::from([0.01, 0.001]),
                eps: 1e-8,
            };
            Ok(Sched::Plateau(ReduceLrOnPlateau::new(opt, settings)?))
        }
        "sequentiallr" => {
            assert_eq!(last_epoch, -1);
            let warmup = Scheduler::new(opt, LinearLr::new(0.1, 1.0, 5))?;
            let cosine = Scheduler::new(opt, CosineAnnealingLr::new(25, 0.001))?;
            let exponential = Scheduler::new(opt, ExponentialLr::new(0.9))?;
            let schedulers = vec![warmup.boxed(), cosine.boxed(), exponential.boxed()];
            Ok(Sched::Epochs(
                SequentialLr::new(opt, schedulers, vec![5, 30])?.boxed(),
            ))
        }
        "lambdalr" => epochs(
            opt,
            LambdaLr::per_group(vec![Box::new(decay), Box::new(Warmup { warmup: 5 })]),
            last_epoch,
        ),
        other => panic!("no scheduler {other}"),
    }
}

pub(crate) fn build(name: &str, opt: &mut Sgd) -> Sched {
    build_at(name, opt, -1).unwrap()
}

pub(crate) fn group_floats(opt: &Sgd, key: &str) -> Vec<f64> {
    (0..opt.group_count())
        .map(|g| opt.option(g, key).and_then(|v| v.as_f64()).unwrap())
        .collect()
}

/// Checks the scheduler and the optimizer against a fixture's record of one step.
pub(crate) fn check_step(what: &str, record: &Json, sched: &Sched, opt: &Sgd) {
    assert_eq!(
        sched.last_epoch(),
        record["last_epoch"].as_i64().unwrap(),
        "{what}: last_epoch"
    );
    let lr = floats(&record["lr"]);
    assert_floats(&format!("{what}: lr"), &group_floats(opt, "lr"), &lr);
    let last_lr = floats(&record["last_lr"]);
    assert_floats(&format!("{what}: last_lr"), sched.last_lr(), &last_lr);
    if let Some(momentum) = record.get("momentum") {
        let momentum = floats(momentum);
        let actual = group_floats(opt, "momentum");
        assert_floats(&format!("{what}: momentum"), &actual, &momentum);
    }
    if let (Sched::Plateau(s), Some(best)) = (sched, record.get("best")) {
        assert!(same_float(s.best(), number(best).unwrap()), "{what}: best");
        assert_eq!(
            Some(s.num_bad_epochs()),
            record["num_bad_epochs"].as_i64(),
            "{what}"
        );
        assert_eq!(
            Some(s.cooldown_counter()),
            record["cooldown_counter"].as_i64(),
            "{what}"
        );
    }
}

/// Checks a state dict against the fixture's typed record of PyTorch's: keys, order, types and
/// values bit for bit.
pub(crate) fn check_state(what: &str, state: &Value<'_>, typed: &Tree) {
    if let Some(why) = typed_mismatch("state_dict", state, typed) {
        panic!("{what}: {why}");
    }
}

/// 60 steps and the state dicts at steps 0, 30 and 60, from a fresh optimizer.
fn sixty_steps(name: &str) {
    let fixture = json(&format!("schedulers/{name}.json"));
    let file = format!("schedulers/{name}.json");
    let metrics = plateau_metrics();
    let mut opt = optimizer();
    let mut sched = build(name, &mut opt);
    let groups = opt.pytorch_state_dict()["param_groups"].to_owned_value();
    let groups: Vec<Value<'_>> = groups
        .as_list()
        .unwrap()
        .iter()
        .map(|g| {
            let mut g = g.clone();
            if let Value::Map(m) = &mut g {
                m.shift_remove(&ckpt::value::Key::from("params"));
            }
            g
        })
        .collect();
    let expected = Tree::at(&file, &["optimizer", "param_groups_after_constructor"]);
    if let Some(why) = typed_mismatch("param_groups", &Value::List(groups), &expected) {
        panic!("{name}: the optimizer's groups after the constructor: {why}");
    }
    let steps = fixture["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 61);
    check_step(&format!("{name} step 0"), &steps[0], &sched, &opt);
    check_state(
        name,
        &sched.state_dict(),
        &Tree::at(&file, &["state_dict", "0"]),
    );
    for (i, record) in steps.iter().enumerate().skip(1) {
        sched.step(&mut opt, i, &metrics);
        check_step(&format!("{name} step {i}"), record, &sched, &opt);
        if i == 30 || i == 60 {
            let typed = Tree::at(&file, &["state_dict", &i.to_string()]);
            check_state(&format!("{name} step {i}"), &sched.state_dict(), &typed);
        }
    }
}

#[test]
fn sixty_steps_are_pytorchs_bit_for_bit() {
    for name in NAMES {
        sixty_steps(name);
    }
}

/// PyTorch's step-30 checkpoint resumes exactly: a new optimizer and scheduler (built as the
/// fixture's), both states loaded, steps 31 to 60 as PyTorch's. The scheduler's state saves back
/// as it was loaded.
fn resume_from_pytorch(name: &str) {
    let fixture = json(&format!("schedulers/{name}.json"));
    let file = pt(&format!("schedulers/{name}_step30.pt"));
    let metrics = plateau_metrics();
    let mut opt = optimizer();
    let mut sched = build(name, &mut opt);
    opt.load_pytorch_state_dict(&file["optimizer"]).unwrap();
    sched.load_state_dict(&file["scheduler"]).unwrap();
    assert_eq!(sched.state_dict(), file["scheduler"], "{name}: saved back");
    check_state(
        name,
        &sched.state_dict(),
        &Tree::at(&format!("schedulers/{name}.json"), &["state_dict", "30"]),
    );
    assert_eq!(opt.pytorch_state_dict(), file["optimizer"], "{name}");
    let steps = fixture["steps"].as_array().unwrap();
    check_step(&format!("{name} resumed"), &steps[30], &sched, &opt);
    for (i, record) in steps.iter().enumerate().skip(31) {
        sched.step(&mut opt, i, &metrics);
        check_step(&format!("{name} resumed, step {i}"), record, &sched, &opt);
    }
}

#[test]
fn pytorch_checkpoints_at_step_30_resume_exactly() {
    for name in NAMES {
        resume_from_pytorch(name);
    }
}

/// A scheduler ckpt saved (in a `.pt` file or ckpt's own `.ckpt`, through `ckpt::save`) at
/// step 30 resumes as PyTorch's continues: `MultiStepLR`'s `Counter` and every type of the state
/// survive both formats.
#[test]
fn checkpoints_ckpt_writes_at_step_30_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = plateau_metrics();
    for (name, ext) in NAMES.iter().flat_map(|n| [(*n, "pt"), (*n, "ckpt")]) {
        let fixture = json(&format!("schedulers/{name}.json"));
        let steps = fixture["steps"].as_array().unwrap();
        let mut opt = optimizer();
        let mut sched = build(name, &mut opt);
        for i in 1..=30 {
            sched.step(&mut opt, i, &metrics);
        }
        let path = dir.path().join(format!("{name}.{ext}"));
        let checkpoint = ckpt::dict! {
            "optimizer" => opt.pytorch_state_dict(),
            "scheduler" => sched.state_dict(),
            "epoch" => 30,
        };
        ckpt::save(&checkpoint, &path).unwrap();
        let back = ckpt::load(&path).unwrap();
        let mut opt = optimizer();
        let mut sched = build(name, &mut opt);
        opt.load_pytorch_state_dict(&back["optimizer"]).unwrap();
        sched.load_state_dict(&back["scheduler"]).unwrap();
        let typed = Tree::at(&format!("schedulers/{name}.json"), &["state_dict", "30"]);
        check_state(
            &format!("{name} through a .{ext} file"),
            &sched.state_dict(),
            &typed,
        );
        for (i, record) in steps.iter().enumerate().skip(31) {
            sched.step(&mut opt, i, &metrics);
            check_step(
                &format!("{name} resumed from a .{ext} file, step {i}"),
                record,
                &sched,
                &opt,
            );
        }
    }
}

/// PyTorch's deprecated `step(epoch)` uses the closed forms, from the base learning rates.
#[test]
fn closed_forms_are_pytorchs() {
    let fixture = json("schedulers/closed_form.json");
    let epochs: Vec<i64> = fixture["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_i64().unwrap())
        .collect();
    let names = fixture["schedulers"].as_object().unwrap();
    assert_eq!(names.len(), 5);
    for (name, record) in names {
        let mut opt = optimizer();
        let Sched::Epochs(mut sched) = build(name, &mut opt) else {
            panic!("{name} has no closed form");
        };
        for (i, &epoch) in epochs.iter().enumerate() {
            sched.step_to(&mut opt, epoch).unwrap();
            assert_eq!(sched.last_epoch(), epoch);
            let expected = floats(&record["lr"][i]);
            let actual = group_floats(&opt, "lr");
            assert_floats(&format!("{name} step({epoch})"), &actual, &expected);
        }
    }
}

/// Built with `last_epoch=29` on an optimizer loaded from PyTorch's step-30 checkpoint: the
/// constructor's step goes to epoch 30 (the closed form for `CosineAnnealingLR`), then on.
#[test]
fn resumes_through_last_epoch_are_pytorchs() {
    let fixture = json("schedulers/last_epoch.json");
    let metrics = plateau_metrics();
    let names = fixture["schedulers"].as_object().unwrap();
    assert_eq!(names.len(), 8);
    for (name, record) in names {
        let file = pt(&format!("schedulers/{name}_step30.pt"));
        let mut opt = optimizer();
        opt.load_pytorch_state_dict(&file["optimizer"]).unwrap();
        let mut sched = build_at(name, &mut opt, 29).unwrap();
        let steps = record["steps"].as_array().unwrap();
        for (i, step) in steps.iter().enumerate() {
            if i > 0 {
                sched.step(&mut opt, 30 + i, &metrics);
            }
            check_step(&format!("{name} last_epoch=29, +{i}"), step, &sched, &opt);
        }
        let typed = Tree::at(
            "schedulers/last_epoch.json",
            &["schedulers", name, "state_dict_at_end"],
        );
        check_state(name, &sched.state_dict(), &typed);
    }
}

#[test]
fn resuming_through_last_epoch_needs_initial_lr() {
    let mut opt = optimizer();
    let err = Scheduler::with_last_epoch(&mut opt, StepLr::new(2, 0.1), 1).unwrap_err();
    assert_eq!(err, SchedulerError::MissingInitialLr { group: 0 });
    assert!(
        err.to_string()
            .starts_with("param 'initial_lr' is not specified in param_groups[0] when resuming scheduler with last_epoch >= 0"),
        "{err}"
    );
    assert_eq!(
        opt.option(0, "initial_lr"),
        None,
        "the optimizer is untouched"
    );
}

#[test]
fn one_cycle_stops_at_its_last_step() {
    let mut opt = optimizer();
    let mut sched = Scheduler::new(&mut opt, OneCycleLr::new(0.5, 3)).unwrap();
    for _ in 0..3 {
        sched.step(&mut opt).unwrap();
    }
    let before = opt.pytorch_state_dict().to_owned_value();
    let err = sched.step(&mut opt).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Tried to step 4 times. The specified number of total steps is 3"
    );
    assert_eq!(sched.last_epoch(), 3, "the failed step changed nothing");
    assert_eq!(opt.pytorch_state_dict(), before);
    let err = Scheduler::new(&mut opt, OneCycleLr::new([0.5, 0.1, 0.2], 10)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "OneCycleLR: max_lr must have the same length as optimizer.param_groups. max_lr has 3 values, param_groups has 2."
    );
}

/// `OneCycleLR` cycles Adam's first beta, as PyTorch's does.
#[test]
fn one_cycle_cycles_adams_beta1() {
    let params = Params {
        p0: Array2::zeros((2, 2)),
        p1: Array1::zeros(2),
    };
    let mut adam = ckpt::optim::Adam::new(&params, ckpt::optim::AdamConfig::default());
    let mut sched = Scheduler::new(&mut adam, OneCycleLr::new(0.01, 10)).unwrap();
    assert_eq!(adam.groups()[0].config().betas, (0.95, 0.999));
    sched.step(&mut adam).unwrap();
    assert!(adam.groups()[0].config().betas.0 < 0.95);
    assert_eq!(sched.state_dict()["use_beta1"], Value::Bool(true));
    // SGD without momentum has no momentum to cycle: PyTorch sets it anyway, as it is in the
    // defaults, and so does ckpt.
    let mut sgd = Sgd::new(&params, SgdConfig::default());
    let _ = Scheduler::new(&mut sgd, OneCycleLr::new(0.01, 10)).unwrap();
    assert_eq!(sgd.groups()[0].config().momentum, 0.95);
}

#[test]
fn bad_state_dicts_are_refused_whole() {
    let mut opt = optimizer();
    let mut sched = build("sequentiallr", &mut opt);
    for i in 1..=7 {
        sched.step(&mut opt, i, &[]);
    }
    let before = sched.state_dict().to_owned_value();
    let mut bad = pt("schedulers/sequentiallr_step30.pt")["scheduler"].to_owned_value();
    if let Value::Map(top) = &mut bad
        && let Some(Value::List(nested)) = top.get_mut(&ckpt::value::Key::from("_schedulers"))
    {
        nested[2].insert("gamma", "0.9");
    }
    assert_eq!(
        sched.load_state_dict(&bad).unwrap_err().to_string(),
        "invalid ExponentialLR state dict at _schedulers.2.gamma: expected a number, got string"
    );
    assert_eq!(
        sched.state_dict(),
        before,
        "the schedulers already loaded went back"
    );

    let mut opt = optimizer();
    let mut step = Scheduler::new(&mut opt, StepLr::new(7, 0.5)).unwrap();
    let cosine = pt("schedulers/cosineannealinglr_step30.pt");
    assert_eq!(
        step.load_state_dict(&cosine["scheduler"])
            .unwrap_err()
            .to_string(),
        "invalid StepLR state dict at step_size: missing; is this a StepLR state dict?"
    );
    let mut short = pt("schedulers/steplr_step30.pt")["scheduler"].to_owned_value();
    short.insert("base_lrs", vec![0.1]);
    assert_eq!(
        step.load_state_dict(&short).unwrap_err().to_string(),
        "invalid StepLR state dict at base_lrs: 1 values, for a scheduler of 2 parameter groups"
    );
    assert_eq!(step.last_epoch(), 0);
}

/// Keys ckpt does not know (an attribute of a subclass, one of another PyTorch version) are
/// kept and saved back.
#[test]
fn unknown_scheduler_keys_pass_through() {
    let mut saved = pt("schedulers/steplr_step30.pt")["scheduler"].to_owned_value();
    saved.insert("verbose", "deprecated");
    let mut opt = optimizer();
    let mut sched = Scheduler::new(&mut opt, StepLr::new(7, 0.5)).unwrap();
    sched.load_state_dict(&saved).unwrap();
    sched.step(&mut opt).unwrap();
    let state = sched.state_dict();
    assert_eq!(state["verbose"].as_str(), Some("deprecated"));
    assert_eq!(state["last_epoch"].as_i64(), Some(31));
}
