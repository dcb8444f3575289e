//! Checkpoints ckpt writes for PyTorch to resume, in `tests/fixtures/pytorch/resume/`, which
//! `tests/python/resume_schedulers_in_pytorch.py` loads with `torch.load(weights_only=True)`:
//!
//! - `schedulers_step30.pt`: for each scheduler of the fixtures, the optimizer and scheduler
//!   states ckpt reached by itself after 30 steps; `schedulers_step30.json` lists the learning
//!   rates ckpt computes for steps 31 to 60 (PyTorch's own, checked here).
//! - `optim_groups_step4.pt`: PyTorch's two-group SGD and Adam checkpoints (step 3, with
//!   `StepLR`) loaded by ckpt, stepped once more, and saved: the groups keep `initial_lr`, so
//!   `StepLR(opt, 2, last_epoch=3)` works on them in PyTorch. Each entry holds the gradients of
//!   steps 5 and 6 and the parameters ckpt computes after them; `optim_groups_step4.json` the
//!   learning rates.
//!
//! Set `CKPT_REGENERATE=1` to rewrite them after a deliberate change.

use crate::common::optim::{assert_floats, floats, json, pt};
use crate::groups::{NAMES as PARAMS, adam, grads, net, sgd};
use crate::schedulers::{NAMES, Sched, build, group_floats, optimizer, plateau_metrics};
use ckpt::optim::{Algorithm, LrScheduler, Optimizer, Scheduler, StepLr};
use ckpt::{StateDict, Value, dict};
use serde_json::json;

fn path(name: &str) -> std::path::PathBuf {
    crate::common::optim::fixture_path(&format!("pytorch/resume/{name}"))
}

/// Compares `bytes` with the committed file (rewriting it first under `CKPT_REGENERATE`).
fn check_committed(name: &str, bytes: &[u8]) {
    let path = path(name);
    if std::env::var_os("CKPT_REGENERATE").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == bytes,
        "{name} is stale: run with CKPT_REGENERATE=1"
    );
}

fn pt_bytes(value: &Value<'_>) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    crate::common::pytorch::write(value, &mut bytes).unwrap();
    bytes.into_inner()
}

fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    format!("{}\n", serde_json::to_string(value).unwrap()).into_bytes()
}

fn record(sched: &Sched, opt: &ckpt::optim::Sgd, name: &str) -> serde_json::Value {
    let mut step = json!({
        "last_epoch": sched.last_epoch(),
        "lr": group_floats(opt, "lr"),
        "last_lr": sched.last_lr(),
    });
    if name.starts_with("onecyclelr") {
        step["momentum"] = json!(group_floats(opt, "momentum"));
    }
    step
}

#[test]
fn scheduler_checkpoints_for_pytorch_are_up_to_date() {
    let metrics = plateau_metrics();
    let mut file = Value::map();
    let mut expected = serde_json::Map::new();
    for name in NAMES {
        let fixture = json(&format!("schedulers/{name}.json"));
        let mut opt = optimizer();
        let mut sched = build(name, &mut opt);
        for i in 1..=30 {
            sched.step(&mut opt, i, &metrics);
        }
        file.insert(
            name,
            dict! {
                "optimizer" => opt.pytorch_state_dict().to_owned_value(),
                "scheduler" => sched.state_dict().to_owned_value(),
                "epoch" => 30,
            },
        );
        let mut steps = Vec::new();
        for i in 31..=60 {
            sched.step(&mut opt, i, &metrics);
            let pytorch = &fixture["steps"][i];
            assert_floats(name, &group_floats(&opt, "lr"), &floats(&pytorch["lr"]));
            steps.push(record(&sched, &opt, name));
        }
        expected.insert(name.to_owned(), json!({ "steps": steps }));
    }
    let manifest = json!({
        "about": "For each scheduler of tests/fixtures/schedulers (constructors as there, on SGD([{p0 [2,2], lr 0.1}, {p1 [2], lr 0.02}], lr=0.1, momentum=0.9)), the learning rates ckpt computes for steps 31..60 after the step-30 states of schedulers_step30.pt; ReduceLROnPlateau steps on metrics[i - 1].",
        "metrics": metrics,
        "schedulers": expected,
    });
    check_committed("schedulers_step30.pt", &pt_bytes(&file));
    check_committed("schedulers_step30.json", &json_bytes(&manifest));
    // ckpt reads back what it wrote, key for key.
    let back = ckpt::load(path("schedulers_step30.pt")).unwrap();
    assert_eq!(back.value(), &file);
}

/// Loads PyTorch's checkpoint `name`, takes step 4 in ckpt, and returns the checkpoint of step
/// 4, the gradients of steps 5 and 6, the parameters after each and the learning rates.
fn groups_entry<A: Algorithm>(
    name: &str,
    make: fn(&crate::groups::Net) -> Optimizer<A>,
) -> (Value<'static>, serde_json::Value) {
    let fixture = json(&format!("pytorch/optim_groups/{name}_two_groups.json"));
    let file = pt(&format!("pytorch/optim_groups/{name}_two_groups.pt"));
    let mut model = net();
    let _ = model.load_state_dict(&file["model"], true).unwrap();
    let mut opt = make(&model);
    let mut scheduler = Scheduler::new(&mut opt, StepLr::new(2, 0.5)).unwrap();
    opt.load_pytorch_state_dict(&file["optimizer"]).unwrap();
    scheduler.load_state_dict(&file["scheduler"]).unwrap();
    opt.step(&mut model, &grads(&fixture, 4)).unwrap();
    scheduler.step(&mut opt).unwrap();
    let checkpoint = dict! {
        "model" => model.state_dict().to_owned_tensors().unwrap().into_iter().collect::<Value<'static>>(),
        "optimizer" => opt.pytorch_state_dict().to_owned_value(),
        "scheduler" => scheduler.state_dict().to_owned_value(),
        "epoch" => 4,
    };
    let (mut next_grads, mut after, mut lrs) = (Vec::new(), Vec::new(), Vec::new());
    for step in 5..=6 {
        let g = grads(&fixture, step);
        opt.step(&mut model, &g).unwrap();
        scheduler.step(&mut opt).unwrap();
        crate::groups::check_params(&fixture, &model, step, name);
        next_grads.push(g.into_iter().collect::<Value<'static>>());
        after.push(
            model
                .state_dict()
                .to_owned_tensors()
                .unwrap()
                .into_iter()
                .collect::<Value<'static>>(),
        );
        lrs.push(scheduler.last_lr().to_vec());
    }
    assert_eq!(PARAMS.len(), 4);
    let entry = dict! {
        "checkpoint" => checkpoint,
        "next_grads" => next_grads,
        "expected_after" => after,
    };
    let facts = json!({ "lr_after": lrs, "base_lrs": scheduler.base_lrs() });
    (entry, facts)
}

#[test]
fn group_checkpoints_for_pytorch_are_up_to_date() {
    let (sgd_entry, sgd_facts) = groups_entry("sgd", sgd);
    let (adam_entry, adam_facts) = groups_entry("adam", adam);
    let file = dict! { "sgd" => sgd_entry, "adam" => adam_entry };
    let manifest = json!({
        "about": "PyTorch's tests/fixtures/pytorch/optim_groups checkpoints (step 3) resumed in ckpt with StepLR(step_size=2, gamma=0.5), stepped once (step 4) and saved as checkpoint; next_grads are the gradients of steps 5 and 6, expected_after the parameters ckpt computes after each, lr_after here the learning rates.",
        "sgd": sgd_facts,
        "adam": adam_facts,
    });
    check_committed("optim_groups_step4.pt", &pt_bytes(&file));
    check_committed("optim_groups_step4.json", &json_bytes(&manifest));
    let back = ckpt::load(path("optim_groups_step4.pt")).unwrap();
    assert_eq!(back.value(), &file);
}
