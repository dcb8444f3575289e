//! [`StateReader`]: reading a scheduler's state dict, entry by entry, with errors that name the
//! scheduler and the entry.

use indexmap::IndexMap;

use super::SchedulerError;
use crate::Value;
use crate::value::Key;

/// A scheduler's state dict being loaded: its entries read by key as the types PyTorch saves
/// them, each error naming the scheduler and the entry's path.
#[derive(Clone, Debug)]
pub struct StateReader<'v, 'a> {
    scheduler: &'static str,
    path: String,
    map: &'v IndexMap<Key, Value<'a>>,
}

impl<'v, 'a> StateReader<'v, 'a> {
    /// A reader of `state`, which must be a map; `path` is where it is in the whole state dict
    /// (`""` at the top, `"_schedulers.1"` inside a `SequentialLR`).
    pub fn new(
        scheduler: &'static str,
        path: impl Into<String>,
        state: &'v Value<'a>,
    ) -> Result<Self, SchedulerError> {
        let path = path.into();
        match state {
            Value::Map(map) => Ok(StateReader {
                scheduler,
                path,
                map,
            }),
            other => Err(SchedulerError::State {
                scheduler,
                path,
                message: format!("expected a map, got {}", other.kind()),
            }),
        }
    }

    /// The entries, in order.
    pub fn entries(&self) -> &'v IndexMap<Key, Value<'a>> {
        self.map
    }

    /// The entry `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<&'v Value<'a>> {
        self.map.get(&Key::from(key))
    }

    /// The entry `key`, which must be there.
    pub fn required(&self, key: &str) -> Result<&'v Value<'a>, SchedulerError> {
        self.get(key).ok_or_else(|| {
            self.error(
                key,
                format!("missing; is this a {} state dict?", self.scheduler),
            )
        })
    }

    /// The integer `key`.
    pub fn int(&self, key: &str) -> Result<i64, SchedulerError> {
        let value = self.required(key)?;
        value
            .as_i64()
            .ok_or_else(|| self.expected(key, "an int", value))
    }

    /// The number `key`, an int or a float, as Python computes with either.
    pub fn float(&self, key: &str) -> Result<f64, SchedulerError> {
        let value = self.required(key)?;
        value
            .as_f64()
            .ok_or_else(|| self.expected(key, "a number", value))
    }

    /// The boolean `key`.
    pub fn bool(&self, key: &str) -> Result<bool, SchedulerError> {
        let value = self.required(key)?;
        value
            .as_bool()
            .ok_or_else(|| self.expected(key, "a bool", value))
    }

    /// The string `key`.
    pub fn str(&self, key: &str) -> Result<&'v str, SchedulerError> {
        let value = self.required(key)?;
        value
            .as_str()
            .ok_or_else(|| self.expected(key, "a string", value))
    }

    /// The list of numbers `key` (`base_lrs`, `_last_lr`).
    pub fn floats(&self, key: &str) -> Result<Vec<f64>, SchedulerError> {
        let value = self.required(key)?;
        let items = value
            .as_list()
            .ok_or_else(|| self.expected(key, "a list of numbers", value))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_f64()
                    .ok_or_else(|| self.expected(&format!("{key}.{i}"), "a number", item))
            })
            .collect()
    }

    /// A reader of `value`, the map at `key` (a `OneCycleLR` phase, `phases.0`), for the same
    /// scheduler.
    pub fn child(
        &self,
        key: &str,
        value: &'v Value<'a>,
    ) -> Result<StateReader<'v, 'a>, SchedulerError> {
        StateReader::new(self.scheduler, self.join(key), value)
    }

    /// Where this map is in the whole state dict.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// An error at the entry `key`.
    pub fn error(&self, key: &str, message: impl Into<String>) -> SchedulerError {
        SchedulerError::State {
            scheduler: self.scheduler,
            path: self.join(key),
            message: message.into(),
        }
    }

    fn expected(&self, key: &str, what: &str, found: &Value<'_>) -> SchedulerError {
        self.error(key, format!("expected {what}, got {}", found.kind()))
    }

    fn join(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}
