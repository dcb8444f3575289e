//! `candle_core::Tensor` and `candle_core::Var` fields: views, every format, dtypes, in-place
//! loads, transactions, and what ckpt cannot represent.

use ckpt::candle_core::{DType, Device, IndexOp, Tensor, Var};
use ckpt::{LoadFrom, SaveOptions, StateDict, StateDictOptions};

use crate::common::candle::{state_bytes, values};

#[derive(StateDict)]
struct Fields {
    weight: Var,
    table: Tensor,
    #[state(buffer)]
    steps: Tensor,
}

fn fields(fill: f64) -> Fields {
    let cpu = &Device::Cpu;
    let weight = (Tensor::arange(0f32, 6., cpu)
        .unwrap()
        .reshape((2, 3))
        .unwrap()
        + fill)
        .unwrap();
    Fields {
        weight: Var::from_tensor(&weight).unwrap(),
        table: (Tensor::ones((3, 2), DType::F64, cpu).unwrap() * fill).unwrap(),
        steps: Tensor::new(&[fill as i64], cpu).unwrap(),
    }
}

#[test]
fn a_state_dict_has_the_fields_keys_dtypes_and_bytes() {
    let model = fields(1.0);
    let state = model.state_dict();
    assert_eq!(
        state.keys().collect::<Vec<_>>(),
        ["weight", "table", "steps"]
    );
    assert_eq!(model.named_buffers().keys().collect::<Vec<_>>(), ["steps"]);
    let weight = &state["weight"];
    assert_eq!(
        (weight.dtype(), weight.shape()),
        (ckpt::DType::F32, &[2, 3][..])
    );
    let expected: Vec<u8> = [1f32, 2., 3., 4., 5., 6.]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(&*weight.to_le_bytes().unwrap(), &expected[..]);
    assert_eq!(state["table"].dtype(), ckpt::DType::F64);
    assert_eq!(state["steps"].to_f64_vec().unwrap(), [1.0]);
    // Typed reads work on the view, which keeps its host copy.
    assert_eq!(weight.array::<f32>().unwrap()[[1, 2]], 6.0);
    assert_eq!(format!("{:?}", state["steps"]), "I64[1] (candle) on cpu");
}

#[test]
fn a_state_dict_holds_no_lock_and_reads_the_tensors_as_they_are() {
    // A state dict that held candle's lock would hang the `set` below, on this thread.
    let model = fields(1.0);
    let state = model.state_dict();
    let optimizer_view = model.weight.clone();
    optimizer_view
        .set(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(state["weight"].to_f64_vec().unwrap(), [0.0; 6]);
}

#[test]
fn every_format_round_trips_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let trained = fields(2.5);
    for name in [
        "m.ckpt",
        "m.pt",
        "m.safetensors",
        "m.safetensors.index.json",
    ] {
        let path = dir.path().join(name);
        let options = SaveOptions::new().max_shard_bytes(32); // the index: several shards
        ckpt::save_with(trained.state_dict(), &path, &options).unwrap();
        let mut fresh = fields(0.0);
        let report = fresh.load_from(&path).unwrap();
        assert_eq!(report.loaded_keys, ["weight", "table", "steps"], "{name}");
        assert_eq!(state_bytes(&fresh), state_bytes(&trained), "{name}");
    }
    let shards = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(shards > 5, "{shards} files: the index has several shards");
}

#[test]
fn every_dtype_ckpt_and_candle_share_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dtypes.pt");
    let base = Tensor::new(&[[-3f64, 0.5], [2.0, 100.0]], &Device::Cpu).unwrap();
    let dtypes = [
        DType::U8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
    ];
    let saved: Vec<Tensor> = dtypes
        .iter()
        .map(|&d| base.abs().unwrap().to_dtype(d).unwrap())
        .collect();
    ckpt::save(saved.state_dict(), &path).unwrap();
    let mut loaded: Vec<Tensor> = dtypes
        .iter()
        .map(|&d| Tensor::zeros((2, 2), d, &Device::Cpu).unwrap())
        .collect();
    let _ = loaded.load_from(&path).unwrap();
    for ((a, b), dtype) in saved.iter().zip(&loaded).zip(dtypes) {
        assert_eq!(b.dtype(), dtype);
        assert_eq!(values(a), values(b), "{dtype:?}");
    }
    assert_eq!(state_bytes(&saved), state_bytes(&loaded));
}

#[test]
fn a_var_is_written_in_place_for_whoever_holds_it() {
    let mut model = fields(0.0);
    let held_by_an_optimizer = model.weight.clone();
    let _ = model
        .load_state_dict(&fields(7.0).state_dict(), true)
        .unwrap();
    assert_eq!(values(held_by_an_optimizer.as_tensor())[0], 7.0);
    assert!(model.weight.as_tensor().is_variable());
}

#[test]
fn a_contiguous_tensor_is_written_in_place_and_ties_stay_tied() {
    #[derive(StateDict)]
    struct Tied {
        embed: Tensor,
        head: Tensor,
    }
    let shared = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
    let mut model = Tied {
        embed: shared.clone(),
        head: shared.clone(),
    };
    let source = Tied {
        embed: Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap(),
        head: Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap(),
    };
    let _ = model.load_state_dict(&source.state_dict(), true).unwrap();
    assert_eq!(values(&shared), [1.0; 4], "written into the shared memory");
    let state = model.state_dict();
    assert!(state["embed"].shares_storage(&state["head"]));

    // Tied tensors are stored once, and load back tied.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tied.ckpt");
    ckpt::save(model.state_dict(), &path).unwrap();
    let checkpoint = ckpt::load(&path).unwrap();
    let embed = checkpoint["embed"].as_tensor().unwrap();
    assert!(embed.shares_storage(&checkpoint["head"].as_tensor().unwrap()));
}

#[test]
fn a_strided_tensor_saves_in_c_order_and_is_replaced_on_load() {
    let cpu = &Device::Cpu;
    let base = Tensor::arange(0f32, 6., cpu)
        .unwrap()
        .reshape((2, 3))
        .unwrap();
    let transposed = base.t().unwrap(); // [[0, 3], [1, 4], [2, 5]], not contiguous
    assert!(!transposed.is_contiguous());
    let mut model = vec![transposed.clone(), base.i(1).unwrap()]; // and a row: offset 3
    let state = model.state_dict();
    assert_eq!(state["0"].to_f64_vec().unwrap(), [0., 3., 1., 4., 2., 5.]);
    assert_eq!(state["1"].to_f64_vec().unwrap(), [3., 4., 5.]);
    drop(state);

    let ones = vec![
        Tensor::ones((3, 2), DType::F32, cpu).unwrap(),
        Tensor::ones(3, DType::F32, cpu).unwrap(),
    ];
    let _ = model.load_state_dict(&ones.state_dict(), true).unwrap();
    assert_eq!(values(&model[0]), [1.0; 6]);
    // The strided tensor was replaced; the row, contiguous, was written in place.
    assert_eq!(values(&base), [0., 1., 2., 1., 1., 1.]);
}

#[test]
fn loads_cast_as_ckpt_casts_and_exact_refuses() {
    let mut model = fields(0.0); // weight F32, table F64, steps I64
    let mut state = indexmap::IndexMap::new();
    state.insert(
        "weight".to_owned(),
        ckpt::Tensor::from(ndarray::Array2::<f64>::from_elem((2, 3), 0.25)),
    );
    state.insert(
        "table".to_owned(),
        ckpt::Tensor::from(ndarray::Array2::<half::f16>::from_elem(
            (3, 2),
            half::f16::from_f32(1.5),
        )),
    );
    state.insert(
        "steps".to_owned(),
        ckpt::Tensor::from(ndarray::array![9i32]),
    );
    let exact = StateDictOptions::new().dtype_policy(ckpt::DTypePolicy::Exact);
    let err = model.load_state_dict_with(&state, &exact).unwrap_err();
    assert_eq!(err.problems().len(), 3, "{err}");
    let report = model.load_state_dict(&state, true).unwrap();
    assert_eq!(report.cast_keys, ["weight", "table", "steps"]);
    assert_eq!(model.weight.dtype(), DType::F32);
    assert_eq!(values(model.weight.as_tensor()), [0.25; 6]);
    assert_eq!(values(&model.table), [1.5; 6]);
    assert_eq!(model.steps.dtype(), DType::I64);
    assert_eq!(model.steps.to_vec1::<i64>().unwrap(), [9]);
}

#[test]
fn a_failing_load_changes_no_tensor() {
    let mut model = fields(1.0);
    let before = state_bytes(&model);
    let held = model.weight.clone();
    let source = fields(5.0);
    // A shape mismatch on the second tensor: the first, which checks fine, is not written.
    let mut wrong: indexmap::IndexMap<String, ckpt::Tensor> =
        source.state_dict().to_owned_tensors().unwrap();
    wrong.insert(
        "table".to_owned(),
        ckpt::Tensor::zeros(ckpt::DType::F64, &[2, 2]).unwrap(),
    );
    let err = model.load_state_dict(&wrong, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Error(s) in loading state_dict for Fields:\n\tsize mismatch for table: copying a param \
         with shape [2, 2] from checkpoint, the shape in current model is [3, 2]."
    );
    assert_eq!(state_bytes(&model), before);
    assert_eq!(values(held.as_tensor())[0], 1.0);
}

#[test]
fn tensors_ckpt_cannot_represent_are_named_on_save_and_load() {
    #[derive(StateDict)]
    struct Tokens {
        ids: Tensor,
        scale: Tensor,
    }
    let cpu = &Device::Cpu;
    let model = Tokens {
        ids: Tensor::new(&[1u32, 2, 3], cpu).unwrap(),
        scale: Tensor::ones(1, DType::F32, cpu).unwrap(),
    };
    let state = model.state_dict();
    assert_eq!(state.keys().collect::<Vec<_>>(), ["scale"]);
    assert_eq!(state.unsupported()[0].0, "ids");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.safetensors");
    let err = ckpt::save(model.state_dict(), &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the tensor \"ids\" cannot be saved or loaded: candle's U32 tensors have no ckpt dtype; convert it with `to_dtype(DType::I64)`"),
        "{err}"
    );
    assert!(!path.exists());

    // Loading into it is refused whole, naming the tensor; the file's "ids" is not unexpected.
    let source = vec![Tensor::new(&[1i64, 2, 3], cpu).unwrap()];
    let mut state = source.state_dict().to_owned_tensors().unwrap();
    let ids = state.shift_remove("0").unwrap();
    state.insert("ids".to_owned(), ids);
    state.insert(
        "scale".to_owned(),
        ckpt::Tensor::from(ndarray::array![4f32]),
    );
    let mut model = model;
    let err = model.load_state_dict(&state, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Error(s) in loading state_dict for Tokens:\n\tcannot load ids: candle's U32 tensors have \
         no ckpt dtype; convert it with `to_dtype(DType::I64)`, or mark the field \
         `#[state(skip)]`."
    );
    assert_eq!(values(&model.scale), [1.0], "nothing was written");
}

#[test]
fn candle_tensors_stay_on_their_device() {
    let mut model = fields(1.0);
    model.to(ckpt::Device::Cpu).unwrap();
    let err = model.to(ckpt::Device::Cuda(0)).unwrap_err();
    assert_eq!(
        err,
        ckpt::device::DeviceError::HostOnly {
            keys: vec!["weight".into(), "table".into(), "steps".into()],
            device: ckpt::Device::Cuda(0),
        }
    );
    assert!(
        err.to_string()
            .contains("candle tensors move with candle's `to_device`"),
        "{err}"
    );
}
