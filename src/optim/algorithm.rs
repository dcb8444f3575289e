//! [`Algorithm`]: what distinguishes one optimizer from another, and [`ParamState`], what it
//! keeps per parameter.

use indexmap::IndexMap;
use ndarray::{ArrayD, ArrayViewD};

use super::OptimError;
use crate::Value;

/// One parameter's state: named tensors (`momentum_buffer`, `step`, `exp_avg`, …), in the order
/// PyTorch creates them.
pub type ParamState = IndexMap<String, ArrayD<f32>>;

/// An update rule with its hyper-parameters: what distinguishes [`Sgd`](super::Sgd) from
/// [`Adam`](super::Adam). Implement it to add an optimizer; [`Optimizer`](super::Optimizer)
/// does the rest.
pub trait Algorithm: Clone {
    /// The state entries the rule keeps, with `true` for 0-d scalars (`step`) and `false` for
    /// tensors shaped like the parameter. Loaded entries of other names are kept and saved back
    /// untouched.
    fn state_entries(&self) -> &'static [(&'static str, bool)];

    /// Updates one parameter in place from its gradient, creating or updating its state.
    fn update(&self, param: &mut ArrayD<f32>, grad: &ArrayViewD<'_, f32>, state: &mut ParamState);

    /// A new `param_groups` entry as PyTorch's constructor makes it, every key in its order,
    /// without `params`: the [hyper-parameters](Algorithm::hyper_parameters) with their values
    /// and PyTorch's defaults for the rest (`foreach`, `differentiable`, `fused`, …).
    fn param_group(&self) -> Vec<(&'static str, Value<'static>)>;

    /// The keys of [`param_group`](Algorithm::param_group) that the rule reads and
    /// [`load_param_group`](Algorithm::load_param_group) sets; a group's other keys are kept and
    /// saved as they are.
    fn hyper_parameters(&self) -> &'static [&'static str];

    /// Reads hyper-parameters from a `param_groups` entry; absent keys keep their value, as
    /// PyTorch fills in defaults for keys older versions did not save. Errors name the key
    /// alone (`lr`); the optimizer adds where the group is.
    fn load_param_group(&mut self, group: &Value<'_>) -> Result<(), OptimError>;
}
