//! The `candle_nn` layers: PyTorch's keys, in PyTorch's order, and how loads reach tensors
//! the layers keep private.

use ckpt::StateDict;
use ckpt::candle_core::{DType, Device, Module, Tensor};
use ckpt::candle_nn::{
    self, BatchNorm, Conv2d, Conv2dConfig, ConvTranspose1dConfig, LayerNorm, Linear, VarBuilder,
    VarMap,
};

use crate::common::candle::values;

fn keys<M: StateDict>(layer: &M) -> Vec<String> {
    layer.state_dict().keys().map(str::to_owned).collect()
}

#[test]
fn every_layer_has_pytorchs_keys() {
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let conv1d = Default::default();
    let conv2d = Conv2dConfig::default();
    let transposed1d = ConvTranspose1dConfig::default();
    let linear = candle_nn::linear(2, 3, vb.clone()).unwrap();
    assert_eq!(keys(&linear), ["weight", "bias"]);
    assert_eq!(
        keys(&candle_nn::linear_no_bias(2, 3, vb.clone()).unwrap()),
        ["weight"]
    );
    let conv = candle_nn::conv1d(2, 4, 3, conv1d, vb.clone()).unwrap();
    assert_eq!(keys(&conv), ["weight", "bias"]);
    assert_eq!(conv.state_dict()["weight"].shape(), [4, 2, 3]);
    let conv = candle_nn::conv2d_no_bias(2, 4, 3, conv2d, vb.clone()).unwrap();
    assert_eq!(keys(&conv), ["weight"]);
    let transposed = candle_nn::conv_transpose1d(2, 4, 3, transposed1d, vb.clone()).unwrap();
    assert_eq!(
        transposed.state_dict()["weight"].shape(),
        [2, 4, 3],
        "PyTorch's [in, out, k]"
    );
    assert_eq!(
        keys(&candle_nn::embedding(10, 4, vb.clone()).unwrap()),
        ["weight"]
    );
    assert_eq!(
        keys(&candle_nn::layer_norm(4, 1e-5, vb.clone()).unwrap()),
        ["weight", "bias"]
    );
    let no_bias = candle_nn::layer_norm_no_bias(4, 1e-5, vb.clone()).unwrap();
    assert_eq!(keys(&no_bias), ["weight"]);
    assert_eq!(
        keys(&candle_nn::rms_norm(4, 1e-5, vb.clone()).unwrap()),
        ["weight"]
    );
    let bn = candle_nn::batch_norm(4, 1e-5, vb.clone()).unwrap();
    assert_eq!(
        keys(&bn),
        [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked"
        ]
    );
    assert_eq!(bn.named_buffers().len(), 3);
    assert_eq!(
        bn.named_parameters().keys().collect::<Vec<_>>(),
        ["weight", "bias"]
    );
    let cpu = &Device::Cpu;
    let stats = || Tensor::zeros(4, DType::F32, cpu).unwrap();
    let plain = BatchNorm::new_no_bias(4, stats(), stats(), 1e-5).unwrap();
    assert_eq!(
        keys(&plain),
        ["running_mean", "running_var", "num_batches_tracked"]
    );
}

#[test]
fn a_layer_of_plain_tensors_is_written_into_them() {
    let cpu = &Device::Cpu;
    let weight = Tensor::zeros((3, 2), DType::F32, cpu).unwrap();
    let bias = Tensor::zeros(3, DType::F32, cpu).unwrap();
    let mut layer = Linear::new(weight.clone(), Some(bias.clone()));
    let source = Linear::new(
        Tensor::ones((3, 2), DType::F32, cpu).unwrap(),
        Some(Tensor::new(&[1f32, 2., 3.], cpu).unwrap()),
    );
    let _ = layer.load_state_dict(&source.state_dict(), true).unwrap();
    assert_eq!(
        values(&weight),
        [1.0; 6],
        "the layer's own tensor, in place"
    );
    assert_eq!(values(&bias), [1., 2., 3.]);
    let x = Tensor::ones((1, 2), DType::F32, cpu).unwrap();
    assert_eq!(values(&layer.forward(&x).unwrap()), [3., 4., 5.]);
}

#[test]
fn a_layer_whose_tensor_cannot_be_written_in_place_is_made_anew() {
    let cpu = &Device::Cpu;
    // A transposed weight is not contiguous: the layer is rebuilt around the new one, with
    // its configuration.
    let strided = Tensor::zeros((3, 3, 2, 2), DType::F32, cpu)
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    assert!(!strided.is_contiguous());
    let config = Conv2dConfig {
        padding: 1,
        stride: 2,
        ..Default::default()
    };
    let mut conv = Conv2d::new(strided.clone(), None, config);
    let ones = Conv2d::new(
        Tensor::ones((3, 3, 2, 2), DType::F32, cpu).unwrap(),
        None,
        config,
    );
    let _ = conv.load_state_dict(&ones.state_dict(), true).unwrap();
    assert_eq!(values(conv.weight()), [1.0; 36]);
    assert_eq!(values(&strided), [0.0; 36], "the old tensor is left alone");
    assert_eq!(conv.config(), &config);
    let x = Tensor::ones((1, 3, 4, 4), DType::F32, cpu).unwrap();
    assert_eq!(conv.forward(&x).unwrap().dims(), [1, 3, 3, 3]);

    let mut norm = LayerNorm::new_no_bias(
        Tensor::zeros((2, 2), DType::F32, cpu).unwrap().t().unwrap(),
        0.5,
    );
    let source = vec![Tensor::new(&[[1f32, 2.], [3., 4.]], cpu).unwrap()];
    let mut state = source.state_dict().to_owned_tensors().unwrap();
    let weight = state.shift_remove("0").unwrap();
    state.insert("weight".to_owned(), weight);
    let _ = norm.load_state_dict(&state, true).unwrap();
    assert_eq!(values(norm.weight()), [1., 2., 3., 4.]);
    assert!((norm.eps(), norm.remove_mean()) == (0.5, true));
}

#[test]
fn a_layer_built_from_a_varmap_loads_into_the_maps_variables() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let mut bn = candle_nn::batch_norm(2, 1e-5, vb.pp("bn")).unwrap();
    let mut source = indexmap::IndexMap::new();
    for (key, value) in [
        ("weight", 2f32),
        ("bias", 3.),
        ("running_mean", 4.),
        ("running_var", 5.),
    ] {
        source.insert(
            key.to_owned(),
            ckpt::Tensor::from(ndarray::Array1::from_elem(2, value)),
        );
    }
    source.insert(
        "num_batches_tracked".to_owned(),
        ckpt::Tensor::scalar(12i64),
    );
    let report = bn.load_state_dict(&source, true).unwrap();
    assert_eq!(report.loaded_keys.len(), 5);
    let data = varmap.data().lock().unwrap();
    for (key, value) in [
        ("weight", 2f32),
        ("bias", 3.),
        ("running_mean", 4.),
        ("running_var", 5.),
    ] {
        assert_eq!(
            values(data[&format!("bn.{key}")].as_tensor()),
            [value; 2],
            "{key}"
        );
    }
}
