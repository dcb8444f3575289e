//! Whole-model save and load (`torch.save(model)` / `torch.load(path)`), without pickle's
//! fragility: the file holds the model's configuration through serde and its tensors, and
//! loading rebuilds the model from the configuration, then checks the layout key by key.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::file::{Error, LoadOptions, load_with, save};
use crate::loading::{Difference, StateDictOptions, compare};
use crate::state::TensorSource;
use crate::state_dict::StateDict;
use crate::value::{Value, ValueError};

/// A model that can be saved whole and rebuilt from its file alone.
///
/// The configuration holds whatever decides the model's structure: layer sizes, counts,
/// hyper-parameters, any non-tensor fields. `from_config` builds a model of that structure
/// (its initial weights do not matter: the file's replace them).
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::model::Model;
/// use ckpt::{StateDict, Tensor};
/// # #[derive(Debug)] struct Mlp { weights: Vec<Tensor>, dropout: f32 }
/// # impl StateDict for Mlp {
/// #     fn visit<'a>(&'a self, p: &mut ckpt::state::KeyPath, r: ckpt::state::Role, v: &mut dyn ckpt::state::Visitor<'a>) { self.weights.visit(p, r, v) }
/// #     fn visit_mut(&mut self, p: &mut ckpt::state::KeyPath, r: ckpt::state::Role, v: &mut dyn ckpt::state::VisitorMut) { self.weights.visit_mut(p, r, v) }
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
/// ckpt::model::save_model(&model, &path)?;
///
/// let restored: Mlp = ckpt::model::load_model(&path)?; // no construction code
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
        location: path.into(),
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
/// # use ckpt_core as ckpt;
/// # fn f<Net: ckpt::model::Model>() -> Result<(), ckpt::Error> {
/// let model: Net = ckpt::model::load_model("model.ckpt")?;
/// # Ok(()) }
/// ```
pub fn load_model<M: Model>(path: impl AsRef<Path>) -> Result<M, Error> {
    load_model_with(path, &LoadOptions::new(), &StateDictOptions::new())
}

/// [`load_model`] with the options of both steps: how the file is read (`map_location`,
/// checksums) and how its state dict loads (key maps for renamed fields, the dtype policy).
/// Without [`strict`](StateDictOptions::strict), keys added to or removed from the type since
/// the save are not differences: added ones keep what `from_config` gave them.
pub fn load_model_with<M: Model>(
    path: impl AsRef<Path>,
    load: &LoadOptions,
    state: &StateDictOptions,
) -> Result<M, Error> {
    let path = path.as_ref();
    let checkpoint = load_with(path, load)?;
    let location = checkpoint.location().clone();
    let saved_type = checkpoint.value()[MARKER]["type"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Value {
            location: location.clone(),
            source: ValueError::Missing {
                key: format!(
                    "{MARKER} (this file holds no whole model: save one with ckpt::model::save_model, or \
                     load a state dict into a model you build)"
                ),
            },
        })?;
    let mismatch = |differences| Error::ModelMismatch {
        location: location.clone(),
        saved: saved_type.clone(),
        loading: std::any::type_name::<M>().to_owned(),
        differences,
    };
    let config: M::Config = checkpoint["config"]
        .deserialize()
        .map_err(|e| mismatch(vec![Difference::Config(e.to_string())]))?;
    let mut model = M::from_config(config);

    let saved_state = &checkpoint.value()["state_dict"];
    // A refactor that only renamed keys loads through the options' key map, so the layout is
    // compared after it, as the load will see it.
    let mapped;
    let saved: &dyn TensorSource = if state.key_map.is_empty() {
        saved_state
    } else {
        mapped = state
            .key_map
            .apply(saved_state)
            .map_err(|source| Error::KeyMap {
                location: location.clone(),
                source,
            })?;
        &mapped
    };
    let mut differences = compare(&model.state_dict(), saved, state.dtype_policy);
    if !state.strict {
        differences
            .retain(|d| !matches!(d, Difference::Missing { .. } | Difference::Removed { .. }));
    }
    if !differences.is_empty() {
        return Err(mismatch(differences));
    }
    let _ = model
        .load_state_dict_with(saved_state, state)
        .map_err(|source| Error::Load {
            location,
            source: Box::new(source),
        })?;
    model.eval();
    Ok(model)
}
