//! [`GRU`]: a stacked, optionally bidirectional gated recurrent unit, as `torch.nn.GRU`.

use ndarray::{Array3, ArrayBase, ArrayView3, Data, Ix3};

use super::rnn::{CellKind, Rnn};
use super::{NnError, Rng, RnnConfig};
use crate::StateDict;

/// A multi-layer gated recurrent unit, as `torch.nn.GRU` (without inter-layer dropout).
///
/// Keys, per layer `k` and, when bidirectional, again with `_reverse`: `weight_ih_l{k}`
/// `[3H, in]`, `weight_hh_l{k}` `[3H, H]`, `bias_ih_l{k}` and `bias_hh_l{k}` `[3H]`, gates in
/// PyTorch's order `r, z, n`.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{GRU, Rng, RnnConfig};
///
/// let gru = GRU::new(4, 5, RnnConfig::default().num_layers(2).bidirectional(true), &mut Rng::seed(0))
///     .unwrap();
/// let state = gru.state_dict();
/// assert_eq!(state.len(), 16);
/// assert_eq!(state["weight_ih_l1_reverse"].shape(), &[15, 10]);
/// ```
#[derive(StateDict, Clone, Debug)]
pub struct GRU {
    #[state(flatten)]
    rnn: Rnn,
}

impl GRU {
    /// A layer with PyTorch's initialisation: every parameter from `U(-1/sqrt(H), 1/sqrt(H))`.
    /// Fails if `num_layers` is 0.
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        options: RnnConfig,
        rng: &mut Rng,
    ) -> Result<Self, NnError> {
        let rnn = Rnn::new(CellKind::Gru, input_size, hidden_size, options, rng)?;
        Ok(GRU { rnn })
    }

    /// The number of input features.
    pub fn input_size(&self) -> usize {
        self.rnn.input_size()
    }

    /// The size of the hidden state.
    pub fn hidden_size(&self) -> usize {
        self.rnn.hidden_size()
    }

    /// The options it was built with.
    pub fn options(&self) -> RnnConfig {
        self.rnn.options()
    }

    /// Runs over `x` (`[L, N, in]`, or `[N, L, in]` when batch-first) from `h0`
    /// (`[D * num_layers, N, H]`, zeros when `None`), returning the last layer's output
    /// (`[L, N, D * H]`, or batch-first) and `h_n` (`[D * num_layers, N, H]`), as
    /// `output, h_n = gru(x, h0)`.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix3>,
        h0: Option<ArrayView3<'_, f32>>,
    ) -> Result<(Array3<f32>, Array3<f32>), NnError> {
        let (output, last) = self.rnn.forward(x, h0, None)?;
        Ok((output, last.h))
    }
}
