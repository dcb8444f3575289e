//! `GroupNorm` against PyTorch, with and without affine parameters, on 3-D and 4-D inputs.

use ckpt::StateDict;
use ckpt::nn::{GroupNorm, Layer};
use ndarray::{Array3, IxDyn, ShapeBuilder};

use crate::common::fixtures::assert_close;
use crate::reference::load_strictly;

const TOL: f32 = 1e-5;

#[test]
fn groupnorm_matches_pytorch() {
    let mut norm = GroupNorm::new(2, 6).unwrap();
    let f = load_strictly(&mut norm, "groupnorm");
    let y = norm.forward(&f.array::<IxDyn>("x")).unwrap();
    assert_close("groupnorm", &y, &f.array::<IxDyn>("y"), TOL);
}

/// `affine=False`: an empty state dict (PyTorch's file is an empty `OrderedDict`), on
/// `[N, C, H, W]`.
#[test]
fn groupnorm_without_affine_on_images_matches_pytorch() {
    let mut norm = GroupNorm::new(3, 6).unwrap().eps(1e-3).without_affine();
    let f = load_strictly(&mut norm, "groupnorm_no_affine_4d");
    assert!(norm.state_dict().is_empty());
    let y = norm.forward_dyn(f.array::<IxDyn>("x")).unwrap();
    assert_close("groupnorm no affine", &y, &f.array::<IxDyn>("y"), TOL);
}

#[test]
fn groupnorm_refuses_what_pytorch_refuses() {
    assert_eq!(
        GroupNorm::new(4, 6).unwrap_err().to_string(),
        "GroupNorm: num_channels (6) must be divisible by num_groups (4)"
    );
    let norm = GroupNorm::new(2, 6).unwrap();
    let err = norm.forward(&Array3::<f32>::zeros((2, 4, 5))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "GroupNorm: expected input of shape [N, 6, *] with at least 2 dimensions, got [2, 4, 5]"
    );
    // Column-major input gives the same numbers.
    let x = Array3::from_shape_fn((2, 6, 3), |(i, j, k)| (i * 18 + j * 3 + k) as f32 * 0.1);
    let mut f = Array3::zeros((2, 6, 3).f());
    f.assign(&x);
    assert_eq!(norm.forward(&f).unwrap(), norm.forward(&x).unwrap());
}
