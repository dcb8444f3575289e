//! [`Optimizer`]: the bookkeeping every algorithm shares: which parameters, in which groups,
//! their state and the checked step.

use std::collections::HashMap;

use indexmap::IndexMap;
use ndarray::{ArrayD, IxDyn};

use super::{Algorithm, OptimError, ParamGroup, ParamGroups, ParamState};
use crate::dtype::DTypeKind;
use crate::state::{KeyPath, Leaf, Role, TensorSource};
use crate::tensor::TensorView;
use crate::value::Key;
use crate::{DType, StateDict, Value};

/// An optimizer: an [`Algorithm`], the parameters it updates in [groups](ParamGroup) with their
/// own hyper-parameters (named and shaped as in the model when it was built) and their state.
#[derive(Clone, Debug)]
pub struct Optimizer<A> {
    pub(super) groups: Vec<ParamGroup<A>>,
    /// Every parameter's key, shape and group, in index order: group by group.
    pub(super) params: IndexMap<String, Param>,
    pub(super) state: IndexMap<String, ParamState>,
    /// Loaded state entries the algorithm does not keep, by parameter: saved back untouched.
    pub(super) kept_state: IndexMap<String, IndexMap<Key, Value<'static>>>,
}

/// Where a parameter is.
#[derive(Clone, Debug)]
pub(super) struct Param {
    pub(super) shape: Vec<usize>,
    pub(super) group: usize,
}

impl<A: Algorithm> Optimizer<A> {
    /// An optimizer of every parameter of `model` (not its buffers), in
    /// [`named_parameters`](StateDict::named_parameters) order, which is the order of PyTorch's
    /// parameter indices, in one group.
    pub fn new<M: StateDict + ?Sized>(model: &M, config: A) -> Self {
        let mut optimizer = Self::empty();
        optimizer.push_group(model_params(model), ParamGroup::new(config));
        optimizer
    }

    /// An optimizer of several parameter groups with their own hyper-parameters, as
    /// `torch.optim.SGD([{"params": …, "lr": 0.01}, {"params": …}])`: parameters are indexed
    /// group by group. A parameter may be in one group only, and the model's parameters in no
    /// group are not optimized.
    pub fn with_groups<M: StateDict + ?Sized>(
        model: &M,
        groups: impl IntoIterator<Item = ParamGroup<A>>,
    ) -> Result<Self, OptimError> {
        let mut optimizer = Self::empty();
        for group in groups {
            optimizer.add_param_group(model, group)?;
        }
        if optimizer.groups.is_empty() {
            return Err(OptimError::NoGroups);
        }
        Ok(optimizer)
    }

    fn empty() -> Self {
        Optimizer {
            groups: Vec::new(),
            params: IndexMap::new(),
            state: IndexMap::new(),
            kept_state: IndexMap::new(),
        }
    }

    /// Adds a group, as `optimizer.add_param_group` (to train layers unfrozen part way). Its
    /// parameters are indexed after the existing ones; nothing changes on an error.
    pub fn add_param_group<M: StateDict + ?Sized>(
        &mut self,
        model: &M,
        group: ParamGroup<A>,
    ) -> Result<(), OptimError> {
        let model_params = model_params(model);
        let selected: Vec<_> = group.resolve(&model_params)?.into_iter().cloned().collect();
        let mut seen = std::collections::HashSet::new();
        for (key, _) in &selected {
            if self.params.contains_key(key) || !seen.insert(key) {
                return Err(OptimError::DuplicateParameter { key: key.clone() });
            }
        }
        self.push_group(selected, group);
        Ok(())
    }

    fn push_group(&mut self, params: Vec<(String, Vec<usize>)>, mut group: ParamGroup<A>) {
        let index = self.groups.len();
        group.set_params(params.iter().map(|(key, _)| key.clone()).collect());
        for (key, shape) in params {
            self.params.insert(
                key,
                Param {
                    shape,
                    group: index,
                },
            );
        }
        self.groups.push(group);
    }

    /// The parameter groups, in order.
    pub fn groups(&self) -> &[ParamGroup<A>] {
        &self.groups
    }

    /// The parameter groups, to change their hyper-parameters (not their parameters).
    pub fn groups_mut(&mut self) -> &mut [ParamGroup<A>] {
        &mut self.groups
    }

    /// The keys of the parameters it updates, in index order.
    pub fn param_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.params.keys().map(String::as_str)
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
        let (groups, params, state) = (&self.groups, &self.params, &mut self.state);
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
                let config = groups[params[key].group].config();
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
        for (key, Param { shape, .. }) in &self.params {
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

/// The model's parameters' keys and shapes, in order.
fn model_params<M: StateDict + ?Sized>(model: &M) -> Vec<(String, Vec<usize>)> {
    model
        .named_parameters()
        .iter()
        .map(|(key, view)| (key.to_owned(), view.shape().to_vec()))
        .collect()
}

impl<A: Algorithm> ParamGroups for Optimizer<A> {
    fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn option(&self, group: usize, key: &str) -> Option<Value<'static>> {
        self.groups.get(group)?.get(key)
    }

    fn set_option(
        &mut self,
        group: usize,
        key: &str,
        value: Value<'static>,
    ) -> Result<(), OptimError> {
        let count = self.groups.len();
        let entry = self.groups.get_mut(group).ok_or_else(|| {
            OptimError::layout(
                format!("param_groups.{group}"),
                format!("no such group: the optimizer has {count}"),
            )
        })?;
        entry
            .set(key, value)
            .map_err(|e| e.under(&format!("param_groups.{group}")))
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
