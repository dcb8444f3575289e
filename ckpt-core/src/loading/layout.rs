//! How a model's layout differs from a saved state dict's, for loading whole models.

use std::fmt;

use super::DTypePolicy;
use crate::dtype::DType;
use crate::state::{TensorMap, TensorSource};
use crate::tensor::TensorView;

/// Every way a model's layout (its state dict `now`) differs from a saved state dict's.
pub(crate) fn compare(
    now: &TensorMap<'_>,
    saved: &dyn TensorSource,
    policy: DTypePolicy,
) -> Vec<Difference> {
    let saved: Vec<(String, TensorView<'_>)> = saved
        .tensor_keys()
        .filter_map(|k| Some((k.to_string(), saved.get_tensor(&k)?)))
        .collect();
    let mut differences = Vec::new();
    for (key, t) in now.iter() {
        match saved.iter().find(|(k, _)| k == key) {
            None => differences.push(Difference::Missing {
                key: key.to_owned(),
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
            }),
            Some((_, s)) if s.shape() != t.shape() => differences.push(Difference::Shape {
                key: key.to_owned(),
                saved: s.shape().to_vec(),
                now: t.shape().to_vec(),
            }),
            Some((_, s))
                if s.dtype() != t.dtype()
                    && (policy == DTypePolicy::Exact || s.dtype().kind() != t.dtype().kind()) =>
            {
                differences.push(Difference::DType {
                    key: key.to_owned(),
                    saved: s.dtype(),
                    now: t.dtype(),
                });
            }
            Some(_) => {}
        }
    }
    for (key, s) in &saved {
        if !now.contains_key(key) {
            differences.push(Difference::Removed {
                key: key.clone(),
                dtype: s.dtype(),
                shape: s.shape().to_vec(),
            });
        }
    }
    differences
}

/// One way a saved model's layout differs from the type it is loaded as.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Difference {
    /// The configuration does not deserialize as the type's: a renamed, removed or retyped
    /// configuration field.
    Config(String),
    /// The type has a tensor the file lacks: a field added or renamed.
    Missing {
        /// The key.
        key: String,
        /// Its dtype in the type.
        dtype: DType,
        /// Its shape in the type.
        shape: Vec<usize>,
    },
    /// The file has a tensor the type lacks: a field removed or renamed.
    Removed {
        /// The key.
        key: String,
        /// Its dtype in the file.
        dtype: DType,
        /// Its shape in the file.
        shape: Vec<usize>,
    },
    /// A tensor changed shape: a layer size changed.
    Shape {
        /// The key.
        key: String,
        /// The shape in the file.
        saved: Vec<usize>,
        /// The shape the type builds.
        now: Vec<usize>,
    },
    /// A tensor changed dtype in a way the dtype policy refuses.
    DType {
        /// The key.
        key: String,
        /// The dtype in the file.
        saved: DType,
        /// The dtype the type builds.
        now: DType,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Config(message) => write!(f, "config: {message}"),
            Difference::Missing { key, dtype, shape } => write!(
                f,
                "\"{key}\" {dtype} {shape:?} is not in the file (a field added or renamed)"
            ),
            Difference::Removed { key, dtype, shape } => write!(
                f,
                "\"{key}\" {dtype} {shape:?} is only in the file (a field removed or renamed)"
            ),
            Difference::Shape { key, saved, now } => write!(
                f,
                "\"{key}\" has shape {saved:?} in the file and {now:?} now (a layer size changed)"
            ),
            Difference::DType { key, saved, now } => {
                write!(f, "\"{key}\" is {saved} in the file and {now} now")
            }
        }
    }
}

/// The differences, one per line, for [`Error::ModelMismatch`](crate::Error::ModelMismatch).
pub(crate) struct Lines<'d>(pub(crate) &'d [Difference]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.0 {
            write!(f, "\n\t{d}")?;
        }
        let missing = self
            .0
            .iter()
            .any(|d| matches!(d, Difference::Missing { .. }));
        let removed = self
            .0
            .iter()
            .any(|d| matches!(d, Difference::Removed { .. }));
        if missing && removed {
            write!(
                f,
                "\n\tIf fields were only renamed, load with \
                 StateDictOptions::new().key_map(KeyMap::new().rename(old, new)) and load_model_with."
            )?;
        }
        Ok(())
    }
}
