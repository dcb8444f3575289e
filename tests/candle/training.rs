//! Models trained with candle's own optimizers, saved with ckpt, loaded into fresh models:
//! the same outputs, training that continues the same, and warm starts under a new head.

use ckpt::candle_core::{DType, Device, Tensor, Var};
use ckpt::candle_nn::{self, AdamW, Optimizer, SGD, VarBuilder, VarMap};
use ckpt::keymap::KeyMap;
use ckpt::{LoadFrom, LoadOptions, StateDict, StateDictOptions};

use crate::common::candle::{ConvNet, Mlp, state_bytes, values};

/// 64 samples of 8 features, labelled by which of the first four features is largest.
fn data() -> (Tensor, Tensor) {
    let x = Tensor::randn(0f32, 1., (64, 8), &Device::Cpu).unwrap();
    let labels = x.narrow(1, 0, 4).unwrap().argmax(1).unwrap();
    (x, labels)
}

fn mlp() -> (VarMap, Mlp) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Mlp::new(vb, 8, 16, 4).unwrap();
    (varmap, model)
}

fn step(model: &Mlp, optimizer: &mut impl Optimizer, (x, labels): &(Tensor, Tensor)) -> f32 {
    let loss = candle_nn::loss::cross_entropy(&model.forward(x).unwrap(), labels).unwrap();
    optimizer.backward_step(&loss).unwrap();
    loss.to_scalar().unwrap()
}

#[test]
fn an_mlp_trained_with_adamw_comes_back_whole_in_a_fresh_model() {
    let data = data();
    let (varmap, trained) = mlp();
    let mut adamw = AdamW::new_lr(varmap.all_vars(), 1e-2).unwrap();
    let first = step(&trained, &mut adamw, &data);
    let mut last = first;
    for _ in 0..20 {
        last = step(&trained, &mut adamw, &data);
    }
    assert!(last < first, "the loss went from {first} to {last}");

    let dir = tempfile::tempdir().unwrap();
    let (x, _) = &data;
    let mut fresh_models = Vec::new();
    for name in ["mlp.ckpt", "mlp.pt", "mlp.safetensors"] {
        let path = dir.path().join(name);
        ckpt::save(trained.state_dict(), &path).unwrap();
        let (fresh_map, mut fresh) = mlp();
        let _ = fresh.load_from(&path).unwrap();
        assert_eq!(state_bytes(&fresh), state_bytes(&trained), "{name}");
        assert_eq!(
            values(&fresh.forward(x).unwrap()),
            values(&trained.forward(x).unwrap())
        );
        fresh_models.push((fresh_map, fresh));
    }

    // An optimizer made over a fresh map's variables trains from the loaded values: SGD keeps
    // no state, so one more step on each is the same step.
    let (fresh_map, fresh) = &fresh_models[0];
    let mut sgd_fresh = SGD::new(fresh_map.all_vars(), 0.1).unwrap();
    let mut sgd_trained = SGD::new(varmap.all_vars(), 0.1).unwrap();
    assert_eq!(
        step(fresh, &mut sgd_fresh, &data),
        step(&trained, &mut sgd_trained, &data)
    );
    assert_eq!(
        state_bytes(fresh),
        state_bytes(&trained),
        "after one more step"
    );
}

#[test]
fn a_conv_net_trained_with_sgd_keeps_its_running_statistics() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let trained = ConvNet::new(vb, 3).unwrap();
    let mut sgd = SGD::new(varmap.all_vars(), 0.05).unwrap();
    let x = (Tensor::randn(0f32, 1., (16, 3, 4, 4), &Device::Cpu).unwrap() + 0.5).unwrap();
    let labels = Tensor::arange(0u32, 16, &Device::Cpu)
        .unwrap()
        .affine(1.0, 0.0)
        .unwrap();
    let labels = (labels.to_dtype(DType::F32).unwrap() / 6.)
        .unwrap()
        .floor()
        .unwrap();
    let labels = labels.to_dtype(DType::U32).unwrap();
    for _ in 0..3 {
        let logits = trained.forward(&x, true).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
        sgd.backward_step(&loss).unwrap();
    }
    let stats = values(trained.bn.running_mean());
    assert!(
        stats.iter().any(|&m| m != 0.0),
        "training moved the running mean"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("convnet.pt");
    ckpt::save(trained.state_dict(), &path).unwrap();
    let mut fresh = ConvNet::new(VarBuilder::zeros(DType::F32, &Device::Cpu), 3).unwrap();
    let _ = fresh.load_from(&path).unwrap();
    assert_eq!(values(fresh.bn.running_mean()), stats);
    assert_eq!(
        values(&fresh.forward(&x, false).unwrap()),
        values(&trained.forward(&x, false).unwrap())
    );
}

#[test]
fn a_warm_start_loads_the_backbone_under_a_new_head() {
    let pretrained = ConvNet::new(
        VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
        5,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pretrained.safetensors");
    ckpt::save(pretrained.state_dict(), &path).unwrap();

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let mut model = ConvNet::new(vb, 2).unwrap(); // two classes: a new head
    let head = values(model.fc.weight());
    let err = model.load_from(&path).unwrap_err().to_string();
    assert!(
        err.contains("size mismatch for fc.weight: copying a param with shape [5, 128]"),
        "{err}"
    );

    let options = StateDictOptions::new().skip_shape_mismatches(true);
    let report = model
        .load_from_with(&path, &LoadOptions::new(), &options)
        .unwrap();
    assert_eq!(report.skipped_shape_mismatches, ["fc.weight", "fc.bias"]);
    assert_eq!(report.loaded_keys.len(), 9);
    assert_eq!(
        values(model.conv.weight()),
        values(pretrained.conv.weight())
    );
    assert_eq!(
        values(model.fc.weight()),
        head,
        "the new head keeps its initialisation"
    );

    // The backbone of a bigger model, picked out and renamed by a key map.
    #[derive(StateDict)]
    struct Classifier {
        features: ConvNet,
    }
    let big = Classifier {
        features: pretrained,
    };
    let options = StateDictOptions::new()
        .key_map(KeyMap::new().select_prefix("features."))
        .skip_shape_mismatches(true);
    let report = model
        .load_state_dict_with(&big.state_dict(), &options)
        .unwrap();
    assert_eq!(report.loaded_keys.len(), 9);
    assert_eq!(values(model.up.weight()), values(big.features.up.weight()));
    // The optimizer over the map sees the backbone it starts from.
    let data = varmap.data().lock().unwrap();
    assert_eq!(
        values(data["up.weight"].as_tensor()),
        values(big.features.up.weight())
    );
}

#[test]
fn a_var_field_loads_for_the_optimizer_that_holds_it() {
    #[derive(StateDict)]
    struct Scale {
        w: Var,
    }
    let mut model = Scale {
        w: Var::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    };
    let mut sgd = SGD::new(vec![model.w.clone()], 1.0).unwrap();
    let source = Scale {
        w: Var::new(&[1f32, 2., 3., 4.], &Device::Cpu).unwrap(),
    };
    let _ = model.load_state_dict(&source.state_dict(), true).unwrap();
    // d(sum w)/dw = 1: one step of SGD at lr 1 subtracts 1 from the loaded values.
    sgd.backward_step(&model.w.sum_all().unwrap()).unwrap();
    assert_eq!(values(model.w.as_tensor()), [0., 1., 2., 3.]);
}
