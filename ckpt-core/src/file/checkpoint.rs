//! [`Checkpoint`]: a loaded file.

use std::borrow::Cow;
use std::fmt;
use std::ops::Index;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;

use super::Error;
use crate::format::Format;
use crate::state::{Metadata, TensorSource};
use crate::storage::Location;
use crate::tensor::TensorView;
use crate::value::{Defect, Value};

/// A loaded file: the saved [`Value`] (usually a map), the file it came from and its format.
///
/// Index it by name and hand what you get to `load_state_dict`, as in PyTorch; read plain
/// values with [`Checkpoint::get`], and the whole tree with [`Checkpoint::value`]. An entry
/// the checkpoint does not have indexes as a [`Value::Defect`], which reads as `None` and
/// makes a load from it an error naming the entries that do exist.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{StateDict, Tensor, dict};
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("checkpoint.ckpt");
/// ckpt::save(dict! { "epoch" => 3, "model" => dict! { "w" => Tensor::scalar(1.0f32) } }, &path)?;
/// let checkpoint = ckpt::load(&path)?;
/// assert_eq!(checkpoint.get::<u32>("epoch")?, 3);
/// assert!(checkpoint["model"]["w"].as_tensor().is_some());
///
/// // A typo: a load from it fails, even a non-strict one, naming the entries there are.
/// let mut w = Tensor::scalar(0.0f32);
/// let err = w.load_state_dict(&checkpoint["modle"], false).unwrap_err();
/// assert!(err.to_string().contains(r#"its entries are "epoch", "model""#), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Checkpoint {
    value: Value<'static>,
    location: Location,
    format: Arc<dyn Format>,
    /// What indexing with a key the value lacks gives, made on first use.
    missing: OnceLock<Value<'static>>,
}

impl Checkpoint {
    pub(crate) fn new(value: Value<'static>, location: Location, format: Arc<dyn Format>) -> Self {
        Checkpoint {
            value,
            location,
            format,
            missing: OnceLock::new(),
        }
    }

    /// The file (or other location) it was loaded from.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The file's format.
    pub fn format(&self) -> &dyn Format {
        &*self.format
    }

    /// The saved value.
    pub fn value(&self) -> &Value<'static> {
        &self.value
    }

    /// The saved value, owned.
    pub fn into_value(self) -> Value<'static> {
        self.value
    }

    /// The value under `key`, read through serde as `T`; errors name the file.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, Error> {
        self.value.get(key).map_err(|source| Error::Value {
            location: self.location.clone(),
            source,
        })
    }

    /// Every tensor with its flattened key, in order.
    pub fn tensors(&self) -> Vec<(String, TensorView<'_>)> {
        self.value.tensors()
    }

    fn missing(&self) -> &Value<'static> {
        self.missing.get_or_init(|| {
            let reason = match self.value.as_map() {
                Some(map) => {
                    let entries: Vec<String> =
                        map.keys().map(|k| format!("{:?}", k.to_string())).collect();
                    if entries.is_empty() {
                        format!(
                            "{} has no entry of that name: it holds an empty map",
                            self.location
                        )
                    } else {
                        format!(
                            "{} has no entry of that name; its entries are {}",
                            self.location,
                            entries.join(", ")
                        )
                    }
                }
                None => format!(
                    "{} holds a {}, which has no named entries",
                    self.location,
                    self.value.kind()
                ),
            };
            Value::Defect(Defect::new(reason))
        })
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("location", &self.location)
            .field("format", &self.format.name())
            .field("value", &self.value)
            .finish()
    }
}

impl Index<&str> for Checkpoint {
    type Output = Value<'static>;

    /// The entry under `key`; for a key the checkpoint lacks, a [`Value::Defect`] naming the
    /// entries it has.
    fn index(&self, key: &str) -> &Value<'static> {
        match self.value.get_value(key) {
            Some(value) => value,
            None => self.missing(),
        }
    }
}

impl TensorSource for Checkpoint {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.value.get_tensor(key)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        self.value.tensor_keys()
    }

    fn metadata(&self) -> Option<&Metadata> {
        self.value.metadata()
    }
}

impl<'a> From<&'a Checkpoint> for Value<'a> {
    fn from(checkpoint: &'a Checkpoint) -> Self {
        checkpoint.value.reborrow()
    }
}
