//! [`LSTM`]: a stacked, optionally bidirectional long short-term memory, as `torch.nn.LSTM`.

use ndarray::{Array3, ArrayBase, ArrayView3, Data, Ix3};

use super::rnn::{CellKind, Rnn};
use super::{NnError, Rng, RnnConfig};
use crate::StateDict;

/// A multi-layer long short-term memory, as `torch.nn.LSTM` (without inter-layer dropout or
/// projections).
///
/// Keys, per layer `k` and, when bidirectional, again with `_reverse`: `weight_ih_l{k}`
/// `[4H, in]`, `weight_hh_l{k}` `[4H, H]`, `bias_ih_l{k}` and `bias_hh_l{k}` `[4H]`, gates in
/// PyTorch's order `i, f, g, o`.
#[derive(StateDict, Clone, Debug)]
pub struct LSTM {
    #[state(flatten)]
    rnn: Rnn,
}

/// The final hidden and cell states of an [`LSTM`], each `[D * num_layers, N, H]`.
pub type LstmState = (Array3<f32>, Array3<f32>);

impl LSTM {
    /// A layer with PyTorch's initialisation: every parameter from `U(-1/sqrt(H), 1/sqrt(H))`.
    /// Fails if `num_layers` is 0.
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        options: RnnConfig,
        rng: &mut Rng,
    ) -> Result<Self, NnError> {
        let rnn = Rnn::new(CellKind::Lstm, input_size, hidden_size, options, rng)?;
        Ok(LSTM { rnn })
    }

    /// The number of input features.
    pub fn input_size(&self) -> usize {
        self.rnn.input_size()
    }

    /// The size of the hidden and cell states.
    pub fn hidden_size(&self) -> usize {
        self.rnn.hidden_size()
    }

    /// The options it was built with.
    pub fn options(&self) -> RnnConfig {
        self.rnn.options()
    }

    /// Runs over `x` (`[L, N, in]`, or `[N, L, in]` when batch-first) from `(h0, c0)`
    /// (each `[D * num_layers, N, H]`, zeros when `None`), returning the last layer's output
    /// and `(h_n, c_n)`, as `output, (h_n, c_n) = lstm(x, (h0, c0))`.
    pub fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix3>,
        state: Option<(ArrayView3<'_, f32>, ArrayView3<'_, f32>)>,
    ) -> Result<(Array3<f32>, LstmState), NnError> {
        let (h0, c0) = state.unzip();
        let (output, last) = self.rnn.forward(x, h0, c0)?;
        let c = last.c.unwrap_or_else(|| Array3::zeros(last.h.raw_dim()));
        Ok((output, (last.h, c)))
    }
}
