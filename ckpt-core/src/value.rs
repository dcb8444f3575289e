//! [`Value`]: the tree a checkpoint holds, like the Python dict passed to `torch.save`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Index;

use indexmap::IndexMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::map::TensorMap;
use crate::module::KeyPath;
use crate::source::TensorSource;
use crate::tensor::{Tensor, TensorView};

/// A map key: PyTorch checkpoints use strings, and integers for optimizer state (`state.0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A string key.
    Str(String),
    /// An integer key.
    Int(i64),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Str(s) => f.write_str(s),
            Key::Int(i) => write!(f, "{i}"),
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::Str(s.to_owned())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Key::Str(s)
    }
}

impl From<i64> for Key {
    fn from(i: i64) -> Self {
        Key::Int(i)
    }
}

impl Key {
    fn as_str(&self) -> Option<&str> {
        match self {
            Key::Str(s) => Some(s),
            Key::Int(_) => None,
        }
    }
}

/// A tensor in a [`Value`]: owned (loaded from a file) or borrowed (from a model's
/// `state_dict()`, about to be saved).
#[derive(Clone)]
pub enum TensorCow<'a> {
    /// An owned tensor.
    Owned(Tensor),
    /// A borrowed view.
    Borrowed(TensorView<'a>),
}

impl TensorCow<'_> {
    /// A view of the tensor.
    pub fn view(&self) -> TensorView<'_> {
        match self {
            TensorCow::Owned(t) => t.view(),
            TensorCow::Borrowed(v) => v.view(),
        }
    }

    /// The tensor, copying a borrowed one.
    pub fn into_owned(self) -> Tensor {
        match self {
            TensorCow::Owned(t) => t,
            TensorCow::Borrowed(v) => v.to_owned_tensor(),
        }
    }
}

impl fmt::Debug for TensorCow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

impl PartialEq for TensorCow<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

/// What a checkpoint holds: `None`, booleans, integers, floats, strings, lists, ordered maps
/// with string or integer keys, and tensors, as the Python objects `torch.save` stores.
///
/// Loaded checkpoints are `Value<'static>` and own their tensors; a `Value<'a>` built for saving
/// may borrow them from a model. Build maps with [`dict!`](crate::dict), read typed values through
/// serde with [`Value::get`], index with `value["model_state_dict"]`, and hand a map of tensors
/// to `load_state_dict` directly.
///
/// ```
/// use ckpt_core::{Tensor, Value, dict};
///
/// let weight = Tensor::from(ndarray::array![1.0f32, 2.0]);
/// let checkpoint = dict! {
///     "epoch" => 7,
///     "loss" => 0.125,
///     "model_state_dict" => dict! { "fc.weight" => &weight },
/// };
/// assert_eq!(checkpoint.get::<u32>("epoch").unwrap(), 7);
/// assert_eq!(checkpoint["model_state_dict"]["fc.weight"].as_tensor().unwrap().shape(), &[2]);
/// assert!(checkpoint["no such key"].is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value<'a> {
    /// Python's `None`.
    #[default]
    None,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    String(String),
    /// A list or tuple.
    List(Vec<Value<'a>>),
    /// A dict, in insertion order.
    Map(IndexMap<Key, Value<'a>>),
    /// A tensor.
    Tensor(TensorCow<'a>),
}

/// Why a [`Value`] could not be read as the type asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A map has no such key.
    #[error("no value under key {key:?}")]
    Missing {
        /// The key.
        key: String,
    },
    /// The value does not fit the requested type.
    #[error("{message}")]
    Type {
        /// What serde said.
        message: String,
    },
    /// A tensor sits where serde expected plain values.
    #[error("a tensor at {path:?} cannot be read through serde; use as_tensor()")]
    Tensor {
        /// Where the tensor is.
        path: String,
    },
    /// Serde produced something a checkpoint cannot hold.
    #[error("cannot store {what} in a checkpoint")]
    Unsupported {
        /// What it was.
        what: String,
    },
}

static NONE: Value<'static> = Value::None;

impl<'a> Value<'a> {
    /// An empty map.
    pub fn map() -> Self {
        Value::Map(IndexMap::new())
    }

    /// Whether this is `None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// The value under a string key of a map.
    pub fn get_value(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(map) => map.get(&Key::Str(key.to_owned())),
            _ => None,
        }
    }

    /// The value under `key`, read through serde as `T`.
    ///
    /// ```
    /// # use ckpt_core::dict;
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Config { hidden: usize, dropout: f32 }
    ///
    /// let v = dict! { "config" => dict! { "hidden" => 64, "dropout" => 0.5 } };
    /// assert_eq!(v.get::<Config>("config").unwrap(), Config { hidden: 64, dropout: 0.5 });
    /// assert!(v.get::<String>("config").is_err());
    /// ```
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, ValueError> {
        self.get_value(key)
            .ok_or_else(|| ValueError::Missing {
                key: key.to_owned(),
            })?
            .deserialize()
            .map_err(|e| match e {
                ValueError::Type { message } => ValueError::Type {
                    message: format!("{key}: {message}"),
                },
                other => other,
            })
    }

    /// The whole value read through serde as `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ValueError> {
        let plain = to_cbor(self, &mut KeyPath::new())?;
        plain.deserialized().map_err(|e| ValueError::Type {
            message: serde_message(e),
        })
    }

    /// A value holding `value` as serde serializes it: any `Serialize` user struct becomes a map.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Value<'static>, ValueError> {
        let plain = ciborium::Value::serialized(value).map_err(|e| ValueError::Type {
            message: serde_message(e),
        })?;
        from_cbor(plain)
    }

    /// Inserts into a map, turning `None` into a map first; returns the old value.
    ///
    /// # Panics
    ///
    /// If `self` is neither a map nor `None`.
    pub fn insert(
        &mut self,
        key: impl Into<Key>,
        value: impl Into<Value<'a>>,
    ) -> Option<Value<'a>> {
        if self.is_none() {
            *self = Value::map();
        }
        match self {
            Value::Map(map) => map.insert(key.into(), value.into()),
            other => panic!("insert into a {} value; only maps take keys", other.kind()),
        }
    }

    /// The tensor, if this is one.
    pub fn as_tensor(&self) -> Option<TensorView<'_>> {
        match self {
            Value::Tensor(t) => Some(t.view()),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(x) => Some(*x),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The entries, if this is a map.
    pub fn as_map(&self) -> Option<&IndexMap<Key, Value<'a>>> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    /// A name for the kind of value, for messages: `"map"`, `"tensor"`, ….
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Tensor(_) => "tensor",
        }
    }

    /// An owned copy: borrowed tensors are copied, owned ones shared.
    pub fn to_owned_value(&self) -> Value<'static> {
        match self {
            Value::None => Value::None,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(x) => Value::Float(*x),
            Value::String(s) => Value::String(s.clone()),
            Value::List(items) => Value::List(items.iter().map(Value::to_owned_value).collect()),
            Value::Map(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), v.to_owned_value()))
                    .collect(),
            ),
            Value::Tensor(TensorCow::Owned(t)) => Value::Tensor(TensorCow::Owned(t.clone())),
            Value::Tensor(TensorCow::Borrowed(v)) => {
                Value::Tensor(TensorCow::Owned(v.to_owned_tensor()))
            }
        }
    }

    /// A value borrowing this one's tensors: cheap, since tensor data is not copied.
    pub fn reborrow(&self) -> Value<'_> {
        match self {
            Value::None => Value::None,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(x) => Value::Float(*x),
            Value::String(s) => Value::String(s.clone()),
            Value::List(items) => Value::List(items.iter().map(Value::reborrow).collect()),
            Value::Map(map) => {
                Value::Map(map.iter().map(|(k, v)| (k.clone(), v.reborrow())).collect())
            }
            Value::Tensor(t) => Value::Tensor(TensorCow::Borrowed(t.view())),
        }
    }

    /// Every tensor with its flattened key (`optimizer_state_dict.state.0.exp_avg`), in order.
    pub fn tensors(&self) -> Vec<(String, TensorView<'_>)> {
        let mut out = Vec::new();
        self.walk(&mut KeyPath::new(), &mut |path, value| {
            if let Value::Tensor(t) = value {
                out.push((path.to_owned(), t.view()));
            }
        });
        out
    }

    /// The flattened key of the first tensor that reads `view`'s data, for errors about
    /// data found by its storage (a write that failed on a GPU).
    pub(crate) fn key_of(&self, view: &TensorView<'_>) -> Option<String> {
        let mut found = None;
        self.walk(&mut KeyPath::new(), &mut |path, value| {
            if let Value::Tensor(t) = value
                && found.is_none()
                && t.view().shares_storage(view)
            {
                found = Some(path.to_owned());
            }
        });
        found
    }

    /// Calls `f` with every leaf (anything but a list or a map) and its flattened key below
    /// `path`, in order: `value.walk(&mut KeyPath::new(), &mut |key, leaf| ...)`.
    pub fn walk<'s>(&'s self, path: &mut KeyPath, f: &mut dyn FnMut(&str, &'s Value<'a>)) {
        let mut descend = |path: &mut KeyPath, segment: &dyn fmt::Display, child: &'s Value<'a>| {
            path.push(segment);
            child.walk(path, f);
            path.pop();
        };
        match self {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    descend(path, &i, item);
                }
            }
            Value::Map(map) => {
                for (k, v) in map {
                    descend(path, k, v);
                }
            }
            leaf => f(path.as_str(), leaf),
        }
    }

    /// Looks up a flattened key: an exact map key first (state dicts keep dots in their keys),
    /// else one segment at a time.
    fn lookup(&self, key: &str) -> Option<&Value<'a>> {
        if let Some(found) = self.get_value(key) {
            return Some(found);
        }
        match self {
            Value::Map(map) => map.iter().find_map(|(k, v)| {
                let rest = key.strip_prefix(&k.to_string())?.strip_prefix('.')?;
                v.lookup(rest)
            }),
            Value::List(items) => {
                let (first, rest) = key.split_once('.').unwrap_or((key, ""));
                let item = items.get(first.parse::<usize>().ok()?)?;
                if rest.is_empty() {
                    Some(item)
                } else {
                    item.lookup(rest)
                }
            }
            _ => None,
        }
    }
}

impl<'a> Index<&str> for Value<'a> {
    type Output = Value<'a>;

    /// The value under a string key; `Value::None` if there is none or this is not a map, as
    /// `serde_json` does.
    fn index(&self, key: &str) -> &Value<'a> {
        self.get_value(key).unwrap_or(&NONE)
    }
}

impl<'a> Index<usize> for Value<'a> {
    type Output = Value<'a>;

    /// A list item, or the value under an integer map key (optimizer state: `state[0]`);
    /// `Value::None` if there is none.
    fn index(&self, index: usize) -> &Value<'a> {
        let found = match self {
            Value::List(items) => items.get(index),
            Value::Map(map) => i64::try_from(index)
                .ok()
                .and_then(|i| map.get(&Key::Int(i))),
            _ => None,
        };
        found.unwrap_or(&NONE)
    }
}

impl TensorSource for Value<'_> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.lookup(key).and_then(Value::as_tensor)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        // A flat state dict (the usual case) lends its keys; nested trees build theirs.
        if let Value::Map(map) = self {
            if map.values().all(|v| matches!(v, Value::Tensor(_))) {
                return Box::new(map.keys().map(|k| match k.as_str() {
                    Some(s) => Cow::Borrowed(s),
                    None => Cow::Owned(k.to_string()),
                }));
            }
        }
        Box::new(self.tensors().into_iter().map(|(k, _)| Cow::Owned(k)))
    }
}

macro_rules! from_int {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Value<'_> {
            fn from(i: $ty) -> Self {
                Value::Int(i64::from(i))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<usize> for Value<'_> {
    /// # Panics
    ///
    /// Above `i64::MAX`, which no count of anything in memory reaches.
    fn from(i: usize) -> Self {
        Value::Int(i64::try_from(i).expect("usize above i64::MAX"))
    }
}

impl From<f64> for Value<'_> {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl From<f32> for Value<'_> {
    fn from(x: f32) -> Self {
        Value::Float(f64::from(x))
    }
}

impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<&str> for Value<'_> {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<Tensor> for Value<'_> {
    fn from(t: Tensor) -> Self {
        Value::Tensor(TensorCow::Owned(t))
    }
}

impl<'a> From<&'a Tensor> for Value<'a> {
    fn from(t: &'a Tensor) -> Self {
        Value::Tensor(TensorCow::Borrowed(t.view()))
    }
}

impl<'a> From<TensorView<'a>> for Value<'a> {
    fn from(v: TensorView<'a>) -> Self {
        Value::Tensor(TensorCow::Borrowed(v))
    }
}

impl<'a> From<&'a Value<'_>> for Value<'a> {
    /// Borrows the tensors: saving `&value` copies no tensor data.
    fn from(value: &'a Value<'_>) -> Self {
        value.reborrow()
    }
}

impl<'a> From<TensorMap<'a>> for Value<'a> {
    /// A state dict becomes a flat map of dotted keys, as PyTorch saves it.
    fn from(map: TensorMap<'a>) -> Self {
        Value::Map(
            map.into_iter()
                .map(|(k, v)| (Key::Str(k), Value::from(v)))
                .collect(),
        )
    }
}

impl<'a, V: Into<Value<'a>>> From<Vec<V>> for Value<'a> {
    fn from(items: Vec<V>) -> Self {
        Value::List(items.into_iter().map(Into::into).collect())
    }
}

impl<'a, V: Into<Value<'a>>> From<Option<V>> for Value<'a> {
    fn from(v: Option<V>) -> Self {
        v.map_or(Value::None, Into::into)
    }
}

impl<'a, K: Into<Key>, V: Into<Value<'a>>> FromIterator<(K, V)> for Value<'a> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Value::Map(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// Builds a [`Value::Map`], as a Python dict literal: `dict! { "epoch" => 7, "loss" => 0.1 }`.
/// Values are anything that converts into a [`Value`]: numbers, strings, tensors, a model's
/// `state_dict()`, other `dict!`s.
#[macro_export]
macro_rules! dict {
    () => { $crate::Value::map() };
    ($($key:expr => $value:expr),+ $(,)?) => {{
        let mut map = $crate::Value::map();
        $( map.insert($key, $value); )+
        map
    }};
}

/// Serde's own message, without ciborium's `Custom("...")` wrapping.
fn serde_message(error: ciborium::value::Error) -> String {
    match error {
        ciborium::value::Error::Custom(message) => message,
    }
}

fn to_cbor(value: &Value<'_>, path: &mut KeyPath) -> Result<ciborium::Value, ValueError> {
    use ciborium::Value as C;
    let child = |path: &mut KeyPath, segment: String, v: &Value<'_>| {
        path.push(segment);
        let out = to_cbor(v, path);
        path.pop();
        out
    };
    Ok(match value {
        Value::None => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Int(i) => C::Integer((*i).into()),
        Value::Float(x) => C::Float(*x),
        Value::String(s) => C::Text(s.clone()),
        Value::List(items) => C::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| child(path, i.to_string(), v))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(map) => C::Map(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Key::Str(s) => C::Text(s.clone()),
                        Key::Int(i) => C::Integer((*i).into()),
                    };
                    Ok((key, child(path, k.to_string(), v)?))
                })
                .collect::<Result<_, ValueError>>()?,
        ),
        Value::Tensor(_) => {
            return Err(ValueError::Tensor {
                path: path.as_str().to_owned(),
            });
        }
    })
}

fn from_cbor(value: ciborium::Value) -> Result<Value<'static>, ValueError> {
    use ciborium::Value as C;
    let unsupported = |what: &str| ValueError::Unsupported {
        what: what.to_owned(),
    };
    Ok(match value {
        C::Null => Value::None,
        C::Bool(b) => Value::Bool(b),
        C::Integer(i) => Value::Int(
            i64::try_from(i128::from(i)).map_err(|_| unsupported("an integer beyond i64"))?,
        ),
        C::Float(x) => Value::Float(x),
        C::Text(s) => Value::String(s),
        C::Bytes(bytes) => Value::List(bytes.into_iter().map(Value::from).collect()),
        C::Array(items) => Value::List(items.into_iter().map(from_cbor).collect::<Result<_, _>>()?),
        C::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        C::Text(s) => Key::Str(s),
                        C::Integer(i) => Key::Int(
                            i64::try_from(i128::from(i))
                                .map_err(|_| unsupported("an integer key beyond i64"))?,
                        ),
                        other => return Err(unsupported(&format!("a map key {other:?}"))),
                    };
                    Ok((key, from_cbor(v)?))
                })
                .collect::<Result<_, _>>()?,
        ),
        C::Tag(_, inner) => from_cbor(*inner)?,
        other => return Err(unsupported(&format!("{other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Hyper {
        lr: f64,
        betas: (f64, f64),
        name: String,
        layers: Vec<u32>,
        dropout: Option<f32>,
    }

    #[test]
    fn serde_round_trip_of_a_user_struct() {
        let h = Hyper {
            lr: 1e-3,
            betas: (0.9, 0.999),
            name: "adam".into(),
            layers: vec![4, 8],
            dropout: None,
        };
        let v = Value::from_serialize(&h).unwrap();
        assert_eq!(v["name"].as_str(), Some("adam"));
        assert_eq!(v["layers"][1].as_i64(), Some(8));
        assert_eq!(v.deserialize::<Hyper>().unwrap(), h);
    }

    #[test]
    fn typed_errors_name_the_key() {
        let v = dict! { "epoch" => "seven", "w" => Tensor::scalar(1.0f32) };
        assert!(
            v.get::<u32>("epoch")
                .unwrap_err()
                .to_string()
                .starts_with("epoch: ")
        );
        assert_eq!(
            v.get::<u32>("step").unwrap_err(),
            ValueError::Missing { key: "step".into() }
        );
        assert_eq!(
            v.deserialize::<serde::de::IgnoredAny>().unwrap_err(),
            ValueError::Tensor { path: "w".into() }
        );
    }

    #[test]
    fn nested_trees_flatten_for_loading() {
        let a = Tensor::from(array![1.0f32]);
        let v = dict! {
            "model" => dict! { "fc.weight" => &a },
            "state" => Value::from_iter([(0i64, dict! { "exp_avg" => &a })]),
            "groups" => vec![dict! { "lr" => 0.1 }],
        };
        let keys: Vec<String> = v.tensor_keys().map(Cow::into_owned).collect();
        assert_eq!(keys, ["model.fc.weight", "state.0.exp_avg"]);
        assert!(v.get_tensor("model.fc.weight").is_some());
        assert!(v.get_tensor("state.0.exp_avg").is_some());
        assert!(v.get_tensor("groups.0.lr").is_none());
        assert_eq!(v["state"][0]["exp_avg"].as_tensor().unwrap().shape(), &[1]);
        assert_eq!(v["groups"][0]["lr"].as_f64(), Some(0.1));
    }

    /// Views shorten their borrow like references do, so `&Value<'static>` serves as any
    /// `&Value<'a>`.
    #[allow(dead_code)]
    fn covariant<'a, 'b: 'a>(v: Value<'b>) -> Value<'a> {
        v
    }

    #[test]
    fn to_owned_copies_borrowed_tensors_only() {
        let t = Tensor::from(array![1i64, 2]);
        let borrowed = Value::from(&t);
        let owned = borrowed.to_owned_value();
        assert_eq!(owned, borrowed);
        assert!(!owned.as_tensor().unwrap().shares_storage(&t.view()));
        let shared = Value::from(t.clone()).to_owned_value();
        assert!(shared.as_tensor().unwrap().shares_storage(&t.view()));
    }
}
