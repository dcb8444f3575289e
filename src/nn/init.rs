//! Default initialisations of `torch.nn` layers.

use ndarray::{Array, Dimension, ShapeBuilder};

use super::Rng;

/// An array of `shape` filled from `U(-bound, bound)`.
pub(crate) fn uniform<Sh, D>(shape: Sh, bound: f32, rng: &mut Rng) -> Array<f32, D>
where
    Sh: ShapeBuilder<Dim = D>,
    D: Dimension,
{
    Array::from_shape_simple_fn(shape, || rng.uniform(-bound, bound))
}

/// The bound of `kaiming_uniform_(w, a=sqrt(5))`, which `nn.Linear` and `nn.Conv2d` use for their
/// weights, and of the uniform bias init beside it: `gain * sqrt(3 / fan_in)` with
/// `gain = sqrt(2 / (1 + 5))`, which is `1 / sqrt(fan_in)`.
pub(crate) fn fan_in_bound(fan_in: usize) -> f32 {
    if fan_in == 0 {
        0.0
    } else {
        1.0 / (fan_in as f32).sqrt()
    }
}
