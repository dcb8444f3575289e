//! Files written by real PyTorch, loaded through `ckpt::load` into Rust models; files written
//! by ckpt in PyTorch's format, read back.

use ckpt::nn::{BatchNorm1d, Linear, Rng};
use ckpt::optim::{Adam, AdamConfig};
use ckpt::{Error, LoadOptions, StateDict, Tensor, Value, dict};

use ckpt::StateDictOptions;

const FIXTURES: &str = "tests/fixtures/pytorch";

/// `nn.Sequential(Linear(8, 16), ReLU(), Linear(16, 4))`.
#[derive(StateDict)]
struct Mlp {
    #[state(rename = "0")]
    fc1: Linear,
    #[state(rename = "2")]
    fc2: Linear,
}

fn mlp() -> Mlp {
    let rng = &mut Rng::seed(1);
    Mlp {
        fc1: Linear::new(8, 16, rng),
        fc2: Linear::new(16, 4, rng),
    }
}

#[test]
fn state_dicts_from_pytorch_load_strictly_zip_and_legacy_alike() {
    let zip = ckpt::load(format!("{FIXTURES}/mlp_state_dict.pt")).unwrap();
    assert_eq!(zip.format().name(), "pytorch");
    let legacy = ckpt::load(format!("{FIXTURES}/mlp_legacy_format.pt")).unwrap();
    for file in [&zip, &legacy] {
        let mut model = mlp();
        let _ = model.load_state_dict(file, true).unwrap();
        for (key, tensor) in model.state_dict().iter() {
            assert_eq!(
                tensor.to_le_bytes(),
                file[key].as_tensor().unwrap().to_le_bytes(),
                "{key}"
            );
        }
    }
}

#[test]
fn a_dataparallel_file_from_pytorch_loads_into_a_plain_model() {
    /// `nn.Sequential(Linear(8, 4), BatchNorm1d(4))`, saved from `nn.DataParallel`.
    #[derive(StateDict)]
    struct Small {
        #[state(rename = "0")]
        fc: Linear,
        #[state(rename = "1")]
        bn: BatchNorm1d,
    }
    let file = ckpt::load(format!("{FIXTURES}/dataparallel_state_dict.pt")).unwrap();
    let mut model = Small {
        fc: Linear::new(8, 4, &mut Rng::seed(0)),
        bn: BatchNorm1d::new(4),
    };
    let err = model.load_state_dict(&file, true).unwrap_err();
    assert!(err.hints()[0].contains("module."), "{err}");
    let report = model
        .load_state_dict_with(&file, &StateDictOptions::new().auto_prefix(true))
        .unwrap();
    assert_eq!(report.loaded_keys.len(), 7);
    let mut wrapped = ckpt::nn::DataParallel::new(Small {
        fc: Linear::new(8, 4, &mut Rng::seed(5)),
        bn: BatchNorm1d::new(4),
    });
    let _ = wrapped.load_state_dict(&file, true).unwrap();
    assert_eq!(
        crate::common::models::bytes_of(&wrapped.module),
        crate::common::models::bytes_of(&model)
    );
}

#[test]
fn an_adam_checkpoint_from_pytorch_resumes_in_rust() {
    let checkpoint = ckpt::load(format!("{FIXTURES}/checkpoint_adam.pt")).unwrap();
    assert_eq!(checkpoint.get::<u32>("epoch").unwrap(), 7);
    assert_eq!(checkpoint.get::<f64>("loss").unwrap(), 0.125);
    let mut model = mlp();
    let _ = model
        .load_state_dict(&checkpoint["model_state_dict"], true)
        .unwrap();
    let mut optimizer = Adam::new(&model, AdamConfig::default());
    optimizer
        .load_pytorch_state_dict(&checkpoint["optimizer_state_dict"])
        .unwrap();
    // The state PyTorch saved is the state the optimizer now has, and it can save it back.
    let state = optimizer.pytorch_state_dict();
    let saved = &checkpoint["optimizer_state_dict"];
    for index in 0..4 {
        for name in ["step", "exp_avg", "exp_avg_sq"] {
            assert_eq!(
                state["state"][index][name].as_tensor().unwrap(),
                saved["state"][index][name].as_tensor().unwrap(),
                "state.{index}.{name}"
            );
        }
    }
    assert_eq!(
        state["param_groups"][0]["lr"],
        saved["param_groups"][0]["lr"]
    );
    // Training goes on: a step with the gradients all zero still moves the weights (momentum).
    let before = crate::common::models::bytes_of(&model);
    let grads: Value<'_> = model
        .named_parameters()
        .iter()
        .map(|(k, t)| (k.to_owned(), Tensor::zeros(t.dtype(), t.shape()).unwrap()))
        .collect();
    optimizer.step(&mut model, &grads).unwrap();
    assert_ne!(crate::common::models::bytes_of(&model), before);
}

#[test]
fn ckpt_writes_pt_files_it_and_pytorch_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.pt");
    let model = mlp();
    ckpt::save(
        dict! { "epoch" => 2, "model_state_dict" => model.state_dict() },
        &path,
    )
    .unwrap();
    let file = ckpt::load(&path).unwrap();
    assert_eq!(file.format().name(), "pytorch");
    let mut back = Mlp {
        fc1: Linear::new(8, 16, &mut Rng::seed(9)),
        fc2: Linear::new(16, 4, &mut Rng::seed(9)),
    };
    let _ = back
        .load_state_dict(&file["model_state_dict"], true)
        .unwrap();
    assert_eq!(
        crate::common::models::bytes_of(&back),
        crate::common::models::bytes_of(&model)
    );
    assert_eq!(file.get::<u8>("epoch").unwrap(), 2);
}

#[test]
fn a_pickled_whole_model_is_refused_with_guidance() {
    let err = ckpt::load(format!("{FIXTURES}/hostile/whole_model_linear.pt")).unwrap_err();
    assert!(matches!(err, Error::PyTorch { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{FIXTURES}/hostile/whole_model_linear.pt: ")),
        "{text}"
    );
    assert!(text.contains("torch.nn.modules.linear.Linear"), "{text}");
    assert!(text.contains("model.state_dict()"), "{text}");
}

#[test]
fn crc_damage_is_caught_unless_checks_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flipped.pt");
    let mut bytes = std::fs::read(format!("{FIXTURES}/mlp_state_dict.pt")).unwrap();
    // The first storage record's data sits after its local header; flip a byte well inside.
    let at = bytes.windows(4).position(|w| w == b"data").unwrap() + 200;
    bytes[at] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let err = ckpt::load(&path).unwrap_err();
    assert!(err.to_string().contains("CRC-32 mismatch"), "{err}");
    ckpt::load_with(&path, &LoadOptions::new().verify_checksums(false)).unwrap();
}

#[test]
fn pt_tensors_read_the_file_in_place_where_they_can() {
    let file = ckpt::load(format!("{FIXTURES}/mlp_state_dict.pt")).unwrap();
    let Value::Tensor(weight) = &file["0.weight"] else {
        panic!("no tensor")
    };
    // PyTorch stores each storage uncompressed and 64-byte aligned: no copy is needed.
    assert!(weight.clone().into_owned().unwrap().is_mapped());
    // Views that are not contiguous are cut out into memory of their own.
    let views = ckpt::load(format!("{FIXTURES}/views.pt")).unwrap();
    let mapped: Vec<bool> = views
        .tensors()
        .iter()
        .map(|(key, _)| match &views[key.as_str()] {
            Value::Tensor(t) => t.clone().into_owned().unwrap().is_mapped(),
            _ => false,
        })
        .collect();
    assert!(
        mapped.contains(&true) && mapped.contains(&false),
        "{mapped:?}"
    );
}
