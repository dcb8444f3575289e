//! [`Padding`] and [`PaddingMode`]: how much a convolution pads its input, and with what.

/// How much a convolution pads each side of its input, as PyTorch's `padding` argument.
///
/// `From<usize>` gives [`Explicit`](Padding::Explicit), so `.padding(1)` and
/// `.padding(Padding::Same)` both read as in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Padding {
    /// This many elements on each side (`padding=1`).
    Explicit(usize),
    /// As much as keeps the length when the stride is 1 (`padding='same'`): `dilation * (k - 1)`
    /// in all, half of it (rounded down) on the left, the rest on the right, as PyTorch splits
    /// it for even kernels.
    Same,
    /// None (`padding='valid'`), the same as `Explicit(0)`.
    Valid,
}

impl From<usize> for Padding {
    fn from(padding: usize) -> Self {
        Padding::Explicit(padding)
    }
}

impl Padding {
    /// The elements added on the left and on the right for a kernel spanning `span` elements
    /// (`dilation * (k - 1) + 1`).
    pub(crate) fn sides(self, span: usize) -> (usize, usize) {
        match self {
            Padding::Explicit(p) => (p, p),
            Padding::Same => {
                let total = span.saturating_sub(1);
                (total / 2, total - total / 2)
            }
            Padding::Valid => (0, 0),
        }
    }
}

/// What padding is filled with, as PyTorch's `padding_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PaddingMode {
    /// Zeros (`'zeros'`, the default).
    #[default]
    Zeros,
    /// The input mirrored at its ends, the end itself not repeated (`'reflect'`): `c b | a b c | b a`.
    Reflect,
    /// The end values repeated (`'replicate'`): `a a | a b c | c c`.
    Replicate,
    /// The input wrapped around (`'circular'`): `b c | a b c | a b`.
    Circular,
}

impl PaddingMode {
    /// The input element that position `i` of the padded input shows (`i` counted from the
    /// start of the unpadded input, so negative on the left), or `None` for a zero. `len > 0`,
    /// and `i` lies within what [`check`](PaddingMode::check) allowed.
    pub(crate) fn source(self, i: isize, len: usize) -> Option<usize> {
        let n = len as isize;
        if (0..n).contains(&i) {
            return Some(i as usize);
        }
        let j = match self {
            PaddingMode::Zeros => return None,
            PaddingMode::Reflect if i < 0 => -i,
            PaddingMode::Reflect => 2 * (n - 1) - i,
            PaddingMode::Replicate => i.clamp(0, n - 1),
            PaddingMode::Circular => i.rem_euclid(n),
        };
        Some(j as usize)
    }

    /// Why padding `len` elements by `(left, right)` is impossible in this mode, in PyTorch's
    /// words, if it is.
    pub(crate) fn check(self, (left, right): (usize, usize), len: usize) -> Result<(), String> {
        let most = left.max(right);
        match self {
            PaddingMode::Zeros => Ok(()),
            _ if most == 0 => Ok(()),
            PaddingMode::Reflect if most >= len => Err(format!(
                "Padding size should be less than the corresponding input dimension, but got: \
                 padding ({left}, {right}) of input length {len}"
            )),
            PaddingMode::Circular if most > len => Err(format!(
                "Padding value causes wrapping around more than once: padding ({left}, {right}) \
                 of input length {len}"
            )),
            PaddingMode::Replicate if len == 0 => {
                Err("padding an empty input needs padding_mode zeros".to_owned())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(mode: PaddingMode, sides: (usize, usize)) -> Vec<Option<usize>> {
        let (left, right) = sides;
        (-(left as isize)..3 + right as isize)
            .map(|i| mode.source(i, 3))
            .collect()
    }

    #[test]
    fn modes_fill_as_pytorch_does() {
        let (a, b, c) = (Some(0), Some(1), Some(2));
        assert_eq!(
            padded(PaddingMode::Zeros, (1, 2)),
            [None, a, b, c, None, None]
        );
        assert_eq!(padded(PaddingMode::Reflect, (2, 2)), [c, b, a, b, c, b, a]);
        assert_eq!(
            padded(PaddingMode::Replicate, (2, 2)),
            [a, a, a, b, c, c, c]
        );
        assert_eq!(padded(PaddingMode::Circular, (2, 2)), [b, c, a, b, c, a, b]);
        assert!(PaddingMode::Reflect.check((3, 0), 3).is_err());
        assert!(PaddingMode::Reflect.check((2, 2), 3).is_ok());
        assert!(PaddingMode::Circular.check((3, 3), 3).is_ok());
        assert!(PaddingMode::Circular.check((4, 0), 3).is_err());
    }

    #[test]
    fn same_splits_an_odd_total_to_the_right() {
        assert_eq!(Padding::Same.sides(4), (1, 2));
        assert_eq!(Padding::Same.sides(3), (1, 1));
        assert_eq!(Padding::Same.sides(5), (2, 2));
        assert_eq!(Padding::Valid.sides(5), (0, 0));
        assert_eq!(Padding::from(3).sides(5), (3, 3));
    }
}
