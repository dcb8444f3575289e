//! [`Sequential`] and the [`Layer`] trait it chains.

use ndarray::ArrayD;

use super::NnError;
use crate::StateDict;
use crate::state::{KeyPath, Role, Visitor, VisitorMut};

/// A layer that [`Sequential`] can chain: a [`StateDict`] with a forward pass on `f32` arrays of
/// any dimensionality.
pub trait Layer: StateDict {
    /// Applies the layer. Takes `&mut self` because training-mode layers update state (batch
    /// norm's running statistics, dropout's generator).
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError>;
}

/// Layers applied in order, keyed `0`, `1`, … as `torch.nn.Sequential`: a layer without
/// tensors (such as [`ReLU`](super::ReLU)) still takes its index, so the keys are PyTorch's
/// (`0.weight`, `2.bias`) without writing a string.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{Linear, ReLU, Rng, Sequential};
///
/// let rng = &mut Rng::seed(0);
/// let mut mlp = Sequential::new()
///     .push(Linear::new(8, 16, rng))
///     .push(ReLU)
///     .push(Linear::new(16, 4, rng));
/// let keys: Vec<_> = mlp.state_dict().keys().map(str::to_owned).collect();
/// assert_eq!(keys, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// let y = mlp.forward(ndarray::ArrayD::zeros(vec![3, 8])).unwrap();
/// assert_eq!(y.shape(), &[3, 4]);
/// ```
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty sequence, the identity.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer; it is keyed by its index.
    #[must_use]
    pub fn push(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layer at `index`.
    pub fn get(&self, index: usize) -> Option<&dyn Layer> {
        self.layers.get(index).map(|layer| &**layer)
    }

    /// The layer at `index`, mutably.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut (dyn Layer + 'static)> {
        self.layers.get_mut(index).map(|layer| &mut **layer)
    }

    /// Applies every layer in order.
    pub fn forward(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        self.layers
            .iter_mut()
            .try_fold(x, |x, layer| layer.forward_dyn(x))
    }
}

impl StateDict for Sequential {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        self.layers.visit(path, role, visitor);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        self.layers.visit_mut(path, role, visitor);
    }

    fn set_training(&mut self, training: bool) {
        self.layers.set_training(training);
    }

    fn training_mode(&self) -> Option<bool> {
        self.layers.training_mode()
    }

    fn module_name(&self) -> &'static str {
        "Sequential"
    }

    fn version(&self) -> Option<i64> {
        Some(1)
    }

    fn visit_modules<'a>(
        &'a self,
        path: &mut KeyPath,
        visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
    ) {
        self.layers.visit_modules(path, visitor);
    }
}

impl Layer for Sequential {
    fn forward_dyn(&mut self, x: ArrayD<f32>) -> Result<ArrayD<f32>, NnError> {
        self.forward(x)
    }
}
