//! [`ParamGroup`]: parameters sharing hyper-parameters, an entry of PyTorch's
//! `optimizer.param_groups`; and [`ParamGroups`], what a learning-rate scheduler reads and
//! writes in them.

use indexmap::IndexMap;

use super::passthrough::overlay;
use super::{Algorithm, OptimError};
use crate::Value;
use crate::value::Key;

/// Parameters updated with one set of hyper-parameters, as a dict of PyTorch's
/// `optimizer.param_groups`: a backbone at a small learning rate, a head at a larger one.
///
/// A group holds its [`Algorithm`]'s hyper-parameters (`config`) and every other key PyTorch's
/// group has (`foreach`, `fused`, or `initial_lr`, which every LR scheduler adds): those are
/// kept as they were set or loaded and saved back as they are, so a checkpoint ckpt resaves
/// resumes in PyTorch as the original would.
///
/// ```
/// use ckpt::nn::{Linear, Rng};
/// use ckpt::optim::{ParamGroup, Sgd, SgdConfig};
/// # #[derive(ckpt::StateDict)] struct Net { backbone: Linear, head: Linear }
///
/// let rng = &mut Rng::seed(0);
/// let model = Net { backbone: Linear::new(4, 3, rng), head: Linear::new(3, 2, rng) };
/// let sgd = SgdConfig::default().momentum(0.9);
/// let opt = Sgd::with_groups(&model, [
///     ParamGroup::with_prefix("backbone.", sgd.lr(0.01).weight_decay(1e-3)),
///     ParamGroup::with_prefix("head.", sgd.lr(0.1)),
/// ])?;
/// assert_eq!(opt.groups()[1].params(), ["head.weight", "head.bias"]);
/// assert_eq!(opt.groups()[0].get("lr"), Some(0.01.into()));
/// assert_eq!(opt.groups()[0].get("foreach"), Some(ckpt::Value::None)); // PyTorch's default
/// # Ok::<(), ckpt::optim::OptimError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ParamGroup<A> {
    config: A,
    select: Select,
    /// The parameters' keys, once the group belongs to an optimizer.
    params: Vec<String>,
    /// Every key of the group but `params`, in PyTorch's order. The entries of the algorithm's
    /// hyper-parameters only give their place and the type they were loaded with: `config`
    /// holds their values.
    options: IndexMap<String, Value<'static>>,
}

/// Which parameters of the model a group takes.
#[derive(Clone, Debug)]
enum Select {
    All,
    Prefix(String),
    Keys(Vec<String>),
}

impl<A: Algorithm> ParamGroup<A> {
    /// Every parameter of the model: the one group of
    /// [`Optimizer::new`](super::Optimizer::new).
    pub fn new(config: A) -> Self {
        Self::select(Select::All, config)
    }

    /// The parameters whose keys start with `prefix` (`"backbone."`), in the model's order.
    pub fn with_prefix(prefix: impl Into<String>, config: A) -> Self {
        Self::select(Select::Prefix(prefix.into()), config)
    }

    /// The parameters `keys`, in this order (the order of their indices in PyTorch's layout).
    pub fn with_keys<K: Into<String>>(keys: impl IntoIterator<Item = K>, config: A) -> Self {
        Self::select(
            Select::Keys(keys.into_iter().map(Into::into).collect()),
            config,
        )
    }

    fn select(select: Select, config: A) -> Self {
        let options = config
            .param_group()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        ParamGroup {
            config,
            select,
            params: Vec::new(),
            options,
        }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &A {
        &self.config
    }

    /// The hyper-parameters, to change.
    pub fn config_mut(&mut self) -> &mut A {
        &mut self.config
    }

    /// The keys of the group's parameters, once it belongs to an optimizer.
    pub fn params(&self) -> &[String] {
        &self.params
    }

    /// The value of `key`, as PyTorch's `group[key]`: a hyper-parameter of the algorithm, or
    /// any other key the group has.
    pub fn get(&self, key: &str) -> Option<Value<'static>> {
        if self.config.hyper_parameters().contains(&key) {
            return self
                .config
                .param_group()
                .into_iter()
                .find_map(|(k, v)| (k == key).then_some(v));
        }
        self.options.get(key).cloned()
    }

    /// Sets `key`, as PyTorch's `group[key] = value`: a hyper-parameter is checked and set in
    /// [`config`](ParamGroup::config); any other key is kept and saved with the group.
    pub fn set(&mut self, key: &str, value: impl Into<Value<'static>>) -> Result<(), OptimError> {
        let value = value.into();
        if key == "params" {
            return Err(OptimError::layout(
                "params",
                "a group's parameters are fixed when it is added to the optimizer",
            ));
        }
        if self.config.hyper_parameters().contains(&key) {
            let mut config = self.config.clone();
            config.load_param_group(&crate::dict! { key => value })?;
            self.config = config;
        } else {
            self.options.insert(key.to_owned(), value);
        }
        Ok(())
    }

    /// Resolves the selection against the model's parameters (key and shape, in model order).
    pub(super) fn resolve<'p>(
        &self,
        model: &'p [(String, Vec<usize>)],
    ) -> Result<Vec<&'p (String, Vec<usize>)>, OptimError> {
        Ok(match &self.select {
            Select::All => model.iter().collect(),
            Select::Prefix(prefix) => {
                let found: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .collect();
                if found.is_empty() {
                    return Err(OptimError::EmptyGroup {
                        prefix: prefix.clone(),
                    });
                }
                found
            }
            Select::Keys(keys) => keys
                .iter()
                .map(|key| {
                    model
                        .iter()
                        .find(|(k, _)| k == key)
                        .ok_or_else(|| OptimError::MissingParameter { key: key.clone() })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    pub(super) fn set_params(&mut self, params: Vec<String>) {
        self.params = params;
    }

    /// The group in PyTorch's layout, `params` last as PyTorch writes it.
    pub(super) fn to_value<'s>(&'s self, params: Vec<Value<'s>>) -> Value<'s> {
        let owned = self.config.hyper_parameters();
        let current = self
            .config
            .param_group()
            .into_iter()
            .filter(|(key, _)| owned.contains(key))
            .collect();
        let mut group = overlay(&self.options, current);
        group.insert("params", Value::List(params));
        group
    }

    /// This group with the hyper-parameters and other keys of `saved` (a group of a state dict),
    /// as `torch.optim.Optimizer.load_state_dict` replaces each group by the saved one, keeping
    /// only its parameters. Keys `saved` lacks are filled with this algorithm's defaults, as
    /// PyTorch's `__setstate__` does for files of older versions.
    pub(super) fn loaded(&self, saved: &Value<'_>) -> Result<Self, OptimError> {
        let Value::Map(map) = saved else {
            return Err(OptimError::layout(
                "",
                format!("expected a map, got {}", saved.kind()),
            ));
        };
        let mut config = self.config.clone();
        config.load_param_group(saved)?;
        let mut options = IndexMap::with_capacity(map.len());
        for (key, value) in map {
            let Key::Str(key) = key else {
                return Err(OptimError::layout(
                    key.to_string(),
                    "param_groups keys are strings",
                ));
            };
            if key != "params" {
                options.insert(key.to_owned(), value.to_owned_value());
            }
        }
        for (key, value) in config.param_group() {
            options.entry(key.to_owned()).or_insert(value);
        }
        Ok(ParamGroup {
            config,
            select: self.select.clone(),
            params: self.params.clone(),
            options,
        })
    }
}

/// The parameter groups of an optimizer, as an LR scheduler sees them: PyTorch's
/// `optimizer.param_groups[i][key]`, read and written. Implemented by every
/// [`Optimizer`](super::Optimizer).
pub trait ParamGroups {
    /// How many groups there are.
    fn group_count(&self) -> usize;

    /// `param_groups[group][key]`, if the group has the key.
    fn option(&self, group: usize, key: &str) -> Option<Value<'static>>;

    /// Sets `param_groups[group][key]`; a hyper-parameter of the algorithm is checked first.
    fn set_option(
        &mut self,
        group: usize,
        key: &str,
        value: Value<'static>,
    ) -> Result<(), OptimError>;
}
