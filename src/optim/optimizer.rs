//! [`Optimizer`]: the bookkeeping every algorithm shares: which parameters, their state and the
//! checked step.

use std::collections::HashMap;

use indexmap::IndexMap;
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::OptimError;
use crate::dtype::DTypeKind;
use crate::state::{KeyPath, Leaf, Role, TensorSource};
use crate::tensor::TensorView;
use crate::{DType, StateDict, Value};

/// One parameter's state: named tensors (`momentum_buffer`, `step`, `exp_avg`, …), in the order
/// PyTorch creates them.
pub type ParamState = IndexMap<String, ArrayD<f32>>;

/// An update rule with its hyper-parameters: what distinguishes [`Sgd`](super::Sgd) from
/// [`Adam`](super::Adam). Implement it to add an optimizer; [`Optimizer`] does the rest.
pub trait Algorithm: Clone {
    /// The state entries the rule keeps, with `true` for 0-d scalars (`step`) and `false` for
    /// tensors shaped like the parameter; loading refuses any other name.
    fn state_entries(&self) -> &'static [(&'static str, bool)];

    /// Updates one parameter in place from its gradient, creating or updating its state.
    fn update(&self, param: &mut ArrayD<f32>, grad: &ArrayViewD<'_, f32>, state: &mut ParamState);

    /// The hyper-parameters as PyTorch's `param_groups` entry holds them, in its order, without
    /// `params`.
    fn param_group(&self) -> Vec<(&'static str, Value<'static>)>;

    /// Reads hyper-parameters from a `param_groups` entry; absent keys keep their value, as
    /// PyTorch fills in defaults for keys older versions did not save.
    fn load_param_group(&mut self, group: &Value<'_>) -> Result<(), OptimError>;
}

/// An optimizer: an [`Algorithm`], the parameters it updates (named and shaped as in the model
/// when it was built) and their state.
#[derive(Clone, Debug)]
pub struct Optimizer<A> {
    pub(super) config: A,
    /// Keys and shapes, in index order.
    pub(super) params: Vec<(String, Vec<usize>)>,
    pub(super) state: IndexMap<String, ParamState>,
}

impl<A: Algorithm> Optimizer<A> {
    /// An optimizer of every parameter of `model` (not its buffers), in
    /// [`named_parameters`](StateDict::named_parameters) order, which is the order of PyTorch's
    /// parameter indices.
    pub fn new<M: StateDict + ?Sized>(model: &M, config: A) -> Self {
        let params = model
            .named_parameters()
            .iter()
            .map(|(key, view)| (key.to_owned(), view.shape().to_vec()))
            .collect();
        Optimizer {
            config,
            params,
            state: IndexMap::new(),
        }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &A {
        &self.config
    }

    /// The hyper-parameters, to change (a learning-rate schedule sets `lr` here).
    pub fn config_mut(&mut self) -> &mut A {
        &mut self.config
    }

    /// The keys of the parameters it updates, in index order.
    pub fn param_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.params.iter().map(|(key, _)| key.as_str())
    }

    /// The state of the parameter `key`, once a step has updated it.
    pub fn state(&self, key: &str) -> Option<&ParamState> {
        self.state.get(key)
    }

    /// Updates the parameters of `model` from `grads`, keyed like `named_parameters()`.
    ///
    /// A parameter without a gradient is left alone, as PyTorch skips parameters whose `grad` is
    /// `None`; buffers are never touched. Every gradient is checked (known key, shape, float
    /// dtype) before the first write, so after an error the model and the state are unchanged.
    pub fn step<M: StateDict + ?Sized>(
        &mut self,
        model: &mut M,
        grads: &dyn TensorSource,
    ) -> Result<(), OptimError> {
        let mut pending = self.check(model, grads)?;
        let mut failure = None;
        let (config, state) = (&self.config, &mut self.state);
        model.visit_mut(
            &mut KeyPath::new(),
            Role::Parameter,
            &mut |key: &str, leaf: &mut dyn Leaf, role: Role| {
                if role != Role::Parameter || failure.is_some() {
                    return;
                }
                let Some(grad) = pending.remove(key) else {
                    return;
                };
                let tensor_error = |source| OptimError::Tensor {
                    key: key.to_owned(),
                    source,
                };
                let mut param = match leaf.view().to_array::<f32, IxDyn>() {
                    Ok(param) => param,
                    Err(e) => return failure = Some(tensor_error(e)),
                };
                let param_state = state.entry(key.to_owned()).or_default();
                config.update(&mut param, &(*grad).view(), param_state);
                if let Err(e) = leaf.copy_from(&Leaf::view(&param)) {
                    failure = Some(tensor_error(e));
                }
            },
        );
        failure.map_or(Ok(()), Err)
    }

    /// Checks the model and the gradients; returns the gradients as `f32` arrays by key.
    fn check<M: StateDict + ?Sized>(
        &self,
        model: &M,
        grads: &dyn TensorSource,
    ) -> Result<HashMap<String, ArrayD<f32>>, OptimError> {
        let params = model.named_parameters();
        if let Some(key) = grads.tensor_keys().find(|key| !params.contains_key(key)) {
            return Err(OptimError::UnexpectedGradient {
                key: key.into_owned(),
            });
        }
        let mut out = HashMap::new();
        for (key, shape) in &self.params {
            let param = params
                .get(key)
                .ok_or_else(|| OptimError::MissingParameter { key: key.clone() })?;
            check_tensor(key, "the model's parameter", param, shape)?;
            if param.dtype() != DType::F32 {
                return Err(OptimError::DType {
                    key: key.clone(),
                    what: "the parameter".to_owned(),
                    dtype: param.dtype(),
                });
            }
            if let Some(grad) = grads.get_tensor(key) {
                out.insert(key.clone(), to_f32(key, "the gradient", &grad, shape)?);
            }
        }
        Ok(out)
    }
}

pub(super) fn check_tensor(
    key: &str,
    what: &str,
    tensor: &TensorView<'_>,
    shape: &[usize],
) -> Result<(), OptimError> {
    if tensor.shape() != shape {
        return Err(OptimError::Shape {
            key: key.to_owned(),
            what: what.to_owned(),
            expected: shape.to_vec(),
            actual: tensor.shape().to_vec(),
        });
    }
    if tensor.dtype().kind() != DTypeKind::Float {
        return Err(OptimError::DType {
            key: key.to_owned(),
            what: what.to_owned(),
            dtype: tensor.dtype(),
        });
    }
    Ok(())
}

/// Checks shape and float dtype, then copies to `f32`.
pub(super) fn to_f32(
    key: &str,
    what: &str,
    tensor: &TensorView<'_>,
    shape: &[usize],
) -> Result<ArrayD<f32>, OptimError> {
    check_tensor(key, what, tensor, shape)?;
    let tensor_error = |source| OptimError::Tensor {
        key: key.to_owned(),
        source,
    };
    let owned = tensor
        .to_tensor()
        .map_err(|e| tensor_error(e.into()))?
        .to_dtype(DType::F32)
        .map_err(tensor_error)?;
    owned.to_array::<f32, IxDyn>().map_err(tensor_error)
}
