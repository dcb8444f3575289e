//! [`Optimizer`]: the bookkeeping every algorithm shares: which parameters, their state, the
//! two-phase step and the state-dict layouts.

use std::collections::HashMap;

use indexmap::IndexMap;
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::OptimError;
use crate::{
    DType, DTypeKind, Key, KeyPath, Leaf, Role, StateDict, TensorSource, TensorView, Value,
};

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
    config: A,
    params: Vec<(String, Vec<usize>)>,
    state: IndexMap<String, ParamState>,
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

    /// The state in ckpt's layout, borrowing the tensors: `{"state": {key: {name: tensor}},
    /// "param_groups": [{hyper-parameters, "params": [key, …]}]}`.
    pub fn state_dict(&self) -> Value<'_> {
        let state = self
            .state
            .iter()
            .map(|(key, entries)| (key.clone(), entries_value(entries)))
            .collect::<Value<'_>>();
        let names = self.param_names().map(Value::from).collect::<Vec<_>>();
        self.layout(state, names)
    }

    /// The state in `torch.optim`'s layout: `{"state": {0: {"step": tensor, …}, …},
    /// "param_groups": [{"lr": …, …, "params": [0, 1, …]}]}`, integer keys being indices in
    /// parameter order. `torch.optim.Optimizer.load_state_dict` takes it as it is.
    pub fn pytorch_state_dict(&self) -> Value<'_> {
        let state = self
            .params
            .iter()
            .enumerate()
            .filter_map(|(index, (key, _))| {
                let entries = self.state.get(key)?;
                Some((Key::from(index_key(index)), entries_value(entries)))
            })
            .collect::<Value<'_>>();
        let ids = (0..self.params.len())
            .map(|i| Value::Int(index_key(i)))
            .collect();
        self.layout(state, ids)
    }

    fn layout<'s>(&'s self, state: Value<'s>, params: Vec<Value<'s>>) -> Value<'s> {
        let mut group = self.config.param_group().into_iter().collect::<Value<'_>>();
        group.insert("params", Value::List(params));
        crate::dict! { "state" => state, "param_groups" => vec![group] }
    }

    /// Loads a state written by [`state_dict`](Optimizer::state_dict). Everything is checked
    /// (one parameter group, the same parameter keys in the same order, known state names,
    /// shapes, float dtypes) before anything changes.
    pub fn load_state_dict(&mut self, state: &Value<'_>) -> Result<(), OptimError> {
        self.load(state, false)
    }

    /// Loads a state in `torch.optim`'s layout (see
    /// [`pytorch_state_dict`](Optimizer::pytorch_state_dict)), matching saved parameter ids to
    /// this optimizer's parameters by position, as PyTorch does. Checked like
    /// [`load_state_dict`](Optimizer::load_state_dict).
    pub fn load_pytorch_state_dict(&mut self, state: &Value<'_>) -> Result<(), OptimError> {
        self.load(state, true)
    }

    fn load(&mut self, value: &Value<'_>, pytorch: bool) -> Result<(), OptimError> {
        let groups = value["param_groups"].as_list().ok_or_else(|| {
            OptimError::layout(
                "param_groups",
                format!("expected a list, got {}", value["param_groups"].kind()),
            )
        })?;
        if groups.len() != 1 {
            return Err(OptimError::layout(
                "param_groups",
                format!(
                    "loaded state dict has a different number of parameter groups: 1 in the optimizer, {} in the state dict",
                    groups.len()
                ),
            ));
        }
        let group = &groups[0];
        let saved = group["params"].as_list().ok_or_else(|| {
            OptimError::layout(
                "param_groups.0.params",
                format!("expected a list, got {}", group["params"].kind()),
            )
        })?;
        if saved.len() != self.params.len() {
            return Err(OptimError::layout(
                "param_groups.0.params",
                format!(
                    "loaded state dict contains a parameter group that doesn't match the size of optimizer's group: {} parameters in the optimizer, {} in the state dict",
                    self.params.len(),
                    saved.len()
                ),
            ));
        }
        let mut ids = HashMap::new();
        for (index, (id, (name, _))) in saved.iter().zip(&self.params).enumerate() {
            let path = format!("param_groups.0.params.{index}");
            let key = match (pytorch, id) {
                (true, Value::Int(i)) => Key::Int(*i),
                (false, Value::String(s)) if s == name => Key::Str(s.clone()),
                (false, Value::String(s)) => {
                    return Err(OptimError::layout(
                        path,
                        format!("parameter {s:?} in the state dict, {name:?} in the optimizer"),
                    ));
                }
                (_, other) => {
                    let want = if pytorch {
                        "an integer id"
                    } else {
                        "a parameter key"
                    };
                    return Err(OptimError::layout(
                        path,
                        format!("expected {want}, got {}", other.kind()),
                    ));
                }
            };
            ids.insert(key, index);
        }
        let mut config = self.config.clone();
        config.load_param_group(group)?;
        let saved_state = match &value["state"] {
            Value::Map(map) => map,
            other => {
                return Err(OptimError::layout(
                    "state",
                    format!("expected a map, got {}", other.kind()),
                ));
            }
        };
        let mut state = IndexMap::new();
        for (id, entries) in saved_state {
            let index = *ids.get(id).ok_or_else(|| {
                OptimError::layout(
                    format!("state.{id}"),
                    "no parameter with this id in param_groups",
                )
            })?;
            let (name, shape) = &self.params[index];
            let entries = read_entries(&config, name, shape, entries, &format!("state.{id}"))?;
            state.insert(name.clone(), entries);
        }
        self.config = config;
        self.state = state;
        Ok(())
    }
}

/// Parameter indices as PyTorch's integer keys; no model has more than `i64::MAX` parameters.
fn index_key(index: usize) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

fn entries_value(entries: &ParamState) -> Value<'_> {
    entries
        .iter()
        .map(|(name, array)| (name.clone(), Leaf::view(array)))
        .collect()
}

fn read_entries(
    config: &impl Algorithm,
    key: &str,
    shape: &[usize],
    entries: &Value<'_>,
    path: &str,
) -> Result<ParamState, OptimError> {
    let Value::Map(map) = entries else {
        return Err(OptimError::layout(
            path,
            format!("expected a map, got {}", entries.kind()),
        ));
    };
    let mut out = ParamState::new();
    for (name, value) in map {
        let known = config.state_entries();
        let Some(&(name, scalar)) = known.iter().find(|(n, _)| Key::from(*n) == *name) else {
            let names = known.iter().map(|(n, _)| *n).collect::<Vec<_>>();
            return Err(OptimError::layout(
                format!("{path}.{name}"),
                format!("unknown state entry; this optimizer keeps {names:?}"),
            ));
        };
        let expected: &[usize] = if scalar { &[] } else { shape };
        let array = match value {
            // Before PyTorch 1.12 `step` was a plain number.
            Value::Int(_) | Value::Float(_) if scalar => {
                let x = value.as_f64().unwrap_or_default() as f32;
                ArrayD::from_elem(IxDyn(&[]), x)
            }
            Value::Tensor(t) => to_f32(key, name, &t.view(), expected)?,
            other => {
                return Err(OptimError::layout(
                    format!("{path}.{name}"),
                    format!("expected a tensor, got {}", other.kind()),
                ));
            }
        };
        out.insert(name.to_owned(), array);
    }
    Ok(out)
}

fn check_tensor(
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
fn to_f32(
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
        .to_dtype(DType::F32)
        .map_err(tensor_error)?;
    owned.to_array::<f32, IxDyn>().map_err(tensor_error)
}

/// Reads a number from a `param_groups` entry into `target`, if the key is present.
pub(crate) fn read_number(
    group: &Value<'_>,
    key: &str,
    target: &mut f64,
) -> Result<(), OptimError> {
    match &group[key] {
        Value::None => Ok(()),
        value => {
            *target = value
                .as_f64()
                .ok_or_else(|| wrong(key, "a number", value))?;
            Ok(())
        }
    }
}

/// Reads a boolean from a `param_groups` entry into `target`, if the key is present.
pub(crate) fn read_flag(group: &Value<'_>, key: &str, target: &mut bool) -> Result<(), OptimError> {
    match &group[key] {
        Value::None => Ok(()),
        value => {
            *target = value.as_bool().ok_or_else(|| wrong(key, "a bool", value))?;
            Ok(())
        }
    }
}

pub(crate) fn wrong(key: &str, expected: &str, found: &Value<'_>) -> OptimError {
    OptimError::layout(
        format!("param_groups.0.{key}"),
        format!("expected {expected}, got {}", found.kind()),
    )
}
