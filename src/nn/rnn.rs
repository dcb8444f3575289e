//! What [`GRU`](super::GRU) and [`LSTM`](super::LSTM) share: options, the per-layer weights with
//! PyTorch's runtime-generated keys, and the loop over layers, directions and time.

use ndarray::{Array1, Array2, Array3, ArrayBase, ArrayView2, ArrayView3, Axis, Data, Ix3, s};

use super::{NnError, Rng, init};
use crate::StateDict;
use crate::state::{KeyPath, Role, Visitor, VisitorMut};

/// Layers, bias, layout and directions of a [`GRU`](super::GRU) or [`LSTM`](super::LSTM); the
/// default is PyTorch's: one layer, with biases, sequence-first, one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RnnConfig {
    /// Stacked layers; each after the first reads the previous one's output.
    pub num_layers: usize,
    /// Whether there are `bias_ih_l*` and `bias_hh_l*` parameters.
    pub bias: bool,
    /// Whether inputs and outputs are `[N, L, *]` rather than `[L, N, *]`.
    pub batch_first: bool,
    /// Whether each layer also runs backwards (`*_reverse` keys), concatenating both outputs.
    pub bidirectional: bool,
}

impl Default for RnnConfig {
    fn default() -> Self {
        RnnConfig {
            num_layers: 1,
            bias: true,
            batch_first: false,
            bidirectional: false,
        }
    }
}

impl RnnConfig {
    /// Sets the number of stacked layers.
    #[must_use]
    pub fn num_layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }

    /// Sets whether there are biases.
    #[must_use]
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets whether inputs and outputs are batch-first.
    #[must_use]
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }

    /// Sets whether the layers are bidirectional.
    #[must_use]
    pub fn bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }
}

/// The gate equations of one kind of recurrent layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CellKind {
    /// Gates `r, z, n`.
    Gru,
    /// Gates `i, f, g, o`, with a cell state.
    Lstm,
}

impl CellKind {
    fn gates(self) -> usize {
        match self {
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CellKind::Gru => "GRU",
            CellKind::Lstm => "LSTM",
        }
    }
}

/// The weights of one direction of one layer.
#[derive(Clone, Debug)]
struct Cell {
    weight_ih: Array2<f32>,
    weight_hh: Array2<f32>,
    bias_ih: Option<Array1<f32>>,
    bias_hh: Option<Array1<f32>>,
}

/// The parameters of a stacked, possibly bidirectional, recurrent layer. Its keys are made at
/// run time (`weight_ih_l1_reverse`), so `StateDict` is written by hand, in PyTorch's order:
/// layer by layer, forward direction before reverse, `weight_ih`, `weight_hh`, `bias_ih`,
/// `bias_hh`.
#[derive(Clone, Debug)]
pub(crate) struct Rnn {
    kind: CellKind,
    /// Layer-major, direction-minor.
    cells: Vec<Cell>,
    hidden_size: usize,
    options: RnnConfig,
}

/// The final states of every layer and direction, `[D * num_layers, N, H]`.
pub(crate) struct Final {
    pub(crate) h: Array3<f32>,
    pub(crate) c: Option<Array3<f32>>,
}

impl Rnn {
    /// PyTorch's initialisation: every parameter from `U(-1/sqrt(H), 1/sqrt(H))`.
    pub(crate) fn new(
        kind: CellKind,
        input_size: usize,
        hidden_size: usize,
        options: RnnConfig,
        rng: &mut Rng,
    ) -> Result<Self, NnError> {
        if options.num_layers == 0 {
            return Err(NnError::config(
                kind.name(),
                "num_layers must be greater than or equal to 1",
            ));
        }
        let bound = init::fan_in_bound(hidden_size);
        let gh = kind.gates() * hidden_size;
        let dirs = if options.bidirectional { 2 } else { 1 };
        let mut cells = Vec::with_capacity(options.num_layers * dirs);
        for layer in 0..options.num_layers {
            let layer_input = if layer == 0 {
                input_size
            } else {
                hidden_size * dirs
            };
            for _ in 0..dirs {
                cells.push(Cell {
                    weight_ih: init::uniform((gh, layer_input), bound, rng),
                    weight_hh: init::uniform((gh, hidden_size), bound, rng),
                    bias_ih: options.bias.then(|| init::uniform(gh, bound, rng)),
                    bias_hh: options.bias.then(|| init::uniform(gh, bound, rng)),
                });
            }
        }
        Ok(Rnn {
            kind,
            cells,
            hidden_size,
            options,
        })
    }

    fn directions(&self) -> usize {
        if self.options.bidirectional { 2 } else { 1 }
    }

    pub(crate) fn input_size(&self) -> usize {
        self.cells.first().map_or(0, |cell| cell.weight_ih.ncols())
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    pub(crate) fn options(&self) -> RnnConfig {
        self.options
    }

    /// The key suffix of cell `index`: `l{layer}` and `_reverse` for the backward direction.
    fn suffix(&self, index: usize) -> String {
        let dirs = self.directions();
        let reverse = if index % dirs == 1 { "_reverse" } else { "" };
        format!("l{}{reverse}", index / dirs)
    }

    /// Runs every layer over `x` (`[L, N, in]`, or `[N, L, in]` when batch-first) from the
    /// initial states `h0` (and `c0` for an LSTM), zeros when absent.
    pub(crate) fn forward<S: Data<Elem = f32>>(
        &self,
        x: &ArrayBase<S, Ix3>,
        h0: Option<ArrayView3<'_, f32>>,
        c0: Option<ArrayView3<'_, f32>>,
    ) -> Result<(Array3<f32>, Final), NnError> {
        let name = self.kind.name();
        let x = if self.options.batch_first {
            x.view().permuted_axes([1, 0, 2])
        } else {
            x.view()
        };
        let (len, batch, features) = x.dim();
        if features != self.input_size() {
            let expected = if self.options.batch_first {
                format!("[N, L, {}]", self.input_size())
            } else {
                format!("[L, N, {}]", self.input_size())
            };
            return Err(NnError::shape(name, expected, x.shape()));
        }
        let (dirs, hs) = (self.directions(), self.hidden_size);
        let state_shape = (self.cells.len(), batch, hs);
        let initial = |state: Option<ArrayView3<'_, f32>>| match state {
            Some(s) if s.dim() == state_shape => Ok(s.to_owned()),
            Some(s) => Err(NnError::shape(
                name,
                format!("initial state {:?}", [state_shape.0, batch, hs]),
                s.shape(),
            )),
            None => Ok(Array3::zeros(state_shape)),
        };
        let h0 = initial(h0)?;
        let c0 = initial(c0)?;
        let mut h_n = Array3::zeros(state_shape);
        let mut c_n = Array3::zeros(state_shape);
        let mut input = x.to_owned();
        for layer in 0..self.options.num_layers {
            let mut output = Array3::zeros((len, batch, dirs * hs));
            for dir in 0..dirs {
                let index = layer * dirs + dir;
                let cell = &self.cells[index];
                let mut h = h0.index_axis(Axis(0), index).to_owned();
                let mut c = c0.index_axis(Axis(0), index).to_owned();
                let gi = project(&input, &cell.weight_ih, cell.bias_ih.as_ref());
                for step in 0..len {
                    let t = if dir == 1 { len - 1 - step } else { step };
                    let gh = h.dot(&cell.weight_hh.t());
                    let gh = match &cell.bias_hh {
                        Some(b) => gh + b,
                        None => gh,
                    };
                    self.step(gi.index_axis(Axis(0), t), gh.view(), &mut h, &mut c);
                    output
                        .slice_mut(s![t, .., dir * hs..(dir + 1) * hs])
                        .assign(&h);
                }
                h_n.index_axis_mut(Axis(0), index).assign(&h);
                c_n.index_axis_mut(Axis(0), index).assign(&c);
            }
            input = output;
        }
        let output = if self.options.batch_first {
            input
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
        } else {
            input
        };
        let c = (self.kind == CellKind::Lstm).then_some(c_n);
        Ok((output, Final { h: h_n, c }))
    }

    /// One time step: `gi` and `gh` are the input and hidden projections `[N, G * H]`.
    fn step(
        &self,
        gi: ArrayView2<'_, f32>,
        gh: ArrayView2<'_, f32>,
        h: &mut Array2<f32>,
        c: &mut Array2<f32>,
    ) {
        let hs = self.hidden_size;
        for ((mut row, (gi, gh)), mut c_row) in h
            .rows_mut()
            .into_iter()
            .zip(gi.rows().into_iter().zip(gh.rows()))
            .zip(c.rows_mut())
        {
            for j in 0..hs {
                match self.kind {
                    CellKind::Gru => {
                        let r = sigmoid(gi[j] + gh[j]);
                        let z = sigmoid(gi[hs + j] + gh[hs + j]);
                        let n = (gi[2 * hs + j] + r * gh[2 * hs + j]).tanh();
                        row[j] = (1.0 - z) * n + z * row[j];
                    }
                    CellKind::Lstm => {
                        let i = sigmoid(gi[j] + gh[j]);
                        let f = sigmoid(gi[hs + j] + gh[hs + j]);
                        let g = (gi[2 * hs + j] + gh[2 * hs + j]).tanh();
                        let o = sigmoid(gi[3 * hs + j] + gh[3 * hs + j]);
                        c_row[j] = f * c_row[j] + i * g;
                        row[j] = o * c_row[j].tanh();
                    }
                }
            }
        }
    }
}

/// `x W^T + b` for every time step at once: `[L, N, in]` to `[L, N, G * H]`.
fn project(x: &Array3<f32>, weight: &Array2<f32>, bias: Option<&Array1<f32>>) -> Array3<f32> {
    let (len, batch, _) = x.dim();
    let out = weight.nrows();
    let mut y = Array3::zeros((len, batch, out));
    for (mut y_t, x_t) in y.outer_iter_mut().zip(x.outer_iter()) {
        let mut p = x_t.dot(&weight.t());
        if let Some(b) = bias {
            p += b;
        }
        y_t.assign(&p);
    }
    y
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl StateDict for Rnn {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        for (index, cell) in self.cells.iter().enumerate() {
            let suffix = self.suffix(index);
            let mut leaf = |name: &str, tensor: &'a dyn StateDict| {
                path.push(format_args!("{name}_{suffix}"));
                tensor.visit(path, role, visitor);
                path.pop();
            };
            leaf("weight_ih", &cell.weight_ih);
            leaf("weight_hh", &cell.weight_hh);
            if let Some(b) = &cell.bias_ih {
                leaf("bias_ih", b);
            }
            if let Some(b) = &cell.bias_hh {
                leaf("bias_hh", b);
            }
        }
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        for index in 0..self.cells.len() {
            let suffix = self.suffix(index);
            let cell = &mut self.cells[index];
            let mut leaf = |name: &str, tensor: &mut dyn StateDict| {
                path.push(format_args!("{name}_{suffix}"));
                tensor.visit_mut(path, role, visitor);
                path.pop();
            };
            leaf("weight_ih", &mut cell.weight_ih);
            leaf("weight_hh", &mut cell.weight_hh);
            if let Some(b) = &mut cell.bias_ih {
                leaf("bias_ih", b);
            }
            if let Some(b) = &mut cell.bias_hh {
                leaf("bias_hh", b);
            }
        }
    }
    /// Version 1, as `torch.nn.RNN`, `LSTM` and `GRU`.
    fn version(&self) -> Option<i64> {
        Some(1)
    }
}
