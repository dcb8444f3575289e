//! [`MaxPool2d`] and [`AdaptiveAvgPool2d`]: pooling over `[N, C, H, W]`, without tensors.

use ndarray::{Array4, ArrayBase, ArrayD, Data, Ix4};

use super::{Layer, NnError};
use crate::StateDict;

/// The maximum over square windows, as `torch.nn.MaxPool2d` (`dilation=1`,
/// `ceil_mode=False`); padding counts as `-inf`. It has no tensors.
#[derive(StateDict, Clone, Copy, Debug)]
pub struct MaxPool2d {
    #[state(skip)]
    kernel_size: usize,
    #[state(skip)]
    stride: usize,
    #[state(skip)]
    padding: usize,
}

impl MaxPool2d {
    /// Windows of `kernel_size` every `stride` (0 is taken as 1) over an input padded by
    /// `padding` on every side; PyTorch requires `padding <= kernel_size / 2`.
    pub fn new(kernel_size: usize, stride: usize, padding: usize) -> Result<Self, NnError> {
        if kernel_size == 0 || padding > kernel_size / 2 {
            return Err(NnError::config(
                "MaxPool2d",
                format!(
                    "pad should be at most half of effective kernel size, but got pad={padding}, kernel_size={kernel_size}"
                ),
            ));
        }
        Ok(MaxPool2d {
            kernel_size,
            stride: stride.max(1),
            padding,
        })
    }

    /// Pools `[N, C, H, W]` into `[N, C, (H + 2 padding - k) / stride + 1, …]`.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, NnError> {
        let (n, c, h, w) = x.dim();
        let (k, st, p) = (self.kernel_size, self.stride, self.padding);
        if h + 2 * p < k || w + 2 * p < k {
            return Err(NnError::shape(
                "MaxPool2d",
                format!("[N, C, H, W] with H, W + 2 * {p} >= {k}"),
                x.shape(),
            ));
        }
        let (ho, wo) = ((h + 2 * p - k) / st + 1, (w + 2 * p - k) / st + 1);
        Ok(Array4::from_shape_fn((n, c, ho, wo), |(b, ch, i, j)| {
            // Window rows and columns in unpadded coordinates, clipped to the input.
            let rows = (i * st).saturating_sub(p)..(i * st + k - p).min(h);
            let cols = (j * st).saturating_sub(p)..(j * st + k - p).min(w);
            let mut max = f32::NEG_INFINITY;
            for r in rows {
                for q in cols.clone() {
                    let v = x[[b, ch, r, q]];
                    if v > max || v.is_nan() {
                        max = v;
                    }
                }
            }
            max
        }))
    }
}

/// The average over windows chosen to give a fixed output size, as
/// `torch.nn.AdaptiveAvgPool2d`: output cell `i` of `out` averages input rows
/// `floor(i H / out)..ceil((i + 1) H / out)`. It has no tensors.
#[derive(StateDict, Clone, Copy, Debug)]
pub struct AdaptiveAvgPool2d {
    #[state(skip)]
    output_size: (usize, usize),
}

impl AdaptiveAvgPool2d {
    /// Pools to `(height, width)`; `(1, 1)` is global average pooling.
    pub fn new(output_size: (usize, usize)) -> Self {
        AdaptiveAvgPool2d { output_size }
    }

    /// Pools `[N, C, H, W]` into `[N, C, out_h, out_w]`.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix4>,
    ) -> Result<Array4<f32>, NnError> {
        let (n, c, h, w) = x.dim();
        let (oh, ow) = self.output_size;
        if h == 0 || w == 0 {
            return Err(NnError::shape(
                "AdaptiveAvgPool2d",
                "[N, C, H, W] with H, W > 0",
                x.shape(),
            ));
        }
        let window =
            |i: usize, out: usize, len: usize| (i * len / out)..((i + 1) * len).div_ceil(out);
        Ok(Array4::from_shape_fn((n, c, oh, ow), |(b, ch, i, j)| {
            let (rows, cols) = (window(i, oh, h), window(j, ow, w));
            let count = (rows.len() * cols.len()) as f32;
            let mut sum = 0.0;
            for r in rows {
                for q in cols.clone() {
                    sum += x[[b, ch, r, q]];
                }
            }
            sum / count
        }))
    }
}

/// `[N, C, H, W]` from a dynamic array, or the shape error of `layer`.
fn four_d(layer: &'static str, x: ArrayD<f32>) -> Result<Array4<f32>, NnError> {
    let shape = x.shape().to_vec();
    x.into_dimensionality::<Ix4>()
        .map_err(|_| NnError::shape(layer, "[N, C, H, W]", &shape))
}

impl Layer for MaxPool2d {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        Ok(self.forward(&four_d("MaxPool2d", x)?)?.into_dyn())
    }
}

impl Layer for AdaptiveAvgPool2d {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        Ok(self.forward(&four_d("AdaptiveAvgPool2d", x)?)?.into_dyn())
    }
}
