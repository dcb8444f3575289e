//! Saving and loading files: PyTorch's recipes 1, 3 and 4, byte-exact round trips, tied
//! tensors, `map_location`, async saves and streaming loads.

use crate::common::models::{Linear, Net, bytes_of};
use crate::common::surgery::Surgery;
use ckpt::LoadFrom;
use ckpt::StateDictOptions;
use ckpt::device::MapLocation;
use ckpt::state::TensorSource;
use ckpt::{DType, Device, LoadOptions, StateDict, Tensor, Value, dict};
use half::{bf16, f16};
use ndarray::{Array2, ArrayD, IxDyn, array, s};

fn input() -> Array2<f32> {
    array![[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, -0.5, 0.0]]
}

#[test]
fn recipe_1_state_dict_for_inference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.ckpt");
    let trained = Net::new(1.0);
    ckpt::save(trained.state_dict(), &path).unwrap();

    let mut model = Net::new(7.0);
    let _ = model
        .load_state_dict(&ckpt::load(&path).unwrap(), true)
        .unwrap();
    model.eval();
    assert!(!model.is_training());
    assert_eq!(bytes_of(&model), bytes_of(&trained));
    assert_eq!(model.forward(&input()), trained.forward(&input()));
}

#[test]
fn recipe_3_checkpoint_with_epoch_loss_and_optimizer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.ckpt");
    let model = Net::new(2.0);
    let exp_avg = Tensor::from(Array2::<f32>::from_elem((8, 4), 0.25));
    let optimizer = dict! {
        "state" => Value::from_iter([(0i64, dict! { "step" => Tensor::scalar(3.0f32), "exp_avg" => &exp_avg })]),
        "param_groups" => vec![dict! { "lr" => 1e-3, "betas" => vec![0.9, 0.999], "params" => vec![0, 1, 2, 3] }],
    };
    ckpt::save(
        dict! {
            "epoch" => 7,
            "model_state_dict" => model.state_dict(),
            "optimizer_state_dict" => &optimizer,
            "loss" => 0.125,
        },
        &path,
    )
    .unwrap();

    let checkpoint = ckpt::load(&path).unwrap();
    assert_eq!(checkpoint.get::<u32>("epoch").unwrap(), 7);
    assert_eq!(checkpoint.get::<f64>("loss").unwrap(), 0.125);
    let mut resumed = Net::new(0.0);
    let _ = resumed
        .load_state_dict(&checkpoint["model_state_dict"], true)
        .unwrap();
    assert_eq!(bytes_of(&resumed), bytes_of(&model));
    let state = &checkpoint["optimizer_state_dict"];
    assert_eq!(state, &optimizer, "the optimizer tree comes back equal");
    assert_eq!(
        state["state"][0]["exp_avg"].as_tensor().unwrap(),
        exp_avg.view()
    );
    assert_eq!(state["param_groups"][0]["betas"][1].as_f64(), Some(0.999));
    assert_eq!(
        checkpoint.value().keys_in_order(),
        ["epoch", "model_state_dict", "optimizer_state_dict", "loss"]
    );
}

#[test]
fn a_mistyped_checkpoint_key_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    let model = Net::new(1.0);
    ckpt::save(dict! { "model_state_dict" => model.state_dict() }, &path).unwrap();
    let checkpoint = ckpt::load(&path).unwrap();
    let err = Net::new(0.0)
        .load_state_dict(&checkpoint["model_state_dic"], true)
        .unwrap_err();
    assert_eq!(err.missing_keys().len(), 6);
    assert!(
        err.to_string().contains(&format!(
            "{} has no entry of that name; its entries are \"model_state_dict\".",
            path.display()
        )),
        "{err}"
    );
    // Not strict, the load is refused all the same, rather than loading nothing.
    let err = Net::new(0.0)
        .load_state_dict(&checkpoint["model_state_dic"], false)
        .unwrap_err();
    assert_eq!(
        err.problems(),
        [ckpt::loading::LoadProblem::Source {
            defect: format!(
                "{} has no entry of that name; its entries are \"model_state_dict\"",
                path.display()
            )
        }]
    );
}

trait KeysInOrder {
    fn keys_in_order(&self) -> Vec<String>;
}

impl KeysInOrder for Value<'_> {
    fn keys_in_order(&self) -> Vec<String> {
        self.as_map()
            .unwrap()
            .keys()
            .map(ToString::to_string)
            .collect()
    }
}

#[test]
fn recipe_4_several_models_and_optimizers_in_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gan.ckpt");
    let (generator, discriminator) = (Net::new(1.0), Linear::new(1, 3, 4.0));
    let momentum = Tensor::from(array![0.5f32, 0.25, 0.125]);
    ckpt::save(
        dict! {
            "modelA_state_dict" => generator.state_dict(),
            "modelB_state_dict" => discriminator.state_dict(),
            "optimizerA_state_dict" => dict! { "state" => dict! {}, "param_groups" => vec![dict! { "lr" => 2e-4 }] },
            "optimizerB_state_dict" => dict! { "state" => Value::from_iter([(0i64, dict! { "momentum_buffer" => &momentum })]) },
        },
        &path,
    )
    .unwrap();

    let checkpoint = ckpt::load(&path).unwrap();
    let mut g = Net::new(9.0);
    let mut d = Linear::new(1, 3, 9.0);
    let _ = g
        .load_state_dict(&checkpoint["modelA_state_dict"], true)
        .unwrap();
    let _ = d
        .load_state_dict(&checkpoint["modelB_state_dict"], true)
        .unwrap();
    g.eval();
    assert_eq!(g, {
        let mut expected = generator.clone();
        expected.eval();
        expected
    });
    assert_eq!(d, discriminator);
    assert_eq!(
        checkpoint["optimizerB_state_dict"]["state"][0]["momentum_buffer"]
            .as_tensor()
            .unwrap(),
        momentum.view()
    );
    assert_eq!(
        checkpoint["optimizerA_state_dict"]["param_groups"][0]["lr"].as_f64(),
        Some(2e-4)
    );
}

#[test]
fn every_dtype_and_odd_shape_round_trips_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dtypes.ckpt");
    let tensors: Vec<(&str, Tensor)> = vec![
        (
            "f64",
            Tensor::from(array![1.5f64, -0.0, f64::MAX, f64::NAN]),
        ),
        (
            "f32",
            Tensor::from(array![[1.0f32, f32::INFINITY], [f32::MIN_POSITIVE, -3.5]]),
        ),
        ("f16", Tensor::from(array![f16::from_f32(0.1), f16::MAX])),
        (
            "bf16",
            Tensor::from(array![bf16::from_f32(-2.5), bf16::EPSILON]),
        ),
        ("i64", Tensor::from(array![i64::MIN, i64::MAX])),
        ("i32", Tensor::from(array![i32::MIN, 7])),
        ("i16", Tensor::from(array![i16::MAX, -1])),
        ("i8", Tensor::from(array![-128i8, 127])),
        ("u8", Tensor::from(array![0u8, 255, 17])),
        ("bool", Tensor::from(array![true, false, true])),
        ("scalar", Tensor::scalar(42i64)),
        ("empty", Tensor::zeros(DType::F32, &[0, 4]).unwrap()),
        (
            "rank5",
            Tensor::from(ArrayD::from_shape_fn(IxDyn(&[2, 1, 3, 1, 2]), |i| {
                i[2] as u8
            })),
        ),
    ];
    let value: Value<'_> = tensors.iter().map(|(k, t)| (*k, t)).collect();
    ckpt::save(&value, &path).unwrap();
    let loaded = ckpt::load(&path).unwrap();
    for (key, tensor) in &tensors {
        let back = loaded[*key].as_tensor().unwrap();
        assert_eq!(back.dtype(), tensor.dtype(), "{key}");
        assert_eq!(back.shape(), tensor.shape(), "{key}");
        assert_eq!(back.to_le_bytes(), tensor.to_le_bytes(), "{key}");
    }
    assert!(loaded["f32"].as_tensor().is_some());
    // Saving what was loaded writes the same bytes again.
    let again = dir.path().join("again.ckpt");
    ckpt::save(&loaded, &again).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn loaded_tensors_read_the_file_in_place_and_copy_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.ckpt");
    ckpt::save(
        dict! { "w" => Tensor::from(array![1.0f32, 2.0, 3.0]) },
        &path,
    )
    .unwrap();
    let checkpoint = ckpt::load(&path).unwrap();
    let Value::Tensor(t) = &checkpoint["w"] else {
        panic!()
    };
    let mut owned = t.clone().into_owned().unwrap();
    assert!(owned.is_mapped());
    owned.array_mut::<f32>().unwrap()[[0]] = 9.0;
    assert!(!owned.is_mapped());
    assert_eq!(
        checkpoint["w"].as_tensor().unwrap().to_f64_vec().unwrap(),
        [1.0, 2.0, 3.0]
    );
}

#[test]
fn non_contiguous_tensors_are_saved_in_logical_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("views.ckpt");
    let base = array![[1i32, 2, 3], [4, 5, 6]];
    let transposed = Tensor::from(base.t().to_owned());
    let value = dict! {
        "t" => &transposed,
        "strided" => ckpt::tensor::TensorView::from(base.slice(s![.., ..;2])),
    };
    ckpt::save(&value, &path).unwrap();
    let loaded = ckpt::load(&path).unwrap();
    let t = loaded["t"].as_tensor().unwrap();
    assert_eq!(
        t.to_array::<i32, ndarray::Ix2>().unwrap(),
        array![[1, 4], [2, 5], [3, 6]]
    );
    let strided = loaded["strided"].as_tensor().unwrap();
    assert_eq!(
        strided.to_array::<i32, ndarray::Ix2>().unwrap(),
        array![[1, 3], [4, 6]]
    );
}

#[test]
fn tied_tensors_are_stored_once_and_come_back_shared() {
    let dir = tempfile::tempdir().unwrap();
    let (tied, untied) = (dir.path().join("tied.ckpt"), dir.path().join("untied.ckpt"));
    let big = Tensor::from(Array2::<f32>::from_elem((256, 256), 0.5));
    let embedding = big.clone();
    ckpt::save(
        dict! { "wte.weight" => &big, "lm_head.weight" => &embedding },
        &tied,
    )
    .unwrap();
    let copy = big
        .to_dtype(DType::F64)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    ckpt::save(
        dict! { "wte.weight" => &big, "lm_head.weight" => &copy },
        &untied,
    )
    .unwrap();
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    let data = (256 * 256 * 4) as u64;
    assert!(
        size(&untied) - size(&tied) >= data,
        "one copy of the data is saved, not two"
    );

    let loaded = ckpt::load(&tied).unwrap();
    let a = loaded["wte.weight"].as_tensor().unwrap();
    let b = loaded["lm_head.weight"].as_tensor().unwrap();
    assert!(a.shares_storage(&b));
    let loaded = ckpt::load(&untied).unwrap();
    assert!(
        !loaded["wte.weight"]
            .as_tensor()
            .unwrap()
            .shares_storage(&loaded["lm_head.weight"].as_tensor().unwrap())
    );
}

#[test]
fn saving_replaces_the_file_and_serde_structs_round_trip() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Config {
        hidden: usize,
        layers: Vec<String>,
        dropout: Option<f64>,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    ckpt::save(dict! { "epoch" => 1 }, &path).unwrap();
    let config = Config {
        hidden: 64,
        layers: vec!["enc".into(), "dec".into()],
        dropout: Some(0.1),
    };
    ckpt::save(
        dict! { "epoch" => 2, "config" => Value::from_serialize(&config).unwrap() },
        &path,
    )
    .unwrap();
    let loaded = ckpt::load(&path).unwrap();
    assert_eq!(loaded.get::<u8>("epoch").unwrap(), 2);
    assert_eq!(loaded.get::<Config>("config").unwrap(), config);
    let err = loaded.get::<String>("epoch").unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: epoch: ", path.display())),
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files are left behind");
}

#[test]
fn async_save_snapshots_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("async.ckpt");
    let mut model = Net::new(3.0);
    let before = bytes_of(&model);
    let handle = ckpt::save_async(model.state_dict(), &path);
    // The model changes while the save is still running.
    model.fc1.weight.fill(0.0);
    model.running_mean.array_mut::<f32>().unwrap().fill(-1.0);
    handle.wait().unwrap();
    let mut restored = Net::new(0.0);
    let _ = restored
        .load_state_dict(&ckpt::load(&path).unwrap(), true)
        .unwrap();
    assert_eq!(bytes_of(&restored), before);

    let failing = ckpt::save_async(model.state_dict(), dir.path().join("missing/dir/x.ckpt"));
    let err = failing.wait().unwrap_err();
    assert!(err.to_string().contains("missing/dir"), "{err}");
}

#[test]
fn streaming_load_into_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.ckpt");
    let trained = Net::new(5.0);
    ckpt::save(trained.state_dict(), &path).unwrap();
    let mut model = Net::new(0.0);
    let report = model.load_from(&path).unwrap();
    assert_eq!(report.loaded_keys.len(), 6);
    assert_eq!(bytes_of(&model), bytes_of(&trained));

    // A mismatch is refused whole and names the file.
    let mut other = Linear::new(2, 2, 0.0);
    let before = bytes_of(&other);
    let err = other.load_from(&path).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}: Error(s) in loading state_dict for Linear:",
            path.display()
        )),
        "{err}"
    );
    assert_eq!(bytes_of(&other), before);

    let report = other
        .load_from_with(
            &path,
            &LoadOptions::new(),
            &StateDictOptions::new().strict(false),
        )
        .unwrap();
    assert_eq!(report.missing_keys, ["weight", "bias"]);
    assert_eq!(report.unexpected_keys.len(), 6);
    assert_eq!(bytes_of(&other), before);
}

#[test]
fn map_location_moves_cuda_tensors_or_explains_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu.ckpt");
    let model = Linear::new(2, 2, 1.0);
    ckpt::save(model.state_dict(), &path).unwrap();
    // Mark the tensors as saved from cuda:1, as a GPU run would have.
    let mut file = Surgery::open(&path);
    for i in 0..2 {
        *file.record(i, "device") = ciborium::Value::Text("cuda:1".into());
    }
    file.write(&path);
    assert_eq!(
        ckpt::inspect(&path).unwrap().tensors[0].device,
        Device::Cuda(1)
    );

    // Without a map_location, the error says to pass one; why cuda:1 cannot be used depends
    // on the build and the machine (no `cuda` feature, no driver, a single GPU).
    let err = ckpt::load(&path).unwrap_err().to_string();
    let start = format!(
        "{}: tensor \"weight\" was saved on cuda:1 and would load onto cuda:1, but cuda:1 \
         cannot be used: ",
        path.display()
    );
    assert!(err.starts_with(&start), "{err}");
    assert!(
        err.ends_with("; pass map_location, e.g. LoadOptions::new().map_location(Device::Cpu)"),
        "{err}"
    );
    // With one that chose a GPU, it says what was asked instead; on a GPU machine it loads.
    let options = LoadOptions::new().map_location("cuda:1->cuda:0".parse::<MapLocation>().unwrap());
    match ckpt::load_with(&path, &options) {
        Err(err) => {
            let err = err.to_string();
            assert!(
                err.contains("would load onto cuda:0, as map_location asked, but cuda:0 cannot be used: CUDA is not available ("),
                "{err}"
            );
            assert!(!err.contains("pass map_location"), "{err}");
        }
        Ok(checkpoint) => {
            assert_eq!(
                checkpoint.get_tensor("weight").unwrap().device(),
                Device::Cuda(0)
            );
        }
    }

    for location in [
        MapLocation::from(Device::Cpu),
        MapLocation::from([(Device::Cuda(1), Device::Cpu)]),
        MapLocation::with_fn(|_, _| Device::Cpu),
    ] {
        let checkpoint =
            ckpt::load_with(&path, &LoadOptions::new().map_location(location)).unwrap();
        let mut restored = Linear::new(2, 2, 0.0);
        let _ = restored.load_state_dict(&checkpoint, true).unwrap();
        assert_eq!(restored, model);
        assert!(checkpoint.get_tensor("weight").unwrap().device() == Device::Cpu);
    }
}

#[test]
fn inspect_reads_only_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.ckpt");
    let model = Net::new(1.0);
    ckpt::save(dict! { "epoch" => 3, "model" => model.state_dict() }, &path).unwrap();
    let infos = ckpt::inspect(&path).unwrap().tensors;
    let keys: Vec<&str> = infos.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "model.fc1.weight",
            "model.fc1.bias",
            "model.running_mean",
            "model.num_batches_tracked",
            "model.fc2.weight",
            "model.fc2.bias"
        ]
    );
    assert_eq!(infos[3].dtype, DType::I64);
    assert_eq!(infos[0].shape, [8, 4]);
}
