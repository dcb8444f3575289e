//! Parameter groups against PyTorch's `tests/fixtures/pytorch/optim_groups/`: a backbone and a
//! head at their own learning rates and weight decays, SGD and Adam under `StepLR`, six steps;
//! the checkpoint PyTorch saved after three (whose groups carry `StepLR`'s `initial_lr`) loads,
//! saves back unchanged, and resumes, through the scheduler's state or through `last_epoch`.

use crate::common::optim::{Tree, floats, json, pt, tensor, typed_mismatch};
use ckpt::nn::{Linear, Rng};
use ckpt::optim::{
    AdamConfig, Algorithm, LrScheduler, OptimError, Optimizer, ParamGroup, Scheduler, SgdConfig,
    StepLr,
};
use ckpt::{StateDict, Tensor, Value};
use indexmap::IndexMap;
use serde_json::Value as Json;

/// `nn.Sequential(backbone=Linear(4, 3), head=Linear(3, 2))`.
#[derive(StateDict, Clone)]
pub(crate) struct Net {
    pub(crate) backbone: Linear,
    pub(crate) head: Linear,
}

pub(crate) const NAMES: [&str; 4] = [
    "backbone.weight",
    "backbone.bias",
    "head.weight",
    "head.bias",
];

pub(crate) fn net() -> Net {
    let rng = &mut Rng::seed(0);
    Net {
        backbone: Linear::new(4, 3, rng),
        head: Linear::new(3, 2, rng),
    }
}

/// The fixture's groups: `[{backbone, lr 0.01, weight_decay 1e-3}, {head, lr 0.1, weight_decay
/// 0.0}]` over the constructor's other settings.
pub(crate) fn two_groups<A: Algorithm>(
    model: &Net,
    base: A,
    set: fn(&mut A, f64, f64),
) -> Optimizer<A> {
    let (mut backbone, mut head) = (base.clone(), base);
    set(&mut backbone, 0.01, 1e-3);
    set(&mut head, 0.1, 0.0);
    Optimizer::with_groups(
        model,
        [
            ParamGroup::with_prefix("backbone.", backbone),
            ParamGroup::with_keys(["head.weight", "head.bias"], head),
        ],
    )
    .unwrap()
}

pub(crate) fn sgd(model: &Net) -> Optimizer<SgdConfig> {
    let base = SgdConfig::default().lr(0.05).momentum(0.9);
    two_groups(model, base, |c, lr, wd| {
        c.lr = lr;
        c.weight_decay = wd;
    })
}

pub(crate) fn adam(model: &Net) -> Optimizer<AdamConfig> {
    let base = AdamConfig::default().lr(0.001).betas(0.9, 0.99);
    two_groups(model, base, |c, lr, wd| {
        c.lr = lr;
        c.weight_decay = wd;
    })
}

pub(crate) fn grads(fixture: &Json, step: usize) -> IndexMap<String, Tensor> {
    NAMES
        .iter()
        .map(|n| {
            (
                n.to_string(),
                tensor(fixture, &format!("step{step}.grad.{n}")),
            )
        })
        .collect()
}

/// Checks the parameters after `step` against PyTorch's (within 1e-6).
pub(crate) fn check_params(fixture: &Json, model: &Net, step: usize, what: &str) {
    let state = model.state_dict();
    for name in NAMES {
        let actual = crate::common::fixtures::values(&state.get(name).unwrap().view());
        let expected: ndarray::ArrayD<f32> = tensor(fixture, &format!("step{step}.param.{name}"))
            .to_array()
            .unwrap();
        crate::common::fixtures::assert_close(
            &format!("{what} step {step} {name}"),
            &actual,
            &expected,
            1e-6,
        );
    }
}

fn initial(fixture: &Json) -> Net {
    let mut model = net();
    let state: IndexMap<String, Tensor> = NAMES
        .iter()
        .map(|n| (n.to_string(), tensor(fixture, &format!("initial.{n}"))))
        .collect();
    let _ = model.load_state_dict(&state, true).unwrap();
    model
}

/// Every group's `lr`.
fn lrs<A: Algorithm>(opt: &Optimizer<A>) -> Vec<f64> {
    opt.groups()
        .iter()
        .map(|g| g.get("lr").and_then(|lr| lr.as_f64()).unwrap())
        .collect()
}

/// Six steps under `StepLR(opt, step_size=2, gamma=0.5)`, each group at its own learning rate
/// and weight decay: parameters within 1e-6 of PyTorch's, learning rates equal.
fn six_steps<A: Algorithm>(name: &str, make: fn(&Net) -> Optimizer<A>) {
    let fixture = json(&format!("pytorch/optim_groups/{name}_two_groups.json"));
    let mut model = initial(&fixture);
    let mut opt = make(&model);
    assert_eq!(opt.param_names().collect::<Vec<_>>(), NAMES);
    let mut scheduler = Scheduler::new(&mut opt, StepLr::new(2, 0.5)).unwrap();
    assert_eq!(lrs(&opt), floats(&fixture["lr_after_step"][0]));
    for step in 1..=6 {
        opt.step(&mut model, &grads(&fixture, step)).unwrap();
        scheduler.step(&mut opt).unwrap();
        check_params(&fixture, &model, step, name);
        assert_eq!(
            lrs(&opt),
            floats(&fixture["lr_after_step"][step]),
            "{name} step {step}"
        );
    }
}

#[test]
fn sgd_groups_step_as_pytorch() {
    six_steps("sgd", sgd);
}

#[test]
fn adam_groups_step_as_pytorch() {
    six_steps("adam", adam);
}

/// PyTorch's checkpoint loads into the two groups and saves back as it was, every key and type
/// (`initial_lr`, `foreach`, `dampening` as the int 0) in PyTorch's order; resumed with its
/// `StepLR`, the next three steps are PyTorch's.
fn loads_saves_back_and_resumes<A: Algorithm>(name: &str, make: fn(&Net) -> Optimizer<A>) {
    let fixture = json(&format!("pytorch/optim_groups/{name}_two_groups.json"));
    let file = pt(&format!("pytorch/optim_groups/{name}_two_groups.pt"));
    let mut model = net();
    let _ = model.load_state_dict(&file["model"], true).unwrap();
    let mut opt = make(&model);
    let mut scheduler = Scheduler::new(&mut opt, StepLr::new(2, 0.5)).unwrap();
    opt.load_pytorch_state_dict(&file["optimizer"]).unwrap();
    scheduler.load_state_dict(&file["scheduler"]).unwrap();
    assert_eq!(opt.groups()[0].get("initial_lr"), Some(Value::Float(0.01)));
    assert_eq!(opt.groups()[1].get("lr"), Some(Value::Float(0.05)));
    assert_eq!(
        opt.pytorch_state_dict(),
        file["optimizer"],
        "{name}: saved back as PyTorch saved it"
    );
    assert_eq!(scheduler.state_dict(), file["scheduler"]);
    let saved = Tree::at(
        &format!("pytorch/optim_groups/{name}_two_groups.json"),
        &["saved_param_groups"],
    );
    let groups = opt.pytorch_state_dict();
    if let Some(why) = typed_mismatch("param_groups", &groups["param_groups"], &saved) {
        panic!("{name}: {why}");
    }
    for step in 4..=6 {
        opt.step(&mut model, &grads(&fixture, step)).unwrap();
        scheduler.step(&mut opt).unwrap();
        check_params(&fixture, &model, step, name);
        assert_eq!(lrs(&opt), floats(&fixture["lr_after_step"][step]));
    }
}

/// `StepLR(opt, 2, last_epoch=1)` needs `initial_lr` in every group: refused on a fresh
/// optimizer, and on one that loaded PyTorch's checkpoint, or the `.pt` file ckpt saves back
/// from it, it takes its base learning rates from there and steps to epoch 2 (or 3), as
/// PyTorch's.
fn step_lr_resumes_through_last_epoch<A: Algorithm>(name: &str, make: fn(&Net) -> Optimizer<A>) {
    let fixture = json(&format!("pytorch/optim_groups/{name}_two_groups.json"));
    let file = pt(&format!("pytorch/optim_groups/{name}_two_groups.pt"));
    let facts = &fixture["steplr_last_epoch"];
    let mut fresh = make(&net());
    let err = Scheduler::with_last_epoch(&mut fresh, StepLr::new(2, 0.5), 1).unwrap_err();
    let pytorch = facts["fresh_optimizer"]["message"].as_str().unwrap();
    let first_line = pytorch.lines().next().unwrap().trim_end_matches('.');
    assert!(err.to_string().starts_with(first_line), "{err} / {pytorch}");

    let mut loaded = make(&net());
    loaded.load_pytorch_state_dict(&file["optimizer"]).unwrap();
    let mut bytes = std::io::Cursor::new(Vec::new());
    crate::common::pytorch::write(&loaded.pytorch_state_dict(), &mut bytes).unwrap();
    let resaved = crate::common::pytorch::read(bytes.get_ref()).unwrap();
    for (whose, state) in [
        ("PyTorch's", &file["optimizer"]),
        ("ckpt's resave", &resaved),
    ] {
        for last_epoch in [1, 2] {
            let fact = &facts[format!("after_load_state_dict_last_epoch_{last_epoch}")];
            let mut opt = make(&net());
            opt.load_pytorch_state_dict(state).unwrap();
            assert_eq!(lrs(&opt), floats(&fact["lr_before"]), "{name}, {whose}");
            let scheduler =
                Scheduler::with_last_epoch(&mut opt, StepLr::new(2, 0.5), last_epoch).unwrap();
            assert_eq!(
                scheduler.base_lrs(),
                floats(&fact["base_lrs"]),
                "{name}, {whose}"
            );
            assert_eq!(
                lrs(&opt),
                floats(&fact["lr_after_constructor"]),
                "{name}, {whose}"
            );
            assert_eq!(
                Some(scheduler.last_epoch()),
                fact["scheduler_last_epoch"].as_i64(),
                "{name}, {whose}"
            );
        }
    }
}

#[test]
fn step_lr_resumes_sgd_groups_through_last_epoch() {
    step_lr_resumes_through_last_epoch("sgd", sgd);
}

#[test]
fn step_lr_resumes_adam_groups_through_last_epoch() {
    step_lr_resumes_through_last_epoch("adam", adam);
}

#[test]
fn a_pytorch_sgd_checkpoint_with_groups_saves_back_unchanged() {
    loads_saves_back_and_resumes("sgd", sgd);
}

#[test]
fn a_pytorch_adam_checkpoint_with_groups_saves_back_unchanged() {
    loads_saves_back_and_resumes("adam", adam);
}

#[test]
fn groups_are_checked() {
    let model = net();
    let sgd = SgdConfig::default();
    let err = |groups: Vec<ParamGroup<SgdConfig>>| {
        Optimizer::with_groups(&model, groups)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(vec![
            ParamGroup::with_prefix("backbone.", sgd),
            ParamGroup::with_keys(["backbone.bias"], sgd),
        ]),
        "some parameters appear in more than one parameter group: \"backbone.bias\""
    );
    assert_eq!(
        err(vec![ParamGroup::with_prefix("bakbone.", sgd)]),
        "no parameter of the model starts with \"bakbone.\": the parameter group would be empty"
    );
    assert_eq!(
        err(vec![ParamGroup::with_keys(["head.weigth"], sgd)]),
        "parameter \"head.weigth\" of the optimizer is not a parameter of the model"
    );
    assert_eq!(err(vec![]), "optimizer got an empty parameter list");

    // A frozen backbone: parameters in no group are left alone, and unfreezing adds a group.
    let mut opt = Optimizer::with_groups(&model, [ParamGroup::with_prefix("head.", sgd)]).unwrap();
    assert_eq!(
        opt.param_names().collect::<Vec<_>>(),
        ["head.weight", "head.bias"]
    );
    opt.add_param_group(&model, ParamGroup::with_prefix("backbone.", sgd.lr(1e-4)))
        .unwrap();
    assert_eq!(
        opt.param_names().collect::<Vec<_>>(),
        [
            "head.weight",
            "head.bias",
            "backbone.weight",
            "backbone.bias"
        ]
    );
    let state = opt.pytorch_state_dict();
    assert_eq!(
        state["param_groups"][1]["params"],
        Value::from(vec![2i64, 3])
    );
    assert!(matches!(
        opt.add_param_group(&model, ParamGroup::with_keys(["head.bias"], sgd)),
        Err(OptimError::DuplicateParameter { .. })
    ));
}

#[test]
fn loads_into_other_groups_are_refused_whole() {
    let file = pt("pytorch/optim_groups/sgd_two_groups.pt");
    let model = net();
    let mut one = Optimizer::new(&model, SgdConfig::default());
    let err = one.load_pytorch_state_dict(&file["optimizer"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid optimizer state dict at param_groups: loaded state dict has a different number of parameter groups: 1 in the optimizer, 2 in the state dict"
    );
    let mut swapped = Optimizer::with_groups(
        &model,
        [
            ParamGroup::with_keys(["backbone.weight"], SgdConfig::default()),
            ParamGroup::with_keys(
                ["backbone.bias", "head.weight", "head.bias"],
                SgdConfig::default(),
            ),
        ],
    )
    .unwrap();
    let err = swapped
        .load_pytorch_state_dict(&file["optimizer"])
        .unwrap_err();
    assert!(err.to_string().starts_with("invalid optimizer state dict at param_groups.0.params: loaded state dict contains a parameter group that doesn't match the size of optimizer's group"), "{err}");
    let mut bad = file["optimizer"].to_owned_value();
    if let Value::Map(top) = &mut bad
        && let Some(Value::List(groups)) = top.get_mut(&ckpt::value::Key::from("param_groups"))
    {
        groups[1].insert("momentum", "high");
    }
    let mut opt = sgd(&model);
    let before = opt.pytorch_state_dict().to_owned_value();
    assert_eq!(
        opt.load_pytorch_state_dict(&bad).unwrap_err().to_string(),
        "invalid optimizer state dict at param_groups.1.momentum: expected a number, got string"
    );
    assert_eq!(opt.pytorch_state_dict(), before, "nothing changed");
}

/// A key of a group that neither ckpt nor PyTorch knows (a user's tag, added with
/// `opt.param_groups[0]["tag"] = ...`) rides along with `initial_lr` through ckpt's own layout
/// and a `.ckpt` file: PyTorch's checkpoint, loaded, saved by `state_dict()`, loaded into a fresh
/// optimizer and written back in PyTorch's layout is the checkpoint it was.
fn unknown_group_keys_survive_ckpts_own_layout<A: Algorithm>(
    name: &str,
    make: fn(&Net) -> Optimizer<A>,
) {
    let file = pt(&format!("pytorch/optim_groups/{name}_two_groups.pt"));
    let mut original = file["optimizer"].to_owned_value();
    if let Value::Map(top) = &mut original
        && let Some(Value::List(groups)) = top.get_mut(&ckpt::value::Key::from("param_groups"))
    {
        groups[0].insert("tag", "backbone");
        groups[1].insert("frozen_until", 10_i64);
    }
    let mut loaded = make(&net());
    loaded.load_pytorch_state_dict(&original).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.ckpt");
    ckpt::save(loaded.state_dict(), &path).unwrap();
    let mut fresh = make(&net());
    fresh
        .load_state_dict(ckpt::load(&path).unwrap().value())
        .unwrap();
    assert_eq!(fresh.groups()[0].get("tag"), Some(Value::from("backbone")));
    assert_eq!(fresh.groups()[1].get("initial_lr"), Some(Value::Float(0.1)));
    assert_eq!(fresh.pytorch_state_dict(), original, "{name}");
}

#[test]
fn unknown_sgd_group_keys_survive_ckpts_own_layout() {
    unknown_group_keys_survive_ckpts_own_layout("sgd", sgd);
}

#[test]
fn unknown_adam_group_keys_survive_ckpts_own_layout() {
    unknown_group_keys_survive_ckpts_own_layout("adam", adam);
}
