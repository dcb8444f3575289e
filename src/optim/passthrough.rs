//! Writing state back in PyTorch's layout without losing what ckpt does not use: the keys an
//! optimizer's `param_groups` or a scheduler's state dict carry for other code (`initial_lr`,
//! added by every LR scheduler; `foreach`; attributes of a newer PyTorch) pass through as they
//! were loaded.

use indexmap::IndexMap;

use crate::Value;
use crate::value::Key;

/// `current` written over `kept`: `kept`'s keys in its order, each with `current`'s value where
/// `current` has the key, then `current`'s other keys in its order.
///
/// A current value equal to the kept one as Python compares them (`0 == 0.0`) is written as it
/// was kept, so that a loaded file saves back with its own types (PyTorch's SGD saves
/// `dampening` as the int `0`; ckpt computes with floats).
pub(crate) fn overlay<'a>(
    kept: &'a IndexMap<String, Value<'static>>,
    current: Vec<(&str, Value<'a>)>,
) -> Value<'a> {
    let mut current: IndexMap<&str, Value<'a>> = current.into_iter().collect();
    let mut out = IndexMap::with_capacity(kept.len() + current.len());
    for (key, old) in kept {
        let value = match current.shift_remove(key.as_str()) {
            Some(new) if !python_eq(old, &new) => new,
            _ => old.reborrow(),
        };
        out.insert(Key::from(key.as_str()), value);
    }
    for (key, value) in current {
        out.insert(Key::from(key), value);
    }
    Value::Map(out.into())
}

/// `a == b` as Python compares the plain values of a checkpoint, kinds apart: ints and floats
/// by value, containers item by item; a dict and a `Counter` differ (so a `Counter` replaces a
/// loaded dict), and tensors always do (a tensor is written as it is now).
pub(crate) fn python_eq(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Tensor(_), _) | (_, Value::Tensor(_)) => false,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            a.as_f64() == b.as_f64()
        }
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| python_eq(x, y))
        }
        (Value::Map(_), Value::Map(_)) | (Value::Counter(_), Value::Counter(_)) => {
            let (Some(x), Some(y)) = (a.as_map(), b.as_map()) else {
                return false;
            };
            x.len() == y.len()
                && x.iter()
                    .all(|(k, vx)| y.get(k).is_some_and(|vy| python_eq(vx, vy)))
        }
        (Value::Map(_) | Value::Counter(_), _) | (_, Value::Map(_) | Value::Counter(_)) => false,
        // None, bools, strings, bytes, complex numbers, dtypes, sets: of one kind, or unequal.
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict;

    #[test]
    fn kept_keys_and_types_survive() {
        let kept: IndexMap<String, Value<'static>> = [
            ("lr".to_owned(), Value::Float(0.1)),
            ("dampening".to_owned(), Value::Int(0)),
            ("initial_lr".to_owned(), Value::Float(0.1)),
        ]
        .into_iter()
        .collect();
        let current = vec![
            ("lr", Value::Float(0.05)),
            ("dampening", Value::Float(0.0)),
            ("momentum", Value::Float(0.9)),
        ];
        let out = overlay(&kept, current);
        assert_eq!(
            out,
            dict! { "lr" => 0.05, "dampening" => 0i64, "initial_lr" => 0.1, "momentum" => 0.9 }
        );
    }

    #[test]
    fn python_equality() {
        assert!(python_eq(&Value::Int(2), &Value::Float(2.0)));
        assert!(!python_eq(&Value::Bool(true), &Value::Int(1)));
        assert!(python_eq(
            &Value::from(vec![0.9, 0.99]),
            &Value::List(vec![Value::Float(0.9), Value::Float(0.99)])
        ));
        assert!(!python_eq(
            &Value::from(vec![0.9]),
            &Value::from(vec![0.9, 0.99])
        ));
        assert!(!python_eq(&Value::Float(f64::NAN), &Value::Float(f64::NAN)));
        let counts = || {
            [(Key::Int(25), Value::Int(2))]
                .into_iter()
                .collect::<IndexMap<_, _>>()
        };
        assert!(python_eq(
            &Value::Counter(counts()),
            &Value::Counter(counts())
        ));
        assert!(!python_eq(
            &Value::Map(counts().into()),
            &Value::Counter(counts())
        ));
    }
}
