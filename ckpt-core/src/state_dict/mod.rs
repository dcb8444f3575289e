//! The [`StateDict`] trait: a model whose tensors have PyTorch's dotted keys, and what is built
//! on walking them (`state_dict`, `load_state_dict`, `to`, `train`, `eval`). The vocabulary of
//! the walk is in [`state`](crate::state); its implementations for tensors and the standard
//! containers are in `containers.rs`.

mod containers;
mod to_device;

use crate::device::{Device, DeviceError};
use crate::loading::{self, LoadError, LoadReport, Pager, StateDictOptions, Target};
use crate::shard::Sharded;
use crate::state::{KeyPath, Leaf, Metadata, Role, TensorMap, TensorSource, Visitor, VisitorMut};
use crate::tensor::{Tensor, TensorView};

/// A model, a layer, or a container of them, whose tensors have dotted key paths
/// (`encoder.layers.0.weight`) as in PyTorch's `state_dict()`.
///
/// Derive it with `#[derive(StateDict)]`; implement it by hand only for unusual containers. The
/// two required methods walk the tensors in declaration order, read-only and mutably; everything
/// else (`state_dict`, `load_state_dict`, `train`, `eval`) is built on them.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::state::{KeyPath, Role, Visitor, VisitorMut};
/// use ckpt::{StateDict, Tensor};
///
/// /// A hand-written module: two tensors under `w` and `b`.
/// struct Affine { w: Tensor, b: Tensor }
///
/// impl StateDict for Affine {
///     fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
///         for (name, t) in [("w", &self.w), ("b", &self.b)] {
///             path.push(name);
///             t.visit(path, role, visitor);
///             path.pop();
///         }
///     }
///     fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
///         for (name, t) in [("w", &mut self.w), ("b", &mut self.b)] {
///             path.push(name);
///             t.visit_mut(path, role, visitor);
///             path.pop();
///         }
///     }
/// }
///
/// let trained = Affine { w: Tensor::scalar(2.0f32), b: Tensor::scalar(1.0f32) };
/// let mut fresh = Affine { w: Tensor::scalar(0.0f32), b: Tensor::scalar(0.0f32) };
/// let report = fresh.load_state_dict(&trained.state_dict(), true)?;
/// assert_eq!(report.loaded_keys, ["w", "b"]);
/// assert_eq!(fresh.w, trained.w);
/// # Ok::<(), ckpt::LoadError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is neither a tensor nor a module that implements `StateDict`",
    label = "not a tensor leaf or a `StateDict` module",
    note = "fields must be `ckpt::Tensor`, owned ndarray arrays, types deriving `StateDict`, or `Vec`, arrays, `Option`, `Box` and `BTreeMap`/`IndexMap<String, _>` of them",
    note = "mark fields that hold no tensors (sizes, rates, caches) with `#[state(skip)]`",
    note = "with the `candle` feature, candle 0.11's `Tensor`, `Var`, `candle_nn` layers and `VarMap` are fields too; a type of another candle or ndarray version is not: use the crates ckpt re-exports (`ckpt::candle_core`, `ckpt::candle_nn`, `ckpt::ndarray`)"
)]
pub trait StateDict {
    /// Calls `visitor` with every tensor below `path`, in declaration order.
    ///
    /// `role` is what the enclosing fields make of these tensors; a field may only strengthen it
    /// (a parameter inside a buffer field is a buffer), see [`Role::at_least`].
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>);

    /// Calls `visitor` with every tensor below `path` as a mutable [`Leaf`], in the same order as
    /// [`visit`](StateDict::visit).
    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut);

    /// Sets training (`true`) or evaluation (`false`) mode here and in every nested module.
    fn set_training(&mut self, training: bool) {
        let _ = training;
    }

    /// This module's mode: its own flag if it has one (`#[state(training)]`), else whether any
    /// nested module is training; `None` if nothing below keeps a mode.
    fn training_mode(&self) -> Option<bool> {
        None
    }

    /// The version of this module's keys, as PyTorch's `Module._version`: recorded under the
    /// module's prefix in the [`Metadata`] of [`state_dict`](StateDict::state_dict), which a
    /// `.pt` file keeps as `_metadata`, and told back to
    /// [`upgrade_state`](StateDict::upgrade_state) when a checkpoint is loaded.
    ///
    /// `None` (the default) for what is not a module: a tensor, a random generator. Derived
    /// modules and the containers (`Vec`, arrays, maps, as `nn.ModuleList` and `nn.ModuleDict`)
    /// are version 1, as PyTorch's modules are; `Option` and `Box` are their contents'.
    /// A module whose keys changed returns its newer version and reads older ones in
    /// `upgrade_state`, as `ckpt::nn::BatchNorm2d` (version 2) does.
    fn version(&self) -> Option<i64> {
        None
    }

    /// Calls `visitor` with every module nested in this one (not with this one), with its key
    /// path, a module before the modules inside it: what records the versions of
    /// [`state_dict`](StateDict::state_dict) and runs each module's
    /// [`upgrade_state`](StateDict::upgrade_state) on a load. Derived for every field but
    /// `#[state(flatten)]` ones, whose own modules it visits instead; a hand-written container
    /// calls `visitor` for each module it holds, then that module's `visit_modules`. Nothing
    /// by default, for leaves.
    fn visit_modules<'a>(
        &'a self,
        path: &mut KeyPath,
        visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
    ) {
        let _ = (path, visitor);
    }

    /// The versioned-load hook, as PyTorch's `_load_from_state_dict`: called by every load,
    /// before anything is checked, for this module at `prefix` (its key path, `""` for the
    /// model), with the version `saved_version` that the checkpoint's [`Metadata`] records for
    /// it (`None` if it records none, as a state dict rebuilt in Python has) and `source`, the
    /// checkpoint's tensors under the model's keys.
    ///
    /// `supply(key, tensor)` supplies an entry, under its full key, that an older version did
    /// not save: the load then checks and copies it as if the checkpoint held it, so it is
    /// neither missing nor unexpected. A key the source has is not replaced. Nothing by default.
    fn upgrade_state(
        &self,
        prefix: &str,
        saved_version: Option<i64>,
        source: &dyn TensorSource,
        supply: &mut dyn FnMut(String, Tensor),
    ) {
        let _ = (prefix, saved_version, source, supply);
    }

    /// The name used in error messages, as PyTorch uses the class name (`Net`).
    fn module_name(&self) -> &'static str {
        short_type_name(std::any::type_name::<Self>())
    }

    /// The persistent tensors (parameters and persistent buffers) by key, in declaration order,
    /// borrowed from `self`: no tensor data is copied.
    ///
    /// Two tensors with one key, which only a `#[state(flatten)]` field or a hand-written
    /// implementation can cause, are kept once and named in
    /// [`TensorMap::duplicate_keys`]; saving the map, or loading from it, is then an error
    /// naming the key, as loading into this model is.
    ///
    /// The map carries the [`version`](StateDict::version) of every module in its
    /// [`metadata`](TensorMap::metadata), as PyTorch's `state_dict()` does in `_metadata`.
    fn state_dict(&self) -> TensorMap<'_> {
        let mut map = collect(self, Role::is_persistent);
        let metadata = module_versions(self);
        map.set_metadata((!metadata.is_empty()).then_some(metadata));
        map
    }

    /// The parameters (tensors that are not buffers) by key, for optimizers.
    fn named_parameters(&self) -> TensorMap<'_> {
        collect(self, |role| role == Role::Parameter)
    }

    /// The buffers, persistent or not, and the states of random generators, by key.
    fn named_buffers(&self) -> TensorMap<'_> {
        collect(self, |role| role != Role::Parameter)
    }

    /// Copies tensors from `state` into this model, as PyTorch's `load_state_dict`.
    ///
    /// With `strict`, every key of the model must be in `state` and nothing else; without it,
    /// missing and unexpected keys are reported in the returned [`LoadReport`]. Shape and dtype
    /// mismatches are errors either way. Everything is checked before anything is written, so
    /// after an error the model is exactly as it was.
    fn load_state_dict(
        &mut self,
        state: &dyn TensorSource,
        strict: bool,
    ) -> Result<LoadReport, LoadError> {
        self.load_state_dict_with(state, &StateDictOptions::new().strict(strict))
    }

    /// [`load_state_dict`](StateDict::load_state_dict) with every option: strictness, a key
    /// map, the dtype policy, shape mismatches to skip.
    fn load_state_dict_with(
        &mut self,
        state: &dyn TensorSource,
        options: &StateDictOptions,
    ) -> Result<LoadReport, LoadError> {
        loading::load_into(&mut Model(self), state, options)
    }

    /// The states of the random generators below this module (those dropout draws its masks
    /// from), by key, in declaration order; borrowed, as [`state_dict`](StateDict::state_dict)
    /// is.
    ///
    /// They are not in the state dict, which keeps PyTorch's keys: save this map beside it
    /// and give it to [`load_rng_state`](StateDict::load_rng_state) on resuming, and the
    /// resumed run draws the numbers the uninterrupted one would have, as PyTorch's
    /// `torch.get_rng_state()` / `torch.set_rng_state()` do for its global generator.
    fn rng_state(&self) -> TensorMap<'_> {
        collect(self, |role| role == Role::RngState)
    }

    /// Restores every random generator below this module from `state`, a map that
    /// [`rng_state`](StateDict::rng_state) gave. Strict and transactional: every generator of
    /// the model must be in `state` and nothing else, with its dtype and shape, or the error
    /// names each key that is not and no generator changes.
    fn load_rng_state(&mut self, state: &dyn TensorSource) -> Result<LoadReport, LoadError> {
        let name = format!("{} (random generators)", self.module_name());
        loading::load_into(
            &mut Generators { model: self, name },
            state,
            &StateDictOptions::new().strict(true),
        )
    }

    /// Moves every tensor, non-persistent buffers included, to `device`, as `model.to(device)`
    /// in PyTorch.
    ///
    /// Checked before anything moves, in this order: fields that can only hold host memory
    /// (ndarray arrays; use [`Tensor`] for fields that should go to a GPU) make
    /// a move to a GPU an error naming every one of them, on any machine; then the device must
    /// exist (CUDA available, the ordinal present). Moving to [`Device::Cpu`] always works.
    ///
    /// Every tensor is copied to `device` before the model changes, so a move that fails part
    /// way, such as one running out of GPU memory, leaves the model whole where it was (unlike
    /// PyTorch's, which leaves it split) and frees the copies already made; the error names
    /// the tensor that could not move. Tensors already on `device` are not copied; tied
    /// tensors (clones sharing their data) are copied once and stay tied.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::{Device, StateDict, Tensor};
    /// use ckpt::device::DeviceError;
    /// # struct Net { w: Tensor, b: ndarray::Array1<f32> }
    /// # impl StateDict for Net {
    /// #     fn visit<'a>(&'a self, p: &mut ckpt::state::KeyPath, r: ckpt::state::Role, v: &mut dyn ckpt::state::Visitor<'a>) {
    /// #         p.push("w"); self.w.visit(p, r, v); p.pop(); p.push("b"); self.b.visit(p, r, v); p.pop();
    /// #     }
    /// #     fn visit_mut(&mut self, p: &mut ckpt::state::KeyPath, r: ckpt::state::Role, v: &mut dyn ckpt::state::VisitorMut) {
    /// #         p.push("w"); self.w.visit_mut(p, r, v); p.pop(); p.push("b"); self.b.visit_mut(p, r, v); p.pop();
    /// #     }
    /// # }
    /// let mut net = Net { w: Tensor::scalar(1.0f32), b: ndarray::Array1::zeros(2) };
    /// net.to(Device::Cpu)?;
    /// let err = net.to(Device::Cuda(0)).unwrap_err();
    /// assert_eq!(err, DeviceError::HostOnly { keys: vec!["b".into()], device: Device::Cuda(0) });
    /// # Ok::<(), DeviceError>(())
    /// ```
    fn to(&mut self, device: Device) -> Result<(), DeviceError> {
        to_device::move_to(self, device)
    }

    /// Training mode: dropout drops, batch norm uses and updates batch statistics.
    fn train(&mut self) {
        self.set_training(true);
    }

    /// Evaluation mode: dropout is the identity, batch norm uses its running statistics.
    fn eval(&mut self) {
        self.set_training(false);
    }

    /// Whether the module is in training mode; modules that keep no mode report `true`, the
    /// mode every PyTorch module starts in.
    fn is_training(&self) -> bool {
        self.training_mode().unwrap_or(true)
    }
}

fn collect<M: StateDict + ?Sized>(module: &M, keep: impl Fn(Role) -> bool) -> TensorMap<'_> {
    struct Collect<'a, K> {
        map: TensorMap<'a>,
        keep: K,
    }
    impl<'a, K: Fn(Role) -> bool> Visitor<'a> for Collect<'a, K> {
        fn tensor(&mut self, key: &str, tensor: TensorView<'a>, role: Role) {
            if (self.keep)(role) {
                self.map.insert_unique(key.to_owned(), tensor);
            }
        }
        fn unsupported(&mut self, key: &str, why: &str, role: Role) {
            if (self.keep)(role) {
                self.map.insert_unsupported(key.to_owned(), why);
            }
        }
        fn sharded(&mut self, key: &str, tensor: &'a Sharded, role: Role) {
            if (self.keep)(role) {
                self.map.insert_sharded_unique(key.to_owned(), tensor);
            }
        }
    }
    let mut collect = Collect {
        map: TensorMap::new(),
        keep,
    };
    module.visit(&mut KeyPath::new(), Role::Parameter, &mut collect);
    collect.map
}

/// The version of `model` and of every module in it, by prefix, in PyTorch's order.
fn module_versions<M: StateDict + ?Sized>(model: &M) -> Metadata {
    let mut metadata = Metadata::new();
    if let Some(version) = model.version() {
        metadata.insert("", Some(version));
    }
    model.visit_modules(&mut KeyPath::new(), &mut |prefix, module| {
        // A prefix seen before (two modules flattened into one) keeps its first version.
        if let Some(version) = module.version()
            && !metadata.contains(prefix)
        {
            metadata.insert(prefix, Some(version));
        }
    });
    metadata
}

/// Runs the [`upgrade_state`](StateDict::upgrade_state) hook of `model` and of every module in
/// it, each with the version `source` records for its prefix.
fn upgrade<M: StateDict + ?Sized>(
    model: &M,
    source: &dyn TensorSource,
    supply: &mut dyn FnMut(String, Tensor),
) {
    let saved = |prefix: &str| source.metadata().and_then(|m| m.version(prefix));
    model.upgrade_state("", saved(""), source, supply);
    model.visit_modules(&mut KeyPath::new(), &mut |prefix, module| {
        module.upgrade_state(prefix, saved(prefix), source, supply);
    });
}

/// [`load_state_dict_with`](StateDict::load_state_dict_with), copying what it checked with
/// `pager`: for loads that copy from a file in their own way.
pub(crate) fn load_into_with<M: StateDict + ?Sized>(
    model: &mut M,
    source: &dyn TensorSource,
    options: &StateDictOptions,
    pager: &dyn Pager,
) -> Result<LoadReport, LoadError> {
    loading::load_into_with(&mut Model(model), source, options, pager)
}

/// A model as a load sees it.
struct Model<'m, M: ?Sized>(&'m mut M);

impl<M: StateDict + ?Sized> Target for Model<'_, M> {
    fn name(&self) -> &str {
        self.0.module_name()
    }

    fn walk<'a>(&'a self, visitor: &mut dyn Visitor<'a>) {
        self.0.visit(&mut KeyPath::new(), Role::Parameter, visitor);
    }

    fn walk_mut(&mut self, visitor: &mut dyn VisitorMut) {
        self.0
            .visit_mut(&mut KeyPath::new(), Role::Parameter, visitor);
    }

    fn supply(&self, source: &dyn TensorSource, supply: &mut dyn FnMut(String, Tensor)) {
        upgrade(self.0, source, supply);
    }
}

/// A model's random generators as a load sees them: their states are its only tensors.
struct Generators<'m, M: ?Sized> {
    model: &'m mut M,
    name: String,
}

impl<M: StateDict + ?Sized> Target for Generators<'_, M> {
    fn name(&self) -> &str {
        &self.name
    }

    fn walk<'a>(&'a self, visitor: &mut dyn Visitor<'a>) {
        self.model.visit(
            &mut KeyPath::new(),
            Role::Parameter,
            &mut |key: &str, tensor: TensorView<'a>, role: Role| {
                if role == Role::RngState {
                    visitor.tensor(key, tensor, Role::Buffer);
                }
            },
        );
    }

    fn walk_mut(&mut self, visitor: &mut dyn VisitorMut) {
        self.model.visit_mut(
            &mut KeyPath::new(),
            Role::Parameter,
            &mut |key: &str, leaf: &mut dyn Leaf, role: Role| {
                if role == Role::RngState {
                    visitor.tensor(key, leaf, Role::Buffer);
                }
            },
        );
    }
}

/// `a::b::Net<c::T>` -> `Net`.
fn short_type_name(full: &'static str) -> &'static str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Combines the modes of two parts of a module: training if either part is. What derived
/// implementations of [`StateDict::training_mode`] fold their fields' modes with.
pub fn merge_modes(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a || b),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dict_records_what_it_cannot_hold() {
        use crate::state::TensorSource;
        use crate::tensor::Tensor;
        struct Odd(Tensor);
        impl StateDict for Odd {
            fn visit<'a>(&'a self, _: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
                visitor.tensor("w", self.0.view(), role);
                visitor.unsupported("ids", "no dtype for it", role);
            }
            fn visit_mut(&mut self, _: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
                visitor.tensor("w", &mut self.0, role);
            }
        }
        let odd = Odd(Tensor::scalar(1.0f32));
        let state = odd.state_dict();
        assert_eq!(state.keys().collect::<Vec<_>>(), ["w"]);
        assert_eq!(
            state.unsupported(),
            [("ids".to_owned(), "no dtype for it".to_owned())]
        );
        assert_eq!(
            state.defect().as_deref(),
            Some("the tensor \"ids\" cannot be saved or loaded: no dtype for it")
        );
        assert_eq!(TensorSource::defect(&state), state.defect());
        assert!(
            odd.named_buffers().unsupported().is_empty(),
            "a parameter, not a buffer"
        );
    }

    #[test]
    fn short_names() {
        assert_eq!(short_type_name("a::b::Net<c::T, u8>"), "Net");
        assert_eq!(short_type_name("Net"), "Net");
        assert_eq!(short_type_name("alloc::vec::Vec<x::Y>"), "Vec");
    }

    #[test]
    fn modes_merge() {
        assert_eq!(merge_modes(None, None), None);
        assert_eq!(merge_modes(None, Some(false)), Some(false));
        assert_eq!(merge_modes(Some(false), Some(true)), Some(true));
        assert_eq!(merge_modes(Some(false), Some(false)), Some(false));
    }

    #[test]
    fn roles_only_strengthen() {
        assert_eq!(Role::Buffer.at_least(Role::Parameter), Role::Buffer);
        assert_eq!(
            Role::Parameter.at_least(Role::NonPersistent),
            Role::NonPersistent
        );
        assert!(!Role::NonPersistent.is_persistent());
        assert_eq!(Role::NonPersistent.at_least(Role::RngState), Role::RngState);
        assert!(!Role::RngState.is_persistent());
    }
}
