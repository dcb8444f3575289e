//! [`Conv2d`]: 2-D convolution (cross-correlation), as `torch.nn.Conv2d`.

use ndarray::{Array1, Array2, Array4, ArrayBase, ArrayD, Data, Ix4, s};

use super::{Layer, NnError, Rng, init};
use crate::StateDict;

/// Stride, padding and bias of a [`Conv2d`]; the default is PyTorch's (stride 1, no padding,
/// with bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// The step between windows, in both directions.
    pub stride: usize,
    /// Zeros added on every side.
    pub padding: usize,
    /// Whether the layer has a `bias`.
    pub bias: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: 1,
            padding: 0,
            bias: true,
        }
    }
}

impl Conv2dConfig {
    /// Sets the stride.
    #[must_use]
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the padding.
    #[must_use]
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// Sets whether there is a bias (`bias=False` in PyTorch is `.bias(false)`).
    #[must_use]
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// A 2-D convolution over `[N, C, H, W]` inputs with square kernels, as `torch.nn.Conv2d` with
/// `dilation=1` and `groups=1`: keys `weight` `[out, in, k, k]` and `bias` `[out]`.
#[derive(StateDict, Clone, Debug)]
pub struct Conv2d {
    /// `[out_channels, in_channels, kernel_size, kernel_size]`.
    pub weight: Array4<f32>,
    /// `[out_channels]`, absent with `bias(false)`.
    pub bias: Option<Array1<f32>>,
    #[state(skip)]
    stride: usize,
    #[state(skip)]
    padding: usize,
}

impl Conv2d {
    /// A layer with PyTorch's default initialisation: weight and bias from
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` with `fan_in = in_channels * k * k`.
    ///
    /// A stride of 0 is taken as 1; PyTorch refuses it.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        options: Conv2dConfig,
        rng: &mut Rng,
    ) -> Self {
        let bound = init::fan_in_bound(in_channels * kernel_size * kernel_size);
        let shape = (out_channels, in_channels, kernel_size, kernel_size);
        Conv2d {
            weight: init::uniform(shape, bound, rng),
            bias: options
                .bias
                .then(|| init::uniform(out_channels, bound, rng)),
            stride: options.stride.max(1),
            padding: options.padding,
        }
    }

    /// The number of input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[1]
    }

    /// The number of output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// The kernel's height (and width).
    pub fn kernel_size(&self) -> usize {
        self.weight.shape()[2]
    }

    /// Convolves `[N, C_in, H, W]` into `[N, C_out, H_out, W_out]` with
    /// `H_out = (H + 2 padding - k) / stride + 1`.
    pub fn forward<S>(&self, x: &ArrayBase<S, Ix4>) -> Result<Array4<f32>, NnError>
    where
        S: Data<Elem = f32>,
    {
        let (n, c, h, w) = x.dim();
        let (k, p, st) = (self.kernel_size(), self.padding, self.stride);
        let shape_error = || {
            NnError::shape(
                "Conv2d",
                format!(
                    "[N, {}, H, W] with H, W + 2 * {p} >= {k}",
                    self.in_channels()
                ),
                x.shape(),
            )
        };
        if c != self.in_channels() || h + 2 * p < k || w + 2 * p < k {
            return Err(shape_error());
        }
        let (ho, wo) = ((h + 2 * p - k) / st + 1, (w + 2 * p - k) / st + 1);
        let mut padded = Array4::<f32>::zeros((n, c, h + 2 * p, w + 2 * p));
        padded.slice_mut(s![.., .., p..p + h, p..p + w]).assign(x);
        let kernel = self
            .weight
            .to_shape((self.out_channels(), c * k * k))
            .map_err(|_| shape_error())?;
        let mut out = Array4::<f32>::zeros((n, self.out_channels(), ho, wo));
        // One column per output position holding its receptive field, so the convolution is a
        // single matrix product per image.
        let mut cols = Array2::<f32>::zeros((c * k * k, ho * wo));
        for b in 0..n {
            for ci in 0..c {
                for ki in 0..k {
                    for kj in 0..k {
                        let row = (ci * k + ki) * k + kj;
                        for oi in 0..ho {
                            for oj in 0..wo {
                                cols[[row, oi * wo + oj]] =
                                    padded[[b, ci, oi * st + ki, oj * st + kj]];
                            }
                        }
                    }
                }
            }
            let y = kernel.dot(&cols);
            let y = y
                .into_shape_with_order((self.out_channels(), ho, wo))
                .map_err(|_| shape_error())?;
            out.slice_mut(s![b, .., .., ..]).assign(&y);
        }
        if let Some(bias) = &self.bias {
            for (mut channel, &b) in out.axis_iter_mut(ndarray::Axis(1)).zip(bias) {
                channel += b;
            }
        }
        Ok(out)
    }
}

impl Layer for Conv2d {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        let shape = x.shape().to_vec();
        let x = x.into_dimensionality::<Ix4>().map_err(|_| {
            NnError::shape(
                "Conv2d",
                format!("[N, {}, H, W]", self.in_channels()),
                &shape,
            )
        })?;
        Ok(self.forward(&x)?.into_dyn())
    }
}
