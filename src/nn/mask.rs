//! [`Mask`]: an attention or key padding mask, boolean or additive, as PyTorch takes them.

use std::borrow::Cow;

use ndarray::{Array, Array2, ArrayBase, Data, Dimension};

/// A mask over attention scores, in either of PyTorch's two forms, of any shape.
///
/// - boolean ([`Mask::bool`]): `true` where attending is **not** allowed (PyTorch's convention
///   for `attn_mask` and `key_padding_mask`); it becomes `-inf` added to the score there;
/// - additive ([`Mask::float`]): added to the scores as it is (`0` allows, `-inf` forbids,
///   other values bias), as `nn.Transformer.generate_square_subsequent_mask` makes them.
///
/// A mask borrows an array in C order and copies any other; an owned array converts into one
/// (`Mask::from(array)`).
///
/// ```
/// use ckpt::nn::Mask;
/// use ndarray::array;
///
/// let causal = array![[false, true], [false, false]];
/// let mask = Mask::bool(&causal);
/// assert_eq!(mask.shape(), [2, 2]);
/// assert_eq!(mask.additive(&[0, 1]), Some(f32::NEG_INFINITY));
/// assert_eq!(Mask::causal(2).additive(&[1, 0]), Some(0.0));
/// assert_eq!(Mask::from(array![[0.0f32, -1.5]]).additive(&[0, 1]), Some(-1.5));
/// assert_eq!(mask.additive(&[2, 0]), None);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Mask<'a> {
    values: Values<'a>,
    shape: Vec<usize>,
}

/// The elements in C order. Slices rather than ndarray views, whose lifetime is invariant:
/// masks of different lifetimes then go together in one call's options.
#[derive(Clone, Debug, PartialEq)]
enum Values<'a> {
    Bool(Cow<'a, [bool]>),
    Float(Cow<'a, [f32]>),
}

/// The elements of `array` in C order, borrowed when it is in C order already.
fn elements<A: Clone, S: Data<Elem = A>, D: Dimension>(array: &ArrayBase<S, D>) -> Cow<'_, [A]> {
    match array.as_slice() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(array.iter().cloned().collect()),
    }
}

impl<'a> Mask<'a> {
    /// A boolean mask: `true` where attending is not allowed.
    pub fn bool<S, D>(mask: &'a ArrayBase<S, D>) -> Self
    where
        S: Data<Elem = bool>,
        D: Dimension,
    {
        Mask {
            values: Values::Bool(elements(mask)),
            shape: mask.shape().to_vec(),
        }
    }

    /// An additive mask.
    pub fn float<S, D>(mask: &'a ArrayBase<S, D>) -> Self
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        Mask {
            values: Values::Float(elements(mask)),
            shape: mask.shape().to_vec(),
        }
    }

    /// The same mask, borrowed.
    pub fn view(&self) -> Mask<'_> {
        let values = match &self.values {
            Values::Bool(v) => Values::Bool(Cow::Borrowed(v)),
            Values::Float(v) => Values::Float(Cow::Borrowed(v)),
        };
        Mask {
            values,
            shape: self.shape.clone(),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Whether it is a boolean mask.
    pub fn is_bool(&self) -> bool {
        matches!(self.values, Values::Bool(_))
    }

    /// What the mask adds to the score at `index`: `-inf` or `0` for a boolean mask, the
    /// value for an additive one; `None` if `index` does not lie within
    /// [`shape`](Mask::shape).
    pub fn additive(&self, index: &[usize]) -> Option<f32> {
        if index.len() != self.shape.len() || index.iter().zip(&self.shape).any(|(i, n)| i >= n) {
            return None;
        }
        let flat = index
            .iter()
            .zip(&self.shape)
            .fold(0, |flat, (&i, &n)| flat * n + i);
        Some(match &self.values {
            Values::Bool(v) if v[flat] => f32::NEG_INFINITY,
            Values::Bool(_) => 0.0,
            Values::Float(v) => v[flat],
        })
    }
}

impl Mask<'static> {
    /// The causal mask of `n` positions: position `i` may attend to `0..=i`. The same as
    /// `nn.Transformer.generate_square_subsequent_mask(n)`, as a boolean mask.
    pub fn causal(n: usize) -> Self {
        Mask::from(Array2::from_shape_fn((n, n), |(i, j)| j > i))
    }
}

/// An owned boolean mask.
impl<D: Dimension> From<Array<bool, D>> for Mask<'static> {
    fn from(mask: Array<bool, D>) -> Self {
        let shape = mask.shape().to_vec();
        let values = Values::Bool(Cow::Owned(elements(&mask).into_owned()));
        Mask { values, shape }
    }
}

/// An owned additive mask.
impl<D: Dimension> From<Array<f32, D>> for Mask<'static> {
    fn from(mask: Array<f32, D>) -> Self {
        let shape = mask.shape().to_vec();
        let values = Values::Float(Cow::Owned(elements(&mask).into_owned()));
        Mask { values, shape }
    }
}
