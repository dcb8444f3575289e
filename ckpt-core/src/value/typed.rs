//! Plain values through serde: reading typed values out of a tree, and storing `Serialize`
//! types in one, by way of CBOR values.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Key, Map, Value, ValueError};
use crate::state::KeyPath;

impl Value<'_> {
    /// The value under `key`, read through serde as `T`.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// # use ckpt::dict;
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
        // Python's other values read as the nearest serde data: bytes as bytes, a complex
        // number as `[re, im]`, a set as a sequence, a dtype as its name (`"float32"`).
        Value::Bytes(b) | Value::ByteArray(b) => C::Bytes(b.clone()),
        Value::Complex(z) => C::Array(vec![C::Float(z.re), C::Float(z.im)]),
        Value::DType(d) => C::Text(d.name().to_owned()),
        Value::List(items) | Value::Set(items) => C::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| child(path, i.to_string(), v))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(Map { entries: map, .. }) | Value::Counter(map) => C::Map(
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
        Value::Defect(_) => C::Null,
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
