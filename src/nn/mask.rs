//! [`Mask`]: an attention or key padding mask, boolean or additive, as PyTorch takes them.

use ndarray::{Array2, ArrayBase, CowArray, Data, Dimension, IxDyn};

/// A mask over attention scores, in either of PyTorch's two forms.
///
/// - [`Bool`](Mask::Bool): `true` where attending is **not** allowed (PyTorch's convention for
///   `attn_mask` and `key_padding_mask`); it becomes `-inf` added to the score there.
/// - [`Float`](Mask::Float): added to the scores as it is (`0` allows, `-inf` forbids, other
///   values bias), as `nn.Transformer.generate_square_subsequent_mask` makes them.
///
/// ```
/// use ckpt::nn::Mask;
/// use ndarray::array;
///
/// let causal = array![[false, true], [false, false]];
/// let mask = Mask::bool(&causal);
/// assert_eq!(mask.shape(), [2, 2]);
/// assert_eq!(mask.additive(&[0, 1]), f32::NEG_INFINITY);
/// assert_eq!(Mask::causal(2).additive(&[0, 1]), f32::NEG_INFINITY);
/// ```
#[derive(Clone, Debug)]
pub enum Mask<'a> {
    /// `true` where attending is not allowed.
    Bool(CowArray<'a, bool, IxDyn>),
    /// Added to the scores.
    Float(CowArray<'a, f32, IxDyn>),
}

impl<'a> Mask<'a> {
    /// A boolean mask of any shape: `true` where attending is not allowed.
    pub fn bool<S, D>(mask: &'a ArrayBase<S, D>) -> Self
    where
        S: Data<Elem = bool>,
        D: Dimension,
    {
        Mask::Bool(mask.view().into_dyn().into())
    }

    /// An additive mask of any shape.
    pub fn float<S, D>(mask: &'a ArrayBase<S, D>) -> Self
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        Mask::Float(mask.view().into_dyn().into())
    }

    /// The same mask, borrowed: a view however this one holds its values.
    pub fn view(&self) -> Mask<'_> {
        match self {
            Mask::Bool(m) => Mask::Bool(m.view().into()),
            Mask::Float(m) => Mask::Float(m.view().into()),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Mask::Bool(m) => m.shape(),
            Mask::Float(m) => m.shape(),
        }
    }

    /// What the mask adds to the score at `index`: `-inf` or `0` for a boolean mask, the
    /// value for an additive one. `index` must lie within [`shape`](Mask::shape).
    pub fn additive(&self, index: &[usize]) -> f32 {
        match self {
            Mask::Bool(m) if m[index] => f32::NEG_INFINITY,
            Mask::Bool(_) => 0.0,
            Mask::Float(m) => m[index],
        }
    }
}

impl Mask<'static> {
    /// The causal mask of `n` positions, owned: position `i` may attend to `0..=i`. The same
    /// as `nn.Transformer.generate_square_subsequent_mask(n)`, as a boolean mask.
    pub fn causal(n: usize) -> Self {
        let mask = Array2::from_shape_fn((n, n), |(i, j)| j > i);
        Mask::Bool(mask.into_dyn().into())
    }
}
