//! [`Conv1d`]: 1-D convolution (cross-correlation) over `[N, C, L]`, as `torch.nn.Conv1d`.

use ndarray::{Array1, Array2, Array3, ArrayBase, ArrayD, Axis, Data, Ix3, s};

use super::{Layer, NnError, Padding, PaddingMode, Rng, init};
use crate::StateDict;

/// Stride, padding, dilation, groups, bias and padding mode of a [`Conv1d`]; the default is
/// PyTorch's (stride 1, no padding, dilation 1, one group, with bias, zero padding).
///
/// ```
/// use ckpt::nn::{Conv1dConfig, Padding, PaddingMode};
///
/// // nn.Conv1d(4, 8, 4, padding='same', groups=4, padding_mode='reflect')
/// let config = Conv1dConfig::default()
///     .padding(Padding::Same)
///     .groups(4)
///     .padding_mode(PaddingMode::Reflect);
/// assert_eq!(config.padding, Padding::Same);
/// assert_eq!(Conv1dConfig::default().padding(1).padding, Padding::Explicit(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conv1dConfig {
    /// The step between windows.
    pub stride: usize,
    /// How much is added on each side.
    pub padding: Padding,
    /// The step between kernel taps.
    pub dilation: usize,
    /// The number of blocked connections from input to output channels; both channel counts
    /// must be multiples of it.
    pub groups: usize,
    /// Whether the layer has a `bias`.
    pub bias: bool,
    /// What the padding holds.
    pub padding_mode: PaddingMode,
}

impl Default for Conv1dConfig {
    fn default() -> Self {
        Conv1dConfig {
            stride: 1,
            padding: Padding::Explicit(0),
            dilation: 1,
            groups: 1,
            bias: true,
            padding_mode: PaddingMode::Zeros,
        }
    }
}

impl Conv1dConfig {
    /// Sets the stride.
    #[must_use]
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the padding: a number of elements per side, [`Padding::Same`] or
    /// [`Padding::Valid`].
    #[must_use]
    pub fn padding(mut self, padding: impl Into<Padding>) -> Self {
        self.padding = padding.into();
        self
    }

    /// Sets the dilation.
    #[must_use]
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }

    /// Sets the number of groups.
    #[must_use]
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets whether there is a bias (`bias=False` in PyTorch is `.bias(false)`).
    #[must_use]
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets what the padding holds.
    #[must_use]
    pub fn padding_mode(mut self, padding_mode: PaddingMode) -> Self {
        self.padding_mode = padding_mode;
        self
    }
}

/// A 1-D convolution over `[N, C, L]` inputs, as `torch.nn.Conv1d`: keys `weight`
/// `[out, in / groups, k]` and `bias` `[out]`. Every option of PyTorch's is supported, and the
/// state dict is the same whatever they are.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{Conv1d, Conv1dConfig, Rng};
///
/// let conv = Conv1d::new(4, 6, 3, Conv1dConfig::default().stride(2).padding(1), &mut Rng::seed(0))?;
/// assert_eq!(conv.state_dict().keys().collect::<Vec<_>>(), ["weight", "bias"]);
/// let y = conv.forward(&ndarray::Array3::<f32>::ones((2, 4, 9)))?;
/// assert_eq!(y.shape(), &[2, 6, 5]);
/// # Ok::<(), ckpt::nn::NnError>(())
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct Conv1d {
    /// `[out_channels, in_channels / groups, kernel_size]`.
    pub weight: Array3<f32>,
    /// `[out_channels]`, absent with `bias(false)`.
    pub bias: Option<Array1<f32>>,
    #[state(skip)]
    config: Conv1dConfig,
}

impl Conv1d {
    /// A layer with PyTorch's default initialisation: weight and bias from
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` with `fan_in = in_channels / groups * k`.
    ///
    /// Fails, with PyTorch's messages, on what PyTorch refuses: a zero kernel, stride,
    /// dilation or group count, channel counts that are not multiples of `groups`, and
    /// `Padding::Same` with a stride above 1.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        config: Conv1dConfig,
        rng: &mut Rng,
    ) -> Result<Self, NnError> {
        let refuse = |message: &str| Err(NnError::config("Conv1d", message));
        if config.groups == 0 {
            return refuse("groups must be a positive integer");
        }
        if in_channels % config.groups != 0 {
            return refuse("in_channels must be divisible by groups");
        }
        if out_channels % config.groups != 0 {
            return refuse("out_channels must be divisible by groups");
        }
        if kernel_size == 0 || config.stride == 0 || config.dilation == 0 {
            return refuse("kernel_size, stride and dilation must be positive");
        }
        if config.padding == Padding::Same && config.stride != 1 {
            return refuse("padding='same' is not supported for strided convolutions");
        }
        let fan_in = in_channels / config.groups * kernel_size;
        let bound = init::fan_in_bound(fan_in);
        let shape = (out_channels, in_channels / config.groups, kernel_size);
        Ok(Conv1d {
            weight: init::uniform(shape, bound, rng),
            bias: config.bias.then(|| init::uniform(out_channels, bound, rng)),
            config,
        })
    }

    /// The number of input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[1] * self.config.groups
    }

    /// The number of output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// The kernel's length.
    pub fn kernel_size(&self) -> usize {
        self.weight.shape()[2]
    }

    /// The options it was built with; `bias` says whether it has one now.
    pub fn config(&self) -> Conv1dConfig {
        Conv1dConfig {
            bias: self.bias.is_some(),
            ..self.config
        }
    }

    /// Convolves `[N, C_in, L]` into `[N, C_out, L_out]` with
    /// `L_out = (L + left + right - dilation (k - 1) - 1) / stride + 1`.
    pub fn forward<S>(&self, x: &ArrayBase<S, Ix3>) -> Result<Array3<f32>, NnError>
    where
        S: Data<Elem = f32>,
    {
        let (n, c, len) = x.dim();
        let Conv1dConfig {
            stride,
            padding,
            dilation,
            groups,
            padding_mode,
            ..
        } = self.config;
        let k = self.kernel_size();
        let span = dilation * (k - 1) + 1;
        let (left, right) = padding.sides(span);
        let shape_error = |why: String| NnError::shape("Conv1d", why, x.shape());
        if c != self.in_channels() || len + left + right < span {
            return Err(shape_error(format!(
                "[N, {}, L] with L + {} >= {span}",
                self.in_channels(),
                left + right
            )));
        }
        padding_mode
            .check((left, right), len)
            .map_err(|why| shape_error(format!("[N, {}, L]: {why}", self.in_channels())))?;
        let lo = (len + left + right - span) / stride + 1;
        let (cin, cout) = (c / groups, self.out_channels() / groups);
        let mut out = Array3::<f32>::zeros((n, self.out_channels(), lo));
        // For output position t and tap j, the padded input position, then the input element.
        let sources: Vec<Option<usize>> = (0..k * lo)
            .map(|tj| {
                let (j, t) = (tj / lo, tj % lo);
                let i = (t * stride + j * dilation) as isize - left as isize;
                padding_mode.source(i, len)
            })
            .collect();
        // One column per output position holding its receptive field, so each group is a
        // single matrix product per sample.
        let mut cols = Array2::<f32>::zeros((cin * k, lo));
        for g in 0..groups {
            let kernel = self.weight.slice(s![g * cout..(g + 1) * cout, .., ..]);
            let kernel = kernel
                .to_shape((cout, cin * k))
                .map_err(|e| shape_error(e.to_string()))?;
            for b in 0..n {
                for ci in 0..cin {
                    let channel = x.slice(s![b, g * cin + ci, ..]);
                    for (tj, source) in sources.iter().enumerate() {
                        let (j, t) = (tj / lo, tj % lo);
                        cols[[ci * k + j, t]] = source.map_or(0.0, |i| channel[i]);
                    }
                }
                out.slice_mut(s![b, g * cout..(g + 1) * cout, ..])
                    .assign(&kernel.dot(&cols));
            }
        }
        if let Some(bias) = &self.bias {
            for (mut channel, &b) in out.axis_iter_mut(Axis(1)).zip(bias) {
                channel += b;
            }
        }
        Ok(out)
    }
}

impl Layer for Conv1d {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        let shape = x.shape().to_vec();
        let x = x.into_dimensionality::<Ix3>().map_err(|_| {
            NnError::shape("Conv1d", format!("[N, {}, L]", self.in_channels()), &shape)
        })?;
        Ok(self.forward(&x)?.into_dyn())
    }
}
