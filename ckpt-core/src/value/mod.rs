//! [`Value`]: the tree a checkpoint holds, like the Python dict passed to `torch.save`.

mod convert;
mod cow;
mod error;
mod key;
mod map;
mod source;
mod typed;

use std::fmt;
use std::ops::Index;

use indexmap::IndexMap;
pub use num_complex::Complex64;

pub use self::cow::TensorCow;
pub use self::error::ValueError;
pub use self::key::Key;
pub use self::map::Map;
use crate::dtype::TorchDType;
use crate::state::{KeyPath, Metadata};
use crate::tensor::TensorView;

/// What a checkpoint holds: `None`, booleans, integers, floats, strings, lists, ordered maps
/// with string or integer keys, and tensors, as the Python objects `torch.save` stores.
///
/// Loaded checkpoints are `Value<'static>` and own their tensors; a `Value<'a>` built for saving
/// may borrow them from a model. Build maps with [`dict!`](crate::dict), read typed values through
/// serde with [`Value::get`], index with `value["model_state_dict"]`, and hand a map of tensors
/// to `load_state_dict` directly.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Tensor, Value, dict};
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
#[non_exhaustive]
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
    /// A dict, in insertion order; a state dict's also carries the version of each module
    /// ([`Map::metadata`], PyTorch's `_metadata`).
    Map(Map<'a>),
    /// A tensor.
    Tensor(TensorCow<'a>),
    /// Python's `bytes`.
    Bytes(Vec<u8>),
    /// Python's `bytearray`: bytes too, kept apart so that a file written back holds the same
    /// type.
    ByteArray(Vec<u8>),
    /// A Python `complex`.
    Complex(Complex64),
    /// A Python `set`, its items in the order the file lists them.
    Set(Vec<Value<'a>>),
    /// A `collections.Counter`, such as the `milestones` of a `MultiStepLR`'s state dict: a
    /// map from items to their counts, which indexes and walks like a map.
    Counter(IndexMap<Key, Value<'a>>),
    /// A `torch.dtype` object (`torch.bfloat16`), saved as a value.
    DType(TorchDType),
    /// Something that cannot be saved, and that a load from is an error, saying why: what a
    /// [`Checkpoint`](crate::Checkpoint) gives for an entry it does not have
    /// (`checkpoint["typo"]`, which reads as `None`), and what a state dict in which two
    /// tensors had one key converts into.
    Defect(Defect),
}

/// Why a [`Value::Defect`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defect {
    reason: String,
}

impl Defect {
    pub(crate) fn new(reason: String) -> Self {
        Defect { reason }
    }

    /// The reason, in a user's words.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

static NONE: Value<'static> = Value::None;

impl<'a> Value<'a> {
    /// An empty map.
    pub fn map() -> Self {
        Value::Map(Map::new())
    }

    /// Whether this is `None`, or a [`Value::Defect`] such as a missing entry, which reads as
    /// `None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None | Value::Defect(_))
    }

    /// The first defect in this tree, with its flattened key: what makes it impossible to save.
    pub(crate) fn first_defect(&self) -> Option<(String, &Defect)> {
        let mut found = None;
        self.walk(&mut KeyPath::new(), &mut |key, leaf| {
            if let (None, Value::Defect(defect)) = (&found, leaf) {
                found = Some((key.to_owned(), defect));
            }
        });
        found
    }

    /// The value under a string key of a map.
    pub fn get_value(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(Map { entries: map, .. }) | Value::Counter(map) => {
                map.get(&Key::Str(key.to_owned()))
            }
            _ => None,
        }
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

    /// The version of each module, if this is a state dict that records them (PyTorch's
    /// `_metadata`; see [`Map::metadata`]).
    pub fn metadata(&self) -> Option<&Metadata> {
        match self {
            Value::Map(map) => map.metadata(),
            _ => None,
        }
    }

    /// The entries, if this is a map or a [`Counter`](Value::Counter).
    pub fn as_map(&self) -> Option<&IndexMap<Key, Value<'a>>> {
        match self {
            Value::Map(Map { entries: map, .. }) | Value::Counter(map) => Some(map),
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
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::Complex(_) => "complex",
            Value::Set(_) => "set",
            Value::Counter(_) => "Counter",
            Value::DType(_) => "dtype",
            Value::Defect(_) => "defect",
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
            Value::Map(map) => Value::Map(Map {
                entries: map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_owned_value()))
                    .collect(),
                metadata: map.metadata.clone(),
            }),
            Value::Tensor(TensorCow::Owned(t)) => Value::Tensor(TensorCow::Owned(t.clone())),
            // A copy a device fails (a lost GPU under a candle tensor) leaves a defect, which
            // a save refuses, naming the key and the failure.
            Value::Tensor(TensorCow::Borrowed(v)) => match v.to_owned_tensor() {
                Ok(t) => Value::Tensor(TensorCow::Owned(t)),
                Err(e) => {
                    Value::Defect(Defect::new(format!("the tensor could not be copied: {e}")))
                }
            },
            Value::Set(items) => Value::Set(items.iter().map(Value::to_owned_value).collect()),
            Value::Counter(map) => Value::Counter(
                map.iter()
                    .map(|(k, v)| (k.clone(), v.to_owned_value()))
                    .collect(),
            ),
            Value::Bytes(b) => Value::Bytes(b.clone()),
            Value::ByteArray(b) => Value::ByteArray(b.clone()),
            Value::Complex(z) => Value::Complex(*z),
            Value::DType(d) => Value::DType(*d),
            Value::Defect(d) => Value::Defect(d.clone()),
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
                let entries = map.iter().map(|(k, v)| (k.clone(), v.reborrow())).collect();
                Value::Map(Map {
                    entries,
                    metadata: map.metadata.clone(),
                })
            }
            Value::Tensor(t) => Value::Tensor(TensorCow::Borrowed(t.view())),
            Value::Set(items) => Value::Set(items.iter().map(Value::reborrow).collect()),
            Value::Counter(map) => {
                Value::Counter(map.iter().map(|(k, v)| (k.clone(), v.reborrow())).collect())
            }
            Value::Bytes(b) => Value::Bytes(b.clone()),
            Value::ByteArray(b) => Value::ByteArray(b.clone()),
            Value::Complex(z) => Value::Complex(*z),
            Value::DType(d) => Value::DType(*d),
            Value::Defect(d) => Value::Defect(d.clone()),
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
            Value::List(items) | Value::Set(items) => {
                for (i, item) in items.iter().enumerate() {
                    descend(path, &i, item);
                }
            }
            Value::Map(Map { entries: map, .. }) | Value::Counter(map) => {
                for (k, v) in map {
                    descend(path, k, v);
                }
            }
            leaf => f(path.as_str(), leaf),
        }
    }

    /// Looks up a flattened key: an exact map key first (state dicts keep dots in their keys),
    /// else one segment at a time.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::{Tensor, dict};
    ///
    /// let checkpoint = dict! { "model" => dict! { "fc.weight" => Tensor::scalar(1.0f32) } };
    /// assert!(checkpoint.lookup("model.fc.weight").unwrap().as_tensor().is_some());
    /// assert!(checkpoint.lookup("model.fc").is_none());
    /// ```
    pub fn lookup(&self, key: &str) -> Option<&Value<'a>> {
        if let Some(found) = self.get_value(key) {
            return Some(found);
        }
        match self {
            Value::Map(Map { entries: map, .. }) | Value::Counter(map) => {
                map.iter().find_map(|(k, v)| {
                    let rest = key.strip_prefix(&k.to_string())?.strip_prefix('.')?;
                    v.lookup(rest)
                })
            }
            Value::List(items) | Value::Set(items) => {
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
            Value::Map(Map { entries: map, .. }) | Value::Counter(map) => i64::try_from(index)
                .ok()
                .and_then(|i| map.get(&Key::Int(i))),
            _ => None,
        };
        found.unwrap_or(&NONE)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::dict;
    use crate::state::TensorSource;
    use crate::tensor::Tensor;
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
