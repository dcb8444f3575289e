//! Scheduler and optimizer state dicts from untrusted files: whatever number a field of PyTorch's
//! checkpoints is replaced with (the extremes of an `int`, zero, negatives, NaN, infinities), the
//! load and the steps after it return a result or an error; they never panic (an integer
//! overflow included: the tests build with overflow checks), and a refused load or step leaves
//! the scheduler and the learning rates as they were.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::common::optim::{json, pt};
use crate::groups::{Net, adam, grads, net, sgd};
use crate::schedulers::{NAMES, build, optimizer, plateau_metrics};
use ckpt::optim::{Algorithm, Optimizer, ParamGroups};
use ckpt::{StateDict, Value};

const INTS: [i64; 6] = [i64::MAX, i64::MIN, i64::MAX / 2 + 1, 0, -1, -2];
const FLOATS: [f64; 5] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308, -1e308];

/// The path of every number in `value`, in order.
fn numbers(value: &Value<'_>, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Int(_) | Value::Float(_) => out.push(path.clone()),
        Value::Map(_) | Value::Counter(_) => {
            for (key, item) in value.as_map().into_iter().flatten() {
                path.push(key.to_string());
                numbers(item, path, out);
                path.pop();
            }
        }
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                numbers(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `value` with the number at `path` replaced.
fn replaced(value: &Value<'_>, path: &[String], with: &Value<'static>) -> Value<'static> {
    let mut value = value.to_owned_value();
    let mut at = &mut value;
    for part in path {
        at = match at {
            Value::Map(map) => {
                map.iter_mut()
                    .find(|(k, _)| k.to_string() == *part)
                    .unwrap()
                    .1
            }
            Value::Counter(map) => {
                map.iter_mut()
                    .find(|(k, _)| k.to_string() == *part)
                    .unwrap()
                    .1
            }
            Value::List(items) => &mut items[part.parse::<usize>().unwrap()],
            _ => unreachable!("{path:?} leads to a number"),
        };
    }
    *at = with.clone();
    value
}

/// A panic's message.
fn why(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn lrs(opt: &ckpt::optim::Sgd) -> Vec<f64> {
    (0..opt.group_count())
        .map(|g| opt.option(g, "lr").and_then(|v| v.as_f64()).unwrap())
        .collect()
}

#[test]
fn any_number_in_a_scheduler_state_dict_is_a_result_not_a_panic() {
    let metrics = plateau_metrics();
    let mut panics = Vec::new();
    let mut cases = 0;
    for name in NAMES {
        let file = pt(&format!("schedulers/{name}_step30.pt"));
        let mut paths = Vec::new();
        numbers(&file["scheduler"], &mut Vec::new(), &mut paths);
        assert!(!paths.is_empty(), "{name}");
        let values = INTS
            .iter()
            .map(|&i| Value::Int(i))
            .chain(FLOATS.iter().map(|&f| Value::Float(f)));
        for with in values.collect::<Vec<_>>() {
            for path in &paths {
                cases += 1;
                let state = replaced(&file["scheduler"], path, &with);
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let mut opt = optimizer();
                    let mut sched = build(name, &mut opt);
                    opt.load_pytorch_state_dict(&file["optimizer"]).unwrap();
                    let before = lrs(&opt);
                    if sched.load_state_dict(&state).is_err() {
                        assert_eq!(lrs(&opt), before, "a refused load changed the lr");
                        return;
                    }
                    for i in 31..=40 {
                        // Debug strings, so that a NaN compares equal to itself.
                        let before = format!("{:?} {:?}", sched.state_dict(), lrs(&opt));
                        if sched.try_step(&mut opt, i, &metrics).is_err() {
                            let after = format!("{:?} {:?}", sched.state_dict(), lrs(&opt));
                            assert_eq!(after, before, "a failed step changed something");
                            break;
                        }
                    }
                }));
                if let Err(payload) = outcome {
                    panics.push(format!(
                        "{name} {} = {with:?}: {}",
                        path.join("."),
                        why(&*payload)
                    ));
                }
            }
        }
    }
    assert!(cases > 500, "{cases} cases");
    assert!(
        panics.is_empty(),
        "{} of {cases} cases panicked:\n{}",
        panics.len(),
        panics.join("\n")
    );
}

/// A counter at `i64::MAX` cannot count one more: the step says so, naming the scheduler and
/// the counter, and changes nothing.
#[test]
fn a_step_past_i64_max_is_an_error_that_changes_nothing() {
    let metrics = plateau_metrics();
    for (name, counter) in [
        ("steplr", "last_epoch"),
        ("steplr", "_step_count"),
        ("reducelronplateau", "num_bad_epochs"),
        ("sequentiallr", "last_epoch"),
    ] {
        let file = pt(&format!("schedulers/{name}_step30.pt"));
        let state = replaced(
            &file["scheduler"],
            &[counter.to_string()],
            &Value::Int(i64::MAX),
        );
        let mut opt = optimizer();
        let mut sched = build(name, &mut opt);
        opt.load_pytorch_state_dict(&file["optimizer"]).unwrap();
        sched.load_state_dict(&state).unwrap();
        let before = (sched.state_dict().to_owned_value(), lrs(&opt));
        // ReduceLROnPlateau counts a bad epoch on a metric that is no better than its best.
        let worse = vec![f64::MAX; metrics.len()];
        let err = sched.try_step(&mut opt, 31, &worse).unwrap_err();
        let scheduler = match name {
            "steplr" => "StepLR",
            "reducelronplateau" => "ReduceLROnPlateau",
            _ => "SequentialLR",
        };
        assert_eq!(
            err.to_string(),
            format!("{scheduler}: {counter} cannot count past 9223372036854775807 (i64::MAX)")
        );
        assert_eq!(
            (sched.state_dict().to_owned_value(), lrs(&opt)),
            before,
            "{name}"
        );
    }
}

/// The same for the two-group SGD and Adam checkpoints PyTorch saved: any number of their
/// optimizer state dicts (a hyper-parameter, a parameter index, `initial_lr`) replaced, the
/// load and two steps after it give a result; a refused load changes neither the optimizer
/// nor the model.
#[test]
fn any_number_in_an_optimizer_state_dict_is_a_result_not_a_panic() {
    fn probe<A: Algorithm>(name: &str, make: fn(&Net) -> Optimizer<A>) -> (usize, Vec<String>) {
        let file = pt(&format!("pytorch/optim_groups/{name}_two_groups.pt"));
        let fixture = json(&format!("pytorch/optim_groups/{name}_two_groups.json"));
        let mut paths = Vec::new();
        numbers(&file["optimizer"], &mut Vec::new(), &mut paths);
        let values = INTS
            .iter()
            .map(|&i| Value::Int(i))
            .chain(FLOATS.iter().map(|&f| Value::Float(f)))
            .collect::<Vec<_>>();
        let (mut cases, mut panics) = (0, Vec::new());
        for with in &values {
            for path in &paths {
                cases += 1;
                let state = replaced(&file["optimizer"], path, with);
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let mut model = net();
                    let _ = model.load_state_dict(&file["model"], true).unwrap();
                    let mut opt = make(&model);
                    let before = format!("{:?}", opt.pytorch_state_dict());
                    if opt.load_pytorch_state_dict(&state).is_err() {
                        let after = format!("{:?}", opt.pytorch_state_dict());
                        assert_eq!(after, before, "a refused load changed the optimizer");
                        return;
                    }
                    for step in 4..=5 {
                        if opt.step(&mut model, &grads(&fixture, step)).is_err() {
                            break;
                        }
                    }
                }));
                if let Err(payload) = outcome {
                    panics.push(format!(
                        "{name} {} = {with:?}: {}",
                        path.join("."),
                        why(&*payload)
                    ));
                }
            }
        }
        (cases, panics)
    }
    let (sgd_cases, mut panics) = probe("sgd", sgd);
    let (adam_cases, adam_panics) = probe("adam", adam);
    panics.extend(adam_panics);
    let cases = sgd_cases + adam_cases;
    assert!(cases > 200, "{cases} cases");
    assert!(
        panics.is_empty(),
        "{} of {cases} cases panicked:\n{}",
        panics.len(),
        panics.join("\n")
    );
}
