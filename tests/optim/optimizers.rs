//! The optimizers against `torch.optim`: three steps from the fixtures' gradients land within
//! 1e-6 of PyTorch's parameters, the final state matches PyTorch's, and state dicts round-trip
//! in ckpt's layout and PyTorch's.

use crate::common::fixtures::{Fixture, assert_close};
use ckpt::optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, Algorithm, OptimError, Optimizer, Sgd, SgdConfig,
};
use ckpt::{StateDict, Tensor, Value};
use indexmap::IndexMap;
use ndarray::{Array1, Array2, ArrayD};

const TOL: f32 = 1e-6;

/// The fixtures' two parameters, and a buffer no optimizer may touch.
#[derive(StateDict, Clone, Debug, PartialEq)]
struct Params {
    p0: Array2<f32>,
    p1: Array1<f32>,
    #[state(buffer)]
    seen: Array1<f32>,
}

fn initial(f: &Fixture) -> Params {
    Params {
        p0: f.array("param0.initial"),
        p1: f.array("param1.initial"),
        seen: Array1::from_elem(2, 7.0),
    }
}

fn grads(f: &Fixture, step: usize) -> IndexMap<String, Tensor> {
    IndexMap::from([
        ("p0".to_owned(), f.tensor(&format!("step{step}.grad0"))),
        ("p1".to_owned(), f.tensor(&format!("step{step}.grad1"))),
    ])
}

/// Runs the three steps of a shared fixture (`tests/fixtures/layers/NAME.json`), checking the
/// parameters after each; returns the model and optimizer.
fn run<A: Algorithm>(name: &str, config: A) -> (Fixture, Params, Optimizer<A>) {
    run_fixture(crate::common::fixtures::load(name), name, config)
}

/// [`run`] for a fixture of ours (`tests/fixtures/NAME.json`, by `make_forward_fixtures.py`).
fn run_ours<A: Algorithm>(name: &str, config: A) -> (Fixture, Params, Optimizer<A>) {
    run_fixture(
        crate::common::fixtures::load_file(&format!("{name}.json")),
        name,
        config,
    )
}

fn run_fixture<A: Algorithm>(f: Fixture, name: &str, config: A) -> (Fixture, Params, Optimizer<A>) {
    let mut model = initial(&f);
    let mut opt = Optimizer::new(&model, config);
    assert_eq!(opt.param_names().collect::<Vec<_>>(), ["p0", "p1"]);
    for step in 0..3 {
        opt.step(&mut model, &grads(&f, step)).unwrap();
        let at = |k| format!("{name} step{step} param{k}");
        assert_close(
            &at(0),
            &model.p0,
            &f.array::<ndarray::Ix2>(&format!("step{step}.param0")),
            TOL,
        );
        assert_close(
            &at(1),
            &model.p1,
            &f.array::<ndarray::Ix1>(&format!("step{step}.param1")),
            TOL,
        );
    }
    assert_eq!(
        model.seen,
        Array1::from_elem(2, 7.0),
        "buffers are never updated"
    );
    (f, model, opt)
}

/// PyTorch's layout holds the fixture's final state (`final_state.I.NAME`) and hyper-parameters.
fn check_pytorch_layout<A: Algorithm>(f: &Fixture, opt: &Optimizer<A>, entries: &[&str]) {
    let state = opt.pytorch_state_dict();
    for i in 0..2 {
        let saved = state["state"][i].as_map().unwrap();
        let names: Vec<String> = saved.keys().map(ToString::to_string).collect();
        assert_eq!(names, entries, "state {i} entries in PyTorch's order");
        for name in entries {
            let actual =
                crate::common::fixtures::values(&state["state"][i][*name].as_tensor().unwrap());
            let expected: ArrayD<f32> = f.array(&format!("final_state.{i}.{name}"));
            assert_close(&format!("final_state.{i}.{name}"), &actual, &expected, TOL);
        }
    }
    let group = &state["param_groups"][0];
    let config = f.config.as_object().unwrap();
    let keys: Vec<String> = group
        .as_map()
        .unwrap()
        .keys()
        .map(ToString::to_string)
        .collect();
    let mut expected_keys: Vec<String> = config.keys().cloned().collect();
    expected_keys.push("params".to_owned());
    let mut sorted = keys.clone();
    sorted.sort();
    expected_keys.sort();
    assert_eq!(sorted, expected_keys, "param_groups keys");
    assert_eq!(keys.last().map(String::as_str), Some("params"));
    for (key, expected) in config {
        let actual = &group[key.as_str()];
        match expected {
            serde_json::Value::Number(n) => assert_eq!(actual.as_f64(), n.as_f64(), "{key}"),
            serde_json::Value::Bool(b) => assert_eq!(actual.as_bool(), Some(*b), "{key}"),
            serde_json::Value::Null => assert!(actual.is_none(), "{key}"),
            serde_json::Value::Array(items) => {
                let actual: Vec<f64> = actual
                    .as_list()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                let expected: Vec<f64> = items.iter().map(|v| v.as_f64().unwrap()).collect();
                assert_eq!(actual, expected, "{key}");
            }
            other => panic!("{key}: unexpected {other}"),
        }
    }
    let params: Vec<i64> = group["params"]
        .as_list()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(params, [0, 1]);
}

/// The fixture's final state written in PyTorch's layout, as `torch.optim` saves it.
fn pytorch_state_from_fixture(f: &Fixture, entries: &[&str]) -> Value<'static> {
    let state: Value<'static> = (0..2i64)
        .map(|i| {
            let entries: Value<'static> = entries
                .iter()
                .map(|name| (*name, f.tensor(&format!("final_state.{i}.{name}"))))
                .collect();
            (i, entries)
        })
        .collect();
    let mut group = Value::from_serialize(&f.config).unwrap();
    group.insert("params", vec![0i64, 1]);
    ckpt::dict! { "state" => state, "param_groups" => vec![group] }
}

/// Saving and loading in both layouts gives an optimizer whose next step is identical.
fn check_round_trips<A: Algorithm + std::fmt::Debug>(
    f: &Fixture,
    model: &Params,
    opt: &Optimizer<A>,
    fresh: A,
    entries: &[&str],
) {
    let next = grads(f, 0);
    let mut expected_model = model.clone();
    let mut expected_opt = opt.clone();
    expected_opt.step(&mut expected_model, &next).unwrap();

    let native = opt.state_dict().to_owned_value();
    assert_eq!(native["param_groups"][0]["params"][0].as_str(), Some("p0"));
    assert!(native["state"]["p1"]["exp_avg"].is_none() || entries.contains(&"exp_avg"));
    let from_pytorch = pytorch_state_from_fixture(f, entries);
    let layouts: [(&str, Value<'static>, bool); 3] = [
        ("ckpt layout", native, false),
        (
            "PyTorch layout",
            opt.pytorch_state_dict().to_owned_value(),
            true,
        ),
        ("fixture in PyTorch layout", from_pytorch, true),
    ];
    for (what, saved, pytorch) in layouts {
        let mut loaded = Optimizer::new(model, fresh.clone());
        if pytorch {
            loaded.load_pytorch_state_dict(&saved).unwrap();
        } else {
            loaded.load_state_dict(&saved).unwrap();
        }
        for key in ["p0", "p1"] {
            let (a, b) = (loaded.state(key).unwrap(), opt.state(key).unwrap());
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{what}"
            );
            for (name, array) in a {
                assert_close(&format!("{what} {key}.{name}"), array, &b[name], TOL);
            }
        }
        let mut m = model.clone();
        loaded.step(&mut m, &next).unwrap();
        assert_close(&format!("{what} next step"), &m.p0, &expected_model.p0, TOL);
        assert_close(&format!("{what} next step"), &m.p1, &expected_model.p1, TOL);
    }
}

#[test]
fn sgd_nesterov_matches_pytorch() {
    let config = SgdConfig::default()
        .lr(0.1)
        .momentum(0.9)
        .nesterov(true)
        .weight_decay(0.01);
    let (f, model, opt) = run("optim_sgd_nesterov", config);
    check_pytorch_layout(&f, &opt, &["momentum_buffer"]);
    check_round_trips(&f, &model, &opt, SgdConfig::default(), &["momentum_buffer"]);
}

#[test]
fn sgd_dampening_matches_pytorch() {
    let config = SgdConfig::default().lr(0.1).momentum(0.9).dampening(0.5);
    let (f, model, opt) = run("optim_sgd_momentum_dampening", config);
    check_pytorch_layout(&f, &opt, &["momentum_buffer"]);
    check_round_trips(&f, &model, &opt, SgdConfig::default(), &["momentum_buffer"]);
}

const ADAM_ENTRIES: &[&str] = &["step", "exp_avg", "exp_avg_sq"];

#[test]
fn adam_matches_pytorch() {
    let (f, model, opt) = run("optim_adam", AdamConfig::default().lr(0.01));
    check_pytorch_layout(&f, &opt, ADAM_ENTRIES);
    let step = opt.pytorch_state_dict()["state"][0]["step"]
        .as_tensor()
        .unwrap()
        .to_tensor()
        .unwrap();
    assert_eq!(step, Tensor::scalar(3.0f32), "step is a 0-d F32 tensor");
    check_round_trips(&f, &model, &opt, AdamConfig::default(), ADAM_ENTRIES);
}

#[test]
fn adamw_matches_pytorch() {
    let (f, model, opt) = run(
        "optim_adamw",
        AdamWConfig::default().lr(0.01).weight_decay(0.1),
    );
    check_pytorch_layout(&f, &opt, ADAM_ENTRIES);
    check_round_trips(&f, &model, &opt, AdamWConfig::default(), ADAM_ENTRIES);
}

const AMSGRAD_ENTRIES: &[&str] = &["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"];

#[test]
fn adam_amsgrad_with_l2_weight_decay_matches_pytorch() {
    let config = AdamConfig::default()
        .lr(0.01)
        .weight_decay(0.1)
        .amsgrad(true);
    let (f, model, opt) = run_ours("optim_adam_amsgrad", config);
    check_pytorch_layout(&f, &opt, AMSGRAD_ENTRIES);
    check_round_trips(&f, &model, &opt, AdamConfig::default(), AMSGRAD_ENTRIES);
}

#[test]
fn adamw_amsgrad_maximize_matches_pytorch() {
    let config = AdamWConfig::default().lr(0.01).amsgrad(true).maximize(true);
    let (f, model, opt) = run_ours("optim_adamw_amsgrad", config);
    check_pytorch_layout(&f, &opt, AMSGRAD_ENTRIES);
    check_round_trips(&f, &model, &opt, AdamWConfig::default(), AMSGRAD_ENTRIES);
}

#[test]
fn sgd_maximize_matches_pytorch() {
    let config = SgdConfig::default()
        .lr(0.1)
        .momentum(0.9)
        .weight_decay(0.01)
        .maximize(true);
    let (f, model, opt) = run_ours("optim_sgd_maximize", config);
    check_pytorch_layout(&f, &opt, &["momentum_buffer"]);
    check_round_trips(&f, &model, &opt, SgdConfig::default(), &["momentum_buffer"]);
}

#[test]
fn amsgrad_keeps_the_maximum() {
    let f = crate::common::fixtures::load("optim_adam");
    let mut model = initial(&f);
    let mut opt: Adam = Optimizer::new(&model, AdamConfig::default().amsgrad(true));
    for step in 0..3 {
        opt.step(&mut model, &grads(&f, step)).unwrap();
    }
    let state = opt.state("p0").unwrap();
    let names: Vec<&String> = state.keys().collect();
    assert_eq!(names, ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
    let (v, max) = (&state["exp_avg_sq"], &state["max_exp_avg_sq"]);
    assert!(max.iter().zip(v).all(|(m, v)| m >= v));
    let mut loaded: Adam = Optimizer::new(&model, AdamConfig::default());
    loaded
        .load_pytorch_state_dict(&opt.pytorch_state_dict())
        .unwrap();
    assert!(loaded.groups()[0].config().amsgrad);
}

#[test]
fn parameters_without_gradients_are_skipped() {
    let f = crate::common::fixtures::load("optim_sgd_nesterov");
    let mut model = initial(&f);
    let mut opt: Sgd = Optimizer::new(&model, SgdConfig::default().lr(0.1).momentum(0.9));
    let mut only_p0 = grads(&f, 0);
    only_p0.shift_remove("p1");
    opt.step(&mut model, &only_p0).unwrap();
    assert_eq!(model.p1, f.array::<ndarray::Ix1>("param1.initial"));
    assert!(opt.state("p1").is_none());
    let state = opt.pytorch_state_dict();
    assert!(
        state["state"][1].is_none(),
        "no state for a parameter never stepped"
    );
    assert!(!state["state"][0].is_none());
}

#[test]
fn bad_gradients_change_nothing() {
    let f = crate::common::fixtures::load("optim_adam");
    let mut model = initial(&f);
    let mut opt: AdamW = Optimizer::new(&model, AdamWConfig::default());
    let before = model.clone();

    let mut typo = grads(&f, 0);
    typo.insert("p2".to_owned(), Tensor::from(ndarray::array![1.0f32]));
    assert_eq!(
        opt.step(&mut model, &typo).unwrap_err().to_string(),
        "unexpected gradient \"p2\": the model has no such parameter"
    );
    let mut buffer = grads(&f, 0);
    buffer.insert(
        "seen".to_owned(),
        Tensor::from(ndarray::array![1.0f32, 1.0]),
    );
    assert!(matches!(
        opt.step(&mut model, &buffer).unwrap_err(),
        OptimError::UnexpectedGradient { key } if key == "seen"
    ));

    let mut wrong_shape = grads(&f, 0);
    wrong_shape.insert(
        "p1".to_owned(),
        Tensor::from(ndarray::array![1.0f32, 2.0, 3.0]),
    );
    assert_eq!(
        opt.step(&mut model, &wrong_shape).unwrap_err().to_string(),
        "size mismatch for p1: the gradient has shape [3], the parameter has shape [2]"
    );
    let mut ints = grads(&f, 0);
    ints.insert("p1".to_owned(), Tensor::from(ndarray::array![1i64, 2]));
    assert!(matches!(
        opt.step(&mut model, &ints).unwrap_err(),
        OptimError::DType {
            dtype: ckpt::DType::I64,
            ..
        }
    ));
    assert_eq!(model, before, "the model is untouched");
    assert!(opt.state("p0").is_none(), "and so is the state");
}

#[test]
fn bad_state_dicts_change_nothing() {
    let f = crate::common::fixtures::load("optim_adam");
    let (_, model, opt) = run("optim_adam", AdamConfig::default().lr(0.01));
    let mut fresh: Adam = Optimizer::new(&model, AdamConfig::default());

    let mut wrong = pytorch_state_from_fixture(&f, ADAM_ENTRIES);
    if let Value::Map(groups) = &mut wrong {
        groups.insert(
            "param_groups".into(),
            vec![ckpt::dict! { "params" => vec![0i64] }].into(),
        );
    }
    let err = fresh.load_pytorch_state_dict(&wrong).unwrap_err();
    assert!(
        err.to_string()
            .contains("doesn't match the size of optimizer's group"),
        "{err}"
    );

    let mut bad_shape = opt.state_dict().to_owned_value();
    if let Value::Map(top) = &mut bad_shape {
        let state = top.get_mut(&ckpt::value::Key::from("state")).unwrap();
        if let Value::Map(state) = state {
            let p1 = state.get_mut(&ckpt::value::Key::from("p1")).unwrap();
            p1.insert("exp_avg", Tensor::from(ndarray::array![1.0f32]));
        }
    }
    assert_eq!(
        fresh.load_state_dict(&bad_shape).unwrap_err().to_string(),
        "size mismatch for p1: exp_avg has shape [1], the parameter has shape [2]"
    );
    let mut not_a_tensor = opt.state_dict().to_owned_value();
    if let Value::Map(top) = &mut not_a_tensor
        && let Some(Value::Map(state)) = top.get_mut(&ckpt::value::Key::from("state"))
    {
        state
            .get_mut(&ckpt::value::Key::from("p0"))
            .unwrap()
            .insert("exp_avg_sq", "zeros");
    }
    assert_eq!(
        fresh
            .load_state_dict(&not_a_tensor)
            .unwrap_err()
            .to_string(),
        "invalid optimizer state dict at state.p0.exp_avg_sq: expected a tensor, got string"
    );
    assert!(fresh.state("p0").is_none(), "nothing was loaded");
    assert_eq!(fresh.groups()[0].config().lr, 1e-3);
}

/// State entries the algorithm does not keep (another version's, another library's) are kept
/// and saved back as they were, after the algorithm's own.
#[test]
fn unknown_state_entries_pass_through() {
    let (_, model, opt) = run("optim_adam", AdamConfig::default().lr(0.01));
    let mut saved = opt.pytorch_state_dict().to_owned_value();
    if let Value::Map(top) = &mut saved
        && let Some(Value::Map(state)) = top.get_mut(&ckpt::value::Key::from("state"))
    {
        let p0 = state.get_mut(&ckpt::value::Key::Int(0)).unwrap();
        p0.insert("momentum_buffer", Tensor::scalar(1.0f32));
        p0.insert("note", "kept");
    }
    let mut loaded: Adam = Optimizer::new(&model, AdamConfig::default());
    loaded.load_pytorch_state_dict(&saved).unwrap();
    let names: Vec<&String> = loaded.state("p0").unwrap().keys().collect();
    assert_eq!(names, ["step", "exp_avg", "exp_avg_sq"], "what Adam uses");
    assert_eq!(
        loaded.pytorch_state_dict(),
        saved,
        "and everything saves back"
    );
    let mut m = model.clone();
    loaded
        .step(
            &mut m,
            &grads(&crate::common::fixtures::load("optim_adam"), 0),
        )
        .unwrap();
    let again = loaded.pytorch_state_dict();
    assert_eq!(again["state"][0]["note"].as_str(), Some("kept"));
    assert_eq!(
        again["state"][0]
            .as_map()
            .unwrap()
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["step", "exp_avg", "exp_avg_sq", "momentum_buffer", "note"]
    );
}
