//! Whole-model save and load (`torch.save(model)` / `torch.load(path)`), without pickle's
//! fragility: the file holds the model's configuration through serde and its tensors, and
//! loading rebuilds the model from the configuration, then checks the layout key by key.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dtype::DType;
use crate::error::Error;
use crate::file::{load_with, save};
use crate::load::{DTypePolicy, LoadOptions};
use crate::module::StateDict;
use crate::value::{Value, ValueError};

/// A model that can be saved whole and rebuilt from its file alone.
///
/// The configuration holds whatever decides the model's structure: layer sizes, counts,
/// hyper-parameters, any non-tensor fields. `from_config` builds a model of that structure
/// (its initial weights do not matter: the file's replace them).
///
/// ```
/// use ckpt_core::{Model, StateDict, Tensor};
/// # use ckpt_core as ckpt; // in user code: use ckpt::...
/// # #[derive(Debug)] struct Mlp { weights: Vec<Tensor>, dropout: f32 }
/// # impl StateDict for Mlp {
/// #     fn visit<'a>(&'a self, p: &mut ckpt::KeyPath, r: ckpt::Role, v: &mut dyn ckpt::Visitor<'a>) { self.weights.visit(p, r, v) }
/// #     fn visit_mut(&mut self, p: &mut ckpt::KeyPath, r: ckpt::Role, v: &mut dyn ckpt::VisitorMut) { self.weights.visit_mut(p, r, v) }
/// # }
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct MlpConfig { sizes: Vec<usize>, dropout: f32 }
///
/// impl Model for Mlp {
///     type Config = MlpConfig;
///
///     fn config(&self) -> MlpConfig {
///         let sizes = self.weights.iter().map(|w| w.shape()[1]).chain(self.weights.last().map(|w| w.shape()[0])).collect();
///         MlpConfig { sizes, dropout: self.dropout }
///     }
///
///     fn from_config(config: MlpConfig) -> Self {
///         let weights = config.sizes.windows(2)
///             .map(|io| Tensor::zeros(ckpt::DType::F32, &[io[1], io[0]]).unwrap())
///             .collect();
///         Mlp { weights, dropout: config.dropout }
///     }
/// }
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("mlp.ckpt");
/// let mut model = Mlp::from_config(MlpConfig { sizes: vec![4, 8, 2], dropout: 0.1 });
/// model.weights[0].array_mut::<f32>()?.fill(0.5);
/// ckpt::save_model(&model, &path)?;
///
/// let restored: Mlp = ckpt::load_model(&path)?; // no construction code
/// assert_eq!(restored.weights[0], model.weights[0]);
/// assert_eq!(restored.dropout, 0.1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Model: StateDict + Sized {
    /// What decides the model's structure, stored in the file through serde.
    type Config: Serialize + DeserializeOwned;

    /// This model's configuration.
    fn config(&self) -> Self::Config;

    /// A model of the structure `config` describes, with any weights.
    fn from_config(config: Self::Config) -> Self;
}

/// The file's marker key: its value names the type and the format of the rest.
const MARKER: &str = "ckpt_model";

/// Saves `model` whole: its type name, configuration, layout and state dict.
///
/// A refactor of the type does not break the file: loading goes by the configuration and the
/// keys, not by the type's path, and reports precisely what no longer matches.
pub fn save_model<M: Model>(model: &M, path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let config = Value::from_serialize(&model.config()).map_err(|source| Error::Value {
        path: path.to_owned(),
        source,
    })?;
    let state = model.state_dict();
    let schema: Vec<Value<'_>> = state
        .iter()
        .map(|(key, t)| {
            crate::dict! {
                "key" => key,
                "dtype" => t.dtype().as_str(),
                "shape" => t.shape().iter().map(|&d| Value::from(d)).collect::<Vec<_>>(),
            }
        })
        .collect();
    save(
        crate::dict! {
            MARKER => crate::dict! { "type" => std::any::type_name::<M>(), "version" => 1 },
            "config" => config,
            "schema" => schema,
            "state_dict" => state,
        },
        path,
    )
}

/// Loads a model saved by [`save_model`], without constructing it first: the configuration
/// builds it, the state dict fills it, and it comes back in evaluation mode.
///
/// ```no_run
/// # fn f<Net: ckpt_core::Model>() -> Result<(), ckpt_core::Error> {
/// let model: Net = ckpt_core::load_model("model.ckpt")?;
/// # Ok(()) }
/// ```
pub fn load_model<M: Model>(path: impl AsRef<Path>) -> Result<M, Error> {
    load_model_with(path, &LoadOptions::new())
}

/// [`load_model`] with options: `map_location`, the dtype policy, checksums, key maps.
pub fn load_model_with<M: Model>(
    path: impl AsRef<Path>,
    options: &LoadOptions,
) -> Result<M, Error> {
    let path = path.as_ref();
    let checkpoint = load_with(path, options)?;
    let saved_type = checkpoint[MARKER]["type"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Value {
            path: path.to_owned(),
            source: ValueError::Missing {
                key: format!(
                    "{MARKER} (this file holds no whole model: save one with ckpt::save_model, or \
                     load a state dict into a model you build)"
                ),
            },
        })?;
    let mismatch = |differences| Error::ModelMismatch {
        path: path.to_owned(),
        saved: saved_type.clone(),
        loading: std::any::type_name::<M>().to_owned(),
        differences,
    };
    let config: M::Config = checkpoint["config"]
        .deserialize()
        .map_err(|e| mismatch(vec![Difference::Config(e.to_string())]))?;
    let mut model = M::from_config(config);

    let state = &checkpoint["state_dict"];
    // A refactor that only renamed keys loads through the options' key map, so the layout is
    // compared after it, as the load will see it.
    let mapped;
    let saved: &dyn crate::TensorSource = if options.key_map.is_empty() {
        state
    } else {
        mapped = options
            .key_map
            .apply(state)
            .map_err(|source| Error::KeyMap {
                path: path.to_owned(),
                source,
            })?;
        &mapped
    };
    let differences = compare(&model, saved, options.dtype_policy);
    if !differences.is_empty() {
        return Err(mismatch(differences));
    }
    model
        .load_state_dict_with(state, &options.clone().strict(true))
        .map_err(|source| Error::Load {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    model.eval();
    Ok(model)
}

/// Every way `model`'s layout differs from the saved state dict's.
fn compare<M: StateDict>(
    model: &M,
    saved: &dyn crate::TensorSource,
    policy: DTypePolicy,
) -> Vec<Difference> {
    let now = model.state_dict();
    let saved: Vec<(String, crate::TensorView<'_>)> = saved
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

/// The differences, one per line, for [`Error::ModelMismatch`].
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
                 LoadOptions::new().key_map(KeyMap::new().rename(old, new)) and load_model_with."
            )?;
        }
        Ok(())
    }
}
