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
    /// "param_groups": [{hyper-parameters, "params": [key, …]}, …]}`.
    pub fn state_dict(&self) -> Value<'_> {
        self.layout(|_, key| Key::from(key), |_, key| Value::from(key))
    }

    /// The state in `torch.optim`'s layout: `{"state": {0: {"step": tensor, …}, …},
    /// "param_groups": [{"lr": …, …, "params": [0, 1, …]}, …]}`, integer keys being indices in
    /// parameter order, group by group. `torch.optim.Optimizer.load_state_dict` takes it as it
    /// is. The groups' keys ckpt does not use (`initial_lr`, `foreach`, …) and state entries of
    /// other names are written as they were loaded.
    pub fn pytorch_state_dict(&self) -> Value<'_> {
        self.layout(
            |index, _| Key::Int(index_key(index)),
            |index, _| Value::Int(index_key(index)),
        )
    }

    fn layout<'s>(
        &'s self,
        state_key: impl Fn(usize, &str) -> Key,
        param_id: impl Fn(usize, &'s str) -> Value<'s>,
    ) -> Value<'s> {
        let state = self
            .params
            .keys()
            .enumerate()
            .filter_map(|(index, key)| {
                let entries = entries_value(self.state.get(key), self.kept_state.get(key))?;
                Some((state_key(index, key), entries))
            })
            .collect::<Value<'_>>();
        let mut start = 0;
        let groups = self
            .groups
            .iter()
            .map(|group| {
                let ids = group
                    .params()
                    .iter()
                    .enumerate()
                    .map(|(i, key)| param_id(start + i, key))
                    .collect();
                start += group.params().len();
                group.to_value(ids)
            })
            .collect::<Vec<_>>();
        crate::dict! { "state" => state, "param_groups" => groups }
    }

    /// Loads a state written by [`state_dict`](Optimizer::state_dict). Everything is checked
    /// (as many groups, the same parameter keys in the same order, shapes and float dtypes of
    /// the state tensors) before anything changes.
    pub fn load_state_dict(&mut self, state: &Value<'_>) -> Result<(), OptimError> {
        self.load(state, false)
    }

    /// Loads a state in `torch.optim`'s layout (see
    /// [`pytorch_state_dict`](Optimizer::pytorch_state_dict)), matching saved parameter ids to
    /// this optimizer's parameters by position, group by group, as PyTorch does. Every group
    /// takes the saved group's hyper-parameters and keeps its other keys; checked like
    /// [`load_state_dict`](Optimizer::load_state_dict).
    pub fn load_pytorch_state_dict(&mut self, state: &Value<'_>) -> Result<(), OptimError> {
        self.load(state, true)
    }

    fn load(&mut self, value: &Value<'_>, pytorch: bool) -> Result<(), OptimError> {
        let saved_groups = value["param_groups"].as_list().ok_or_else(|| {
            OptimError::layout(
                "param_groups",
                format!("expected a list, got {}", value["param_groups"].kind()),
            )
        })?;
        if saved_groups.len() != self.groups.len() {
            return Err(OptimError::layout(
                "param_groups",
                format!(
                    "loaded state dict has a different number of parameter groups: {} in the optimizer, {} in the state dict",
                    self.groups.len(),
                    saved_groups.len()
                ),
            ));
        }
        let mut ids = HashMap::new();
        let mut groups = Vec::with_capacity(self.groups.len());
        for (g, (group, saved)) in self.groups.iter().zip(saved_groups).enumerate() {
            let at = format!("param_groups.{g}");
            let saved_ids = saved["params"].as_list().ok_or_else(|| {
                OptimError::layout(
                    format!("{at}.params"),
                    format!("expected a list, got {}", saved["params"].kind()),
                )
            })?;
            if saved_ids.len() != group.params().len() {
                return Err(OptimError::layout(
                    format!("{at}.params"),
                    format!(
                        "loaded state dict contains a parameter group that doesn't match the size of optimizer's group: {} parameters in the optimizer, {} in the state dict",
                        group.params().len(),
                        saved_ids.len()
                    ),
                ));
            }
            for (i, (id, name)) in saved_ids.iter().zip(group.params()).enumerate() {
                let key = param_key(id, name, pytorch)
                    .map_err(|e| e.under(&format!("{at}.params.{i}")))?;
                if ids.insert(key, name.as_str()).is_some() {
                    return Err(OptimError::layout(
                        format!("{at}.params.{i}"),
                        "a parameter id given twice",
                    ));
                }
            }
            groups.push(group.loaded(saved).map_err(|e| e.under(&at))?);
        }
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
        let mut kept_state = IndexMap::new();
        for (id, entries) in saved_state {
            let name = *ids.get(id).ok_or_else(|| {
                OptimError::layout(
                    format!("state.{id}"),
                    "no parameter with this id in param_groups",
                )
            })?;
            let param = &self.params[name];
            let config = groups[param.group].config();
            let (known, other) =
                read_entries(config, name, &param.shape, entries, &format!("state.{id}"))?;
            if !known.is_empty() {
                state.insert(name.to_owned(), known);
            }
            if !other.is_empty() {
                kept_state.insert(name.to_owned(), other);
            }
        }
        self.groups = groups;
        self.state = state;
        self.kept_state = kept_state;
        Ok(())
    }
}

/// The key a saved parameter id stands for: an integer in PyTorch's layout, the parameter's own
/// key in ckpt's.
fn param_key(id: &Value<'_>, name: &str, pytorch: bool) -> Result<Key, OptimError> {
    match (pytorch, id) {
        (true, Value::Int(i)) => Ok(Key::Int(*i)),
        (false, Value::String(s)) if s == name => Ok(Key::Str(s.clone())),
        (false, Value::String(s)) => Err(OptimError::layout(
            "",
            format!("parameter {s:?} in the state dict, {name:?} in the optimizer"),
        )),
        (_, other) => {
            let want = if pytorch {
                "an integer id"
            } else {
                "a parameter key"
            };
            Err(OptimError::layout(
                "",
                format!("expected {want}, got {}", other.kind()),
            ))
        }
    }
}

/// Parameter indices as PyTorch's integer keys; no model has more than `i64::MAX` parameters.
fn index_key(index: usize) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

/// A parameter's saved entries: the algorithm's, then the kept ones; `None` if there are none.
fn entries_value<'s>(
    known: Option<&'s ParamState>,
    kept: Option<&'s IndexMap<Key, Value<'static>>>,
) -> Option<Value<'s>> {
    let known = known.into_iter().flatten();
    let kept = kept.into_iter().flatten();
    let mut entries = known
        .map(|(name, array)| (Key::from(name.as_str()), Value::from(Leaf::view(array))))
        .chain(kept.map(|(name, value)| (name.clone(), value.reborrow())))
        .peekable();
    entries.peek()?;
    Some(Value::Map(entries.collect()))
}

/// The entries the algorithm keeps, checked and converted; and the others, kept as they are.
fn read_entries(
    config: &impl Algorithm,
    key: &str,
    shape: &[usize],
    entries: &Value<'_>,
    path: &str,
) -> Result<(ParamState, IndexMap<Key, Value<'static>>), OptimError> {
    let Value::Map(map) = entries else {
        return Err(OptimError::layout(
            path,
            format!("expected a map, got {}", entries.kind()),
        ));
    };
    let mut known = ParamState::new();
    let mut other = IndexMap::new();
    for (name, value) in map {
        let found = config
            .state_entries()
            .iter()
            .find(|(n, _)| Key::from(*n) == *name);
        let Some(&(name, scalar)) = found else {
            other.insert(name.clone(), value.to_owned_value());
            continue;
        };
        let expected: &[usize] = if scalar { &[] } else { shape };
        let array = match value {
            // PyTorch treats a `None` entry (`momentum_buffer` of old versions) as absent.
            Value::None => continue,
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
        known.insert(name.to_owned(), array);
    }
    Ok((known, other))
}

/// A hyper-parameter whose PyTorch default is the int `0` (`momentum=0`, `weight_decay=0`): a
/// zero is written as that int, so that a group ckpt builds saves as PyTorch's constructor
/// builds it; other values are floats.
pub(super) fn zero_as_int(value: f64) -> Value<'static> {
    if value == 0.0 && value.is_sign_positive() {
        Value::Int(0)
    } else {
        Value::Float(value)
    }
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
    OptimError::layout(key, format!("expected {expected}, got {}", found.kind()))
}
