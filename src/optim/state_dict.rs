//! Saving and loading an [`Optimizer`]'s state, in ckpt's layout and in `torch.optim`'s.

use std::collections::HashMap;

use indexmap::IndexMap;
use ndarray::{ArrayD, IxDyn};

use super::optimizer::to_f32;
use super::{Algorithm, OptimError, Optimizer, ParamState};
use crate::Value;
use crate::state::Leaf;
use crate::value::Key;

impl<A: Algorithm> Optimizer<A> {
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

/// Reads a number from a `param_groups` entry into `target`, if the key is present.
pub(super) fn read_number(
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
pub(super) fn read_flag(group: &Value<'_>, key: &str, target: &mut bool) -> Result<(), OptimError> {
    match &group[key] {
        Value::None => Ok(()),
        value => {
            *target = value.as_bool().ok_or_else(|| wrong(key, "a bool", value))?;
            Ok(())
        }
    }
}

pub(super) fn wrong(key: &str, expected: &str, found: &Value<'_>) -> OptimError {
    OptimError::layout(
        format!("param_groups.0.{key}"),
        format!("expected {expected}, got {}", found.kind()),
    )
}
