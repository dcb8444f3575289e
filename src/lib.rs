#![doc = include_str!("../README.md")]

// The derive emits `::ckpt::...` paths; this lets the layers below derive `StateDict` too.
extern crate self as ckpt;

#[cfg(feature = "candle")]
pub use ckpt_core::candle;
#[cfg(feature = "cuda")]
pub use ckpt_core::cuda;
pub use ckpt_core::{
    Checkpoint, DType, DTypePolicy, Device, Error, LoadError, LoadFrom, LoadOptions, LoadReport,
    SaveHandle, SaveOptions, StateDict, StateDictOptions, Tensor, Value, dict, inspect,
    inspect_with, load, load_with, save, save_async, save_async_with, save_with,
};
#[cfg(feature = "candle")]
pub use ckpt_core::{candle_core, candle_nn};
pub use ckpt_core::{
    dcp, device, distributed, dtype, format, keymap, loading, model, shard, state, storage, tensor,
    value,
};
/// The crates whose types ckpt's API takes, re-exported so that a program can use the very
/// versions ckpt was built with: a program depending on another version of one gets "the
/// trait `StateDict` is not implemented" for that version's types. With the `candle` feature,
/// ckpt supports candle 0.11 (`candle-core` and `candle-nn`).
pub use ckpt_core::{half, ndarray};
/// Derives [`StateDict`](trait@StateDict) for a struct: its fields are the key segments of its
/// tensors (`encoder.layers.0.weight`), as PyTorch's attribute names are.
///
/// A field is a tensor leaf ([`Tensor`], or an owned ndarray `Array<T, D>` / `ArcArray<T, D>`
/// of a [`dtype::Element`] type), a struct that derives `StateDict`, or a `Vec`, array,
/// `Option` (`None` adds no keys), `Box` (trait objects too) or `BTreeMap`/`IndexMap<String, _>`
/// of those. Tuple fields are keyed `0`, `1`, …. With the `candle` feature, candle's
/// `Tensor`, `Var`, `candle_nn` layers and `VarMap` are fields too (see the `candle` module).
///
/// | attribute | meaning |
/// |---|---|
/// | `#[state(rename = "fc")]` | use `fc` as this field's key segment |
/// | `#[state(skip)]` | not state: neither saved nor loaded, keeps its value; for sizes, rates, caches |
/// | `#[state(buffer)]` | saved and loaded like a parameter, but a buffer (running statistics, counters) |
/// | `#[state(buffer, persistent = false)]` | follows `train()`/`eval()` and device moves, never saved |
/// | `#[state(flatten)]` | the field's keys without its own segment |
/// | `#[state(training)]` | the `bool` that `train()` / `eval()` set and `is_training()` reads |
///
/// A field of type [`nn::Rng`] is a random generator: its state is not in the state dict but
/// in [`rng_state`](StateDict::rng_state), whatever its attributes.
///
/// Mistakes are compile errors on the offending tokens, all reported at once: enums and
/// unions, unknown or repeated attributes, contradictory ones, two fields with one key, empty or
/// dotted keys, and fields that are neither tensors nor modules.
///
/// ```
/// use ckpt::{StateDict, Tensor};
/// use ndarray::{Array1, Array2};
///
/// #[derive(StateDict)]
/// struct Norm {
///     weight: Array1<f32>,
///     #[state(buffer)]
///     running_mean: Array1<f32>,
///     #[state(buffer, persistent = false)]
///     scratch: Tensor,
///     #[state(training)]
///     training: bool,
/// }
///
/// #[derive(StateDict)]
/// struct Net {
///     #[state(rename = "fc")]
///     head: Array2<f32>,
///     norms: Vec<Norm>,
///     #[state(skip)]
///     width: usize,
/// }
///
/// let norm = || Norm {
///     weight: Array1::ones(2),
///     running_mean: Array1::zeros(2),
///     scratch: Tensor::scalar(0.0f32),
///     training: true,
/// };
/// let mut net = Net { head: Array2::zeros((2, 2)), norms: vec![norm(), norm()], width: 2 };
/// let state = net.state_dict();
/// let keys: Vec<&str> = state.keys().collect();
/// assert_eq!(keys, ["fc", "norms.0.weight", "norms.0.running_mean", "norms.1.weight", "norms.1.running_mean"]);
/// assert_eq!(net.named_parameters().len(), 3); // buffers are not parameters
/// drop(state);
/// net.eval();
/// assert!(!net.norms[1].training);
/// ```
pub use ckpt_derive::StateDict;

pub mod nn;
pub mod optim;

/// What `#[derive(StateDict)]` expands to refers to; not public API.
#[doc(hidden)]
pub mod __private {
    pub use ckpt_core::state::{KeyPath, Role, Visitor, VisitorMut};
    pub use ckpt_core::state_dict::merge_modes;

    use crate::StateDict;

    /// A field of a derived module: a tensor leaf or a module. The derive calls its fields
    /// through this trait, so that a field of another type is one error with this message,
    /// whatever types implement `StateDict`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is neither a tensor nor a module that implements `StateDict`",
        label = "not a tensor leaf or a `StateDict` module",
        note = "fields must be `ckpt::Tensor`, owned ndarray arrays, types deriving `StateDict`, or `Vec`, arrays, `Option`, `Box` and `BTreeMap`/`IndexMap<String, _>` of them",
        note = "mark fields that hold no tensors (sizes, rates, caches) with `#[state(skip)]`",
        note = "with the `candle` feature, candle 0.11's `Tensor`, `Var`, `candle_nn` layers and `VarMap` are fields too; a type of another candle or ndarray version is not: use the crates ckpt re-exports (`ckpt::candle_core`, `ckpt::candle_nn`, `ckpt::ndarray`)"
    )]
    pub trait Field {
        fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>);
        fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut);
        fn set_training(&mut self, training: bool);
        fn training_mode(&self) -> Option<bool>;
        fn visit_modules<'a>(
            &'a self,
            path: &mut KeyPath,
            visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
        );
        fn as_module(&self) -> &dyn StateDict;
    }

    #[diagnostic::do_not_recommend]
    impl<T: StateDict> Field for T {
        fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
            StateDict::visit(self, path, role, visitor);
        }
        fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
            StateDict::visit_mut(self, path, role, visitor);
        }
        fn set_training(&mut self, training: bool) {
            StateDict::set_training(self, training);
        }
        fn training_mode(&self) -> Option<bool> {
            StateDict::training_mode(self)
        }
        fn visit_modules<'a>(
            &'a self,
            path: &mut KeyPath,
            visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
        ) {
            StateDict::visit_modules(self, path, visitor);
        }
        fn as_module(&self) -> &dyn StateDict {
            self
        }
    }
}
