//! Conversions into [`Value`], and [`dict!`](crate::dict).

use super::{Defect, Key, Map, TensorCow, Value};
use crate::state::TensorMap;
use crate::tensor::{Tensor, TensorView};

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
    /// A state dict becomes a flat map of dotted keys with its module versions, as PyTorch
    /// saves it; one in which two
    /// tensors had one key becomes a [`Value::Defect`] naming the keys, so that saving it is an
    /// error rather than a silent loss.
    fn from(map: TensorMap<'a>) -> Self {
        if let Some(reason) = map.save_defect() {
            return Value::Defect(Defect::new(reason));
        }
        let metadata = map.metadata().cloned();
        let mut entries: Map<'a> = map
            .into_iter()
            .map(|(k, v)| (Key::Str(k), Value::from(v)))
            .collect();
        entries.set_metadata(metadata);
        Value::Map(entries)
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
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Tensor, Value, dict};
///
/// let checkpoint = dict! {
///     "epoch" => 3,
///     "config" => dict! { "lr" => 0.01, "name" => "adam" },
///     "w" => Tensor::scalar(1.0f32),
/// };
/// assert_eq!(checkpoint["config"]["lr"].as_f64(), Some(0.01));
/// assert_eq!(dict! {}, Value::map());
/// ```
#[macro_export]
macro_rules! dict {
    () => { $crate::Value::map() };
    ($($key:expr => $value:expr),+ $(,)?) => {{
        let mut map = $crate::Value::map();
        $( map.insert($key, $value); )+
        map
    }};
}
