//! `Conv1d` against PyTorch: stride, padding (numbers and `'same'` with an even kernel),
//! dilation, groups, no bias and reflect padding, each loaded from PyTorch's file.

use ckpt::StateDict;
use ckpt::nn::{Conv1d, Conv1dConfig, Layer, NnError, Padding, PaddingMode, Rng};
use ndarray::{Array3, Ix3};

use crate::common::fixtures::assert_close;
use crate::reference::load_strictly;

const TOL: f32 = 1e-5;

fn check(name: &str, in_channels: usize, out: usize, k: usize, config: Conv1dConfig) {
    let mut conv = Conv1d::new(in_channels, out, k, config, &mut Rng::seed(1)).unwrap();
    let f = load_strictly(&mut conv, name);
    let y = conv.forward(&f.array::<Ix3>("x")).unwrap();
    assert_close(name, &y, &f.array::<Ix3>("y"), TOL);
    // The same through `Layer`, as a `Sequential` runs it.
    let y = conv.forward_dyn(f.array::<Ix3>("x").into_dyn()).unwrap();
    assert_close(name, &y, &f.array::<Ix3>("y").into_dyn(), TOL);
}

#[test]
fn conv1d_stride_padding_matches_pytorch() {
    let config = Conv1dConfig::default().stride(2).padding(1);
    check("conv1d_stride_padding", 4, 6, 3, config);
}

#[test]
fn conv1d_dilation_groups_without_bias_matches_pytorch() {
    let config = Conv1dConfig::default()
        .padding(2)
        .dilation(2)
        .groups(2)
        .bias(false);
    check("conv1d_dilation_groups_nobias", 4, 6, 3, config);
}

/// `padding='same'` with kernel 4 pads one element on the left and two on the right.
#[test]
fn conv1d_same_padding_with_an_even_kernel_matches_pytorch() {
    let config = Conv1dConfig::default().padding(Padding::Same).groups(4);
    check("conv1d_same_even_kernel_depthwise", 4, 8, 4, config);
}

#[test]
fn conv1d_reflect_padding_matches_pytorch() {
    let config = Conv1dConfig::default()
        .stride(3)
        .padding(2)
        .dilation(2)
        .padding_mode(PaddingMode::Reflect);
    check("conv1d_reflect_stride_dilation", 3, 2, 3, config);
}

#[test]
fn conv1d_refuses_what_pytorch_refuses() {
    let rng = &mut Rng::seed(0);
    let mut message = |config: Conv1dConfig, cin: usize, cout: usize| {
        Conv1d::new(cin, cout, 3, config, rng)
            .unwrap_err()
            .to_string()
    };
    let groups = Conv1dConfig::default().groups(2);
    assert_eq!(
        message(groups, 3, 6),
        "Conv1d: in_channels must be divisible by groups"
    );
    assert_eq!(
        message(groups, 4, 5),
        "Conv1d: out_channels must be divisible by groups"
    );
    assert_eq!(
        message(
            Conv1dConfig::default().padding(Padding::Same).stride(2),
            4,
            4
        ),
        "Conv1d: padding='same' is not supported for strided convolutions"
    );
    let conv = Conv1d::new(2, 2, 3, Conv1dConfig::default(), rng).unwrap();
    assert_eq!(
        conv.forward(&Array3::<f32>::zeros((1, 3, 8))).unwrap_err(),
        NnError::Shape {
            layer: "Conv1d",
            expected: "[N, 2, L] with L + 0 >= 3".into(),
            actual: vec![1, 3, 8]
        }
    );
    assert!(conv.forward(&Array3::<f32>::zeros((1, 2, 2))).is_err());
    let reflect = Conv1dConfig::default()
        .padding(3)
        .padding_mode(PaddingMode::Reflect);
    let conv = Conv1d::new(2, 2, 3, reflect, rng).unwrap();
    let err = conv.forward(&Array3::<f32>::zeros((1, 2, 3))).unwrap_err();
    assert!(
        err.to_string()
            .contains("Padding size should be less than the corresponding input dimension"),
        "{err}"
    );
    assert_eq!(
        conv.forward(&Array3::<f32>::zeros((1, 2, 4)))
            .unwrap()
            .dim(),
        (1, 2, 8)
    );
}

/// Circular and replicate padding, which PyTorch has no fixture for here: against a direct
/// evaluation of the definition.
#[test]
fn conv1d_circular_and_replicate_padding_follow_the_definition() {
    for (mode, source) in [
        (
            PaddingMode::Circular,
            (|i: isize| i.rem_euclid(5)) as fn(isize) -> isize,
        ),
        (PaddingMode::Replicate, |i: isize| i.clamp(0, 4)),
    ] {
        let config = Conv1dConfig::default().padding(2).padding_mode(mode);
        let conv = Conv1d::new(1, 1, 3, config, &mut Rng::seed(2)).unwrap();
        let x = Array3::from_shape_fn((1, 1, 5), |(_, _, i)| i as f32 * 0.5 - 1.0);
        let y = conv.forward(&x).unwrap();
        assert_eq!(y.dim(), (1, 1, 7));
        let bias = conv.bias.as_ref().unwrap()[0];
        for t in 0..7 {
            let expected: f32 = (0..3)
                .map(|j| {
                    conv.weight[[0, 0, j]] * x[[0, 0, source(t as isize + j as isize - 2) as usize]]
                })
                .sum::<f32>()
                + bias;
            assert!((y[[0, 0, t]] - expected).abs() < 1e-6, "{mode:?} at {t}");
        }
    }
    assert_eq!(
        Conv1d::new(
            4,
            2,
            3,
            Conv1dConfig::default().groups(2),
            &mut Rng::seed(0)
        )
        .unwrap()
        .state_dict()["weight"]
            .shape(),
        [2, 2, 3]
    );
}
