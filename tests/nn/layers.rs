//! `ckpt::nn` against PyTorch: each fixture's state dict loads strictly into the Rust layer, and
//! the forward pass reproduces PyTorch's outputs within 1e-5; fresh layers have PyTorch's keys,
//! shapes and dtypes.

use crate::common::fixtures::{Fixture, assert_close};
use ckpt::StateDict;
use ckpt::nn::{
    AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Conv2dConfig, Dropout, Embedding, GRU,
    LSTM, LayerNorm, Linear, MaxPool2d, MultiheadAttention, NnError, ReLU, Rng, RnnConfig,
    Sequential,
};
use ckpt::state::TensorMap;
use ndarray::{Array1, Array2, Array3, Array4, ArrayD, Ix2, Ix3, Ix4, IxDyn, ShapeBuilder};

const TOL: f32 = 1e-5;

/// Keys, dtype names and shapes of a state dict, in order.
fn layout(state: &TensorMap<'_>) -> Vec<(String, String, Vec<usize>)> {
    state
        .iter()
        .map(|(k, v)| (k.to_owned(), v.dtype().to_string(), v.shape().to_vec()))
        .collect()
}

/// A fresh layer has exactly the fixture's keys, dtypes and shapes, in PyTorch's order, and the
/// fixture's state loads into it strictly.
fn check_layout_and_load(layer: &mut dyn StateDict, fixture: &Fixture, prefix: &str) {
    assert_eq!(layout(&layer.state_dict()), fixture.layout(prefix));
    let report = layer.load_state_dict(&fixture.state(prefix), true).unwrap();
    assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
}

#[test]
fn linear_matches_pytorch() {
    let f = crate::common::fixtures::load("linear");
    let mut fc = Linear::new(5, 3, &mut Rng::seed(1));
    check_layout_and_load(&mut fc, &f, "state");
    let y = fc.forward(&f.array::<Ix2>("x")).unwrap();
    assert_close("linear y", &y, &f.array::<Ix2>("y"), TOL);
}

/// `Linear(1, n)` (a scalar regression input) and a batch of one: shapes for which ndarray's
/// matrix product comes back column-major.
#[test]
fn linear_takes_one_feature_and_one_row() {
    let rng = &mut Rng::seed(0);
    for (inputs, outputs, rows) in [(1, 4, 3), (1, 4, 1), (3, 4, 1), (1, 1, 5), (3, 1, 2)] {
        let fc = Linear::new(inputs, outputs, rng);
        let x = Array2::from_shape_fn((rows, inputs), |(i, j)| (i * inputs + j) as f32 - 1.5);
        let y = fc.forward(&x).unwrap();
        let expected = x.dot(&fc.weight.t()) + fc.bias.as_ref().unwrap();
        assert_eq!(y, expected, "Linear({inputs}, {outputs}) on {rows} rows");
        let x3 = x.clone().into_shape_with_order((1, rows, inputs)).unwrap();
        assert_eq!(fc.forward(&x3).unwrap().shape(), [1, rows, outputs]);
    }
}

#[test]
fn conv2d_matches_pytorch() {
    let f = crate::common::fixtures::load("conv2d");
    let options = Conv2dConfig::default().stride(2).padding(1);
    let mut conv = Conv2d::new(3, 4, 3, options, &mut Rng::seed(1));
    check_layout_and_load(&mut conv, &f, "state");
    let y = conv.forward(&f.array::<Ix4>("x")).unwrap();
    assert_close("conv2d y", &y, &f.array::<Ix4>("y"), TOL);
}

/// Loads `state_before`, runs one train-mode forward, checks the output and the updated buffers
/// against `state_after_train`, then one eval-mode forward.
fn check_batchnorm<L: StateDict>(
    name: &str,
    mut bn: L,
    forward: impl Fn(&mut L, &ArrayD<f32>) -> Result<ArrayD<f32>, NnError>,
) {
    let f = crate::common::fixtures::load(name);
    assert_eq!(layout(&bn.state_dict()), f.layout("state_before"));
    // `make_layer_fixtures.py` took `state_before` from `m.state_dict()` without cloning, and the
    // train step updated those very tensors in place: its running statistics are the ones after
    // the step. The true state before is the fixture's weight and bias with fresh buffers
    // (zeros, ones, 0), which is what the script started from.
    let mut before = bn.state_dict().to_owned_tensors();
    for key in ["weight", "bias"] {
        before.insert(key.to_owned(), f.tensor(&format!("state_before.{key}")));
    }
    let _ = bn.load_state_dict(&before, true).unwrap();
    let x = f.array::<IxDyn>("x");
    assert!(bn.is_training());
    let y = forward(&mut bn, &x).unwrap();
    assert_close(
        &format!("{name} y_train"),
        &y,
        &f.array::<IxDyn>("y_train"),
        TOL,
    );

    let after = f.state("state_after_train");
    let state = bn.state_dict();
    for key in ["running_mean", "running_var", "weight", "bias"] {
        let actual = crate::common::fixtures::values(&state[key]);
        assert_close(
            &format!("{name} {key} after train"),
            &actual,
            &crate::common::fixtures::values(&after[key].view()),
            TOL,
        );
    }
    assert_eq!(
        state["num_batches_tracked"],
        after["num_batches_tracked"].view()
    );
    assert_eq!(state["num_batches_tracked"].dtype(), ckpt::DType::I64);

    bn.eval();
    let y = forward(&mut bn, &x).unwrap();
    assert_close(
        &format!("{name} y_eval"),
        &y,
        &f.array::<IxDyn>("y_eval"),
        TOL,
    );
    let unchanged = bn.state_dict();
    assert_eq!(
        unchanged["num_batches_tracked"],
        after["num_batches_tracked"].view(),
        "eval leaves the counter alone"
    );
}

#[test]
fn batchnorm1d_matches_pytorch() {
    check_batchnorm("batchnorm1d", BatchNorm1d::new(4), |bn, x| bn.forward(x));
}

#[test]
fn batchnorm2d_matches_pytorch() {
    check_batchnorm("batchnorm2d", BatchNorm2d::new(3), |bn, x| bn.forward(x));
}

#[test]
fn batchnorm_counts_batches_and_refuses_single_values() {
    let mut bn = BatchNorm1d::new(2);
    let x = Array2::from_shape_fn((4, 2), |(i, j)| (i * 2 + j) as f32);
    bn.forward(&x).unwrap();
    bn.forward(&x).unwrap();
    assert_eq!(bn.num_batches_tracked(), 2);
    // Mean of rows 0, 2, 4, 6 is 3; one step of momentum 0.1 from 0, then another.
    assert!((bn.running_mean()[0] - (0.1 * 3.0 * 0.9 + 0.1 * 3.0)).abs() < 1e-6);
    let err = bn.forward(&Array2::<f32>::zeros((1, 2))).unwrap_err();
    assert!(
        err.to_string().contains("more than 1 value per channel"),
        "{err}"
    );
    let err = bn.forward(&Array2::<f32>::zeros((3, 5))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "BatchNorm1d: expected input of shape 2-D or 3-D with 2 channels in axis 1, got [3, 5]"
    );
}

/// Inputs in column-major order (as `x.t().to_owned()` makes them) give the same outputs as the
/// same values in row-major order.
#[test]
fn layers_take_column_major_inputs() {
    let rng = &mut Rng::seed(0);
    let value = |i: usize, j: usize| (i * 4 + j) as f32 * 0.25 - 1.0;
    let row_major = Array2::from_shape_fn((3, 4), |(i, j)| value(i, j));
    let column_major = Array2::from_shape_fn((3, 4).f(), |(i, j)| value(i, j));
    assert!(!column_major.is_standard_layout());
    assert_eq!(column_major, row_major);

    let layer_norm = LayerNorm::new(&[4]);
    assert_eq!(
        layer_norm.forward(&column_major).unwrap(),
        layer_norm.forward(&row_major).unwrap()
    );
    let mut batch_norm = BatchNorm1d::new(4);
    batch_norm.eval();
    assert_eq!(
        batch_norm.forward(&column_major).unwrap(),
        batch_norm.forward(&row_major).unwrap()
    );
    let fc = Linear::new(4, 2, rng);
    assert_eq!(
        fc.forward(&column_major).unwrap(),
        fc.forward(&row_major).unwrap()
    );
    let conv = Conv2d::new(1, 1, 2, Conv2dConfig::default(), rng);
    let image = Array4::from_shape_fn((1, 1, 3, 4), |(_, _, i, j)| value(i, j));
    let image_f = Array4::from_shape_fn((1, 1, 3, 4).f(), |(_, _, i, j)| value(i, j));
    assert_eq!(
        conv.forward(&image_f).unwrap(),
        conv.forward(&image).unwrap()
    );
}

#[test]
fn layernorm_matches_pytorch() {
    let f = crate::common::fixtures::load("layernorm");
    let mut ln = LayerNorm::new(&[6]);
    check_layout_and_load(&mut ln, &f, "state");
    let y = ln.forward(&f.array::<Ix3>("x")).unwrap();
    assert_close("layernorm y", &y, &f.array::<Ix3>("y"), TOL);
}

#[test]
fn embedding_matches_pytorch() {
    let f = crate::common::fixtures::load("embedding");
    let mut emb = Embedding::new(10, 4, &mut Rng::seed(1));
    check_layout_and_load(&mut emb, &f, "state");
    let idx: Array2<i64> = f.tensor("idx").to_array().unwrap();
    let y = emb.forward(&idx).unwrap();
    assert_close("embedding y", &y, &f.array::<Ix3>("y"), 0.0);
    let err = emb.forward(&ndarray::array![3i64, 10]).unwrap_err();
    assert_eq!(
        err,
        NnError::Index {
            layer: "Embedding",
            index: 10,
            position: 1,
            num_embeddings: 10
        }
    );
}

#[test]
fn gru_matches_pytorch() {
    let f = crate::common::fixtures::load("gru");
    let options = RnnConfig::default().num_layers(2).bidirectional(true);
    let mut gru = GRU::new(4, 5, options, &mut Rng::seed(1)).unwrap();
    check_layout_and_load(&mut gru, &f, "state");
    let h0 = f.array::<Ix3>("h0");
    let (y, h_n) = gru.forward(&f.array::<Ix3>("x"), Some(h0.view())).unwrap();
    assert_close("gru y", &y, &f.array::<Ix3>("y"), TOL);
    assert_close("gru h_n", &h_n, &f.array::<Ix3>("h_n"), TOL);
}

#[test]
fn gru_batch_first_is_the_transpose() {
    let f = crate::common::fixtures::load("gru");
    let options = RnnConfig::default().num_layers(2).bidirectional(true);
    let mut gru = GRU::new(4, 5, options.batch_first(true), &mut Rng::seed(1)).unwrap();
    let _ = gru.load_state_dict(&f.state("state"), true).unwrap();
    let x = f.array::<Ix3>("x").permuted_axes([1, 0, 2]);
    let h0 = f.array::<Ix3>("h0");
    let (y, h_n) = gru.forward(&x, Some(h0.view())).unwrap();
    let expected = f.array::<Ix3>("y").permuted_axes([1, 0, 2]);
    assert_close("gru batch_first y", &y, &expected, TOL);
    assert_close("gru batch_first h_n", &h_n, &f.array::<Ix3>("h_n"), TOL);
    let err = gru
        .forward(&Array3::<f32>::zeros((2, 3, 7)), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "GRU: expected input of shape [N, L, 4], got [3, 2, 7]"
    );
}

#[test]
fn lstm_matches_pytorch() {
    let f = crate::common::fixtures::load("lstm");
    let options = RnnConfig::default().num_layers(2);
    let mut lstm = LSTM::new(4, 5, options, &mut Rng::seed(1)).unwrap();
    check_layout_and_load(&mut lstm, &f, "state");
    let (y, (h_n, c_n)) = lstm.forward(&f.array::<Ix3>("x"), None).unwrap();
    assert_close("lstm y", &y, &f.array::<Ix3>("y"), TOL);
    assert_close("lstm h_n", &h_n, &f.array::<Ix3>("h_n"), TOL);
    assert_close("lstm c_n", &c_n, &f.array::<Ix3>("c_n"), TOL);
}

#[test]
fn lstm_bidirectional_batch_first_with_initial_state_matches_pytorch() {
    let f = crate::common::fixtures::load_file("lstm_bidirectional.json");
    let options = RnnConfig::default()
        .num_layers(2)
        .bidirectional(true)
        .batch_first(true);
    let mut lstm = LSTM::new(3, 4, options, &mut Rng::seed(1)).unwrap();
    check_layout_and_load(&mut lstm, &f, "state");
    let (h0, c0) = (f.array::<Ix3>("h0"), f.array::<Ix3>("c0"));
    let (y, (h_n, c_n)) = lstm
        .forward(&f.array::<Ix3>("x"), Some((h0.view(), c0.view())))
        .unwrap();
    assert_close("lstm bidirectional y", &y, &f.array::<Ix3>("y"), TOL);
    assert_close("lstm bidirectional h_n", &h_n, &f.array::<Ix3>("h_n"), TOL);
    assert_close("lstm bidirectional c_n", &c_n, &f.array::<Ix3>("c_n"), TOL);
    let err = lstm
        .forward(
            &f.array::<Ix3>("x"),
            Some((h0.view(), h0.slice(ndarray::s![..2, .., ..]))),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "LSTM: expected input of shape initial state [4, 2, 4], got [2, 2, 4]"
    );
}

#[test]
fn batchnorm_without_momentum_keeps_a_cumulative_average() {
    let f = crate::common::fixtures::load_file("batchnorm_cumulative.json");
    let mut bn = BatchNorm1d::new(3).momentum(None);
    bn.forward(&f.array::<Ix2>("x1")).unwrap();
    let y = bn.forward(&f.array::<Ix3>("x2")).unwrap();
    assert_close(
        "batchnorm cumulative y2_train",
        &y,
        &f.array::<Ix3>("y2_train"),
        TOL,
    );
    let after = f.state("state_after_train");
    let state = bn.state_dict();
    for key in ["running_mean", "running_var"] {
        let expected = crate::common::fixtures::values(&after[key].view());
        let what = format!("batchnorm cumulative {key}");
        assert_close(
            &what,
            &crate::common::fixtures::values(&state[key]),
            &expected,
            TOL,
        );
    }
    assert_eq!(bn.num_batches_tracked(), 2);
    bn.eval();
    let y = bn.forward(&f.array::<Ix3>("x2")).unwrap();
    assert_close(
        "batchnorm cumulative y_eval",
        &y,
        &f.array::<Ix3>("y_eval"),
        TOL,
    );
}

/// Every element within `[-bound, bound]`, and not all equal.
fn assert_uniform(what: &str, values: &ArrayD<f32>, bound: f32) {
    assert!(
        values.iter().all(|v| v.abs() <= bound),
        "{what}: outside ±{bound}"
    );
    let first = values.iter().next().copied();
    assert!(values.iter().any(|&v| Some(v) != first), "{what}: constant");
}

#[test]
fn fresh_layers_have_pytorch_initialisation() {
    let rng = &mut Rng::seed(3);
    let fc = Linear::new(50, 20, rng);
    assert_uniform(
        "linear weight",
        &fc.weight.clone().into_dyn(),
        1.0 / 50f32.sqrt(),
    );
    let conv = Conv2d::new(3, 4, 3, Conv2dConfig::default(), rng);
    assert_uniform(
        "conv weight",
        &conv.weight.clone().into_dyn(),
        1.0 / 27f32.sqrt(),
    );
    let gru = GRU::new(4, 16, RnnConfig::default(), rng).unwrap();
    for (key, t) in gru.state_dict().iter() {
        assert_uniform(key, &crate::common::fixtures::values(t), 0.25);
    }
    let mha = MultiheadAttention::new(8, 2, Default::default(), rng).unwrap();
    assert_uniform(
        "in_proj_weight",
        &mha.in_proj_weight.clone().unwrap().into_dyn(),
        (6.0f32 / 32.0).sqrt(),
    );
    assert!(mha.in_proj_bias.iter().flatten().all(|&b| b == 0.0));
    let bn = BatchNorm2d::new(3);
    let state = bn.state_dict();
    assert_eq!(
        crate::common::fixtures::values(&state["running_var"]),
        ArrayD::<f32>::ones(IxDyn(&[3]))
    );
    assert_eq!(state["num_batches_tracked"].shape(), &[] as &[usize]);
    let emb = Embedding::new(100, 10, rng);
    let mean = emb.weight.mean().unwrap();
    let std = emb.weight.std(0.0);
    assert!(
        mean.abs() < 0.15 && (std - 1.0).abs() < 0.1,
        "N(0, 1): {mean} {std}"
    );
}

#[test]
fn optional_biases_drop_their_keys() {
    let rng = &mut Rng::seed(0);
    let fc = Linear::new(3, 2, rng).without_bias();
    assert_eq!(fc.state_dict().keys().collect::<Vec<_>>(), ["weight"]);
    let conv = Conv2d::new(1, 1, 1, Conv2dConfig::default().bias(false), rng);
    assert_eq!(conv.state_dict().keys().collect::<Vec<_>>(), ["weight"]);
    let lstm = LSTM::new(2, 3, RnnConfig::default().bias(false), rng).unwrap();
    assert_eq!(
        lstm.state_dict().keys().collect::<Vec<_>>(),
        ["weight_ih_l0", "weight_hh_l0"]
    );
}

#[test]
fn dropout_zeroes_and_scales_in_training_only() {
    let mut dropout = Dropout::new(0.25, 7).unwrap();
    let x = Array1::<f32>::ones(10_000);
    let y = dropout.forward(&x);
    let zeros = y.iter().filter(|&&v| v == 0.0).count();
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!((2200..2800).contains(&zeros), "{zeros} of 10000 dropped");
    assert_ne!(dropout.forward(&x), y, "a new mask each call");
    assert_eq!(Dropout::new(0.25, 7).unwrap().forward(&x), y, "seeded");
    dropout.eval();
    assert_eq!(dropout.forward(&x), x);
    assert!(dropout.state_dict().is_empty());
    assert_eq!(
        Dropout::new(1.5, 0).unwrap_err().to_string(),
        "Dropout: dropout probability has to be between 0 and 1, but got 1.5"
    );
}

#[test]
fn sequential_keys_are_pytorch_indices() {
    let f = crate::common::fixtures::load("linear");
    let rng = &mut Rng::seed(0);
    let mut mlp = Sequential::new()
        .push(Linear::new(5, 3, rng))
        .push(ReLU)
        .push(Dropout::new(0.5, 0).unwrap())
        .push(Linear::new(3, 2, rng));
    let keys: Vec<_> = mlp.state_dict().keys().map(str::to_owned).collect();
    assert_eq!(keys, ["0.weight", "0.bias", "3.weight", "3.bias"]);

    // Layer 0 takes the fixture's Linear; the chain is ReLU of it, then layer 3.
    let mut prefixed = indexmap::IndexMap::new();
    for (k, v) in f.state("state") {
        prefixed.insert(format!("0.{k}"), v);
    }
    for (k, v) in mlp.state_dict().to_owned_tensors() {
        prefixed.entry(k).or_insert(v);
    }
    let _ = mlp.load_state_dict(&prefixed, true).unwrap();
    mlp.eval();
    assert!(!mlp.is_training());
    let x = f.array::<Ix2>("x");
    let y = mlp.forward(x.clone().into_dyn()).unwrap();
    let last = Linear {
        weight: prefixed["3.weight"].to_array().unwrap(),
        bias: Some(prefixed["3.bias"].to_array().unwrap()),
    };
    let expected = last
        .forward(&ReLU.forward(&f.array::<Ix2>("y")))
        .unwrap()
        .into_dyn();
    assert_close("sequential", &y, &expected, TOL);
}

#[test]
fn pooling_matches_pytorch() {
    let f = crate::common::fixtures::load_file("pooling.json");
    let x = f.array::<Ix4>("x");
    let y = MaxPool2d::new(3, 2, 1).unwrap().forward(&x).unwrap();
    assert_close("max_pool y", &y, &f.array::<Ix4>("y_max"), 0.0);
    let y = AdaptiveAvgPool2d::new((3, 2)).forward(&x).unwrap();
    assert_close(
        "adaptive_avg_pool 3x2 y",
        &y,
        &f.array::<Ix4>("y_avg_3x2"),
        TOL,
    );
    let y = AdaptiveAvgPool2d::new((1, 1)).forward(&x).unwrap();
    assert_close(
        "adaptive_avg_pool 1x1 y",
        &y,
        &f.array::<Ix4>("y_avg_1x1"),
        TOL,
    );
    assert_eq!(
        MaxPool2d::new(3, 2, 2).unwrap_err().to_string(),
        "MaxPool2d: pad should be at most half of effective kernel size, but got pad=2, kernel_size=3"
    );
    assert!(MaxPool2d::new(3, 2, 1).unwrap().state_dict().is_empty());
}
