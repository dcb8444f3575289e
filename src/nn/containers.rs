//! [`ModuleList`] and [`ModuleDict`]: modules of different types under indices or names, as
//! `torch.nn.ModuleList` and `torch.nn.ModuleDict`, and [`Module`], what they hold.

use std::any::Any;

use indexmap::IndexMap;

use super::NnError;
use crate::StateDict;
use crate::state::{KeyPath, Role, Visitor, VisitorMut};

/// Any module a [`ModuleList`] or [`ModuleDict`] can hold: every `'static` type that
/// implements [`StateDict`], which the containers hand back as its own type. (A box is a
/// module of the box's type: give the containers the module itself.)
pub trait Module: StateDict + Any {
    /// `self` as [`Any`], to recover the concrete type.
    fn as_any(&self) -> &dyn Any;
    /// `self` as mutable [`Any`].
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: StateDict + Any> Module for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Modules of any types keyed `0`, `1`, … as `torch.nn.ModuleList`: a module without tensors
/// (such as [`ReLU`](super::ReLU)) still takes its index, so the keys are PyTorch's
/// (`0.weight`, `3.bias`). It has no forward pass of its own, as in PyTorch: take each module
/// back as its type with [`get`](ModuleList::get). For modules of one type a `Vec` has the
/// same keys; to chain [`Layer`](super::Layer)s use a [`Sequential`](super::Sequential).
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{Dropout, LayerNorm, Linear, ModuleList, ReLU, Rng};
///
/// let rng = &mut Rng::seed(0);
/// let blocks = ModuleList::new()
///     .push(Linear::new(4, 6, rng))
///     .push(ReLU)
///     .push(Dropout::new(0.1, 0)?)
///     .push(LayerNorm::new(&[6]));
/// let keys: Vec<_> = blocks.state_dict().keys().map(str::to_owned).collect();
/// assert_eq!(keys, ["0.weight", "0.bias", "3.weight", "3.bias"]);
/// let fc: &Linear = blocks.get(0).unwrap();
/// assert_eq!(fc.out_features(), 6);
/// assert!(blocks.get::<ReLU>(0).is_none(), "the wrong type");
/// # Ok::<(), ckpt::nn::NnError>(())
/// ```
#[derive(Default)]
pub struct ModuleList {
    modules: Vec<Box<dyn Module>>,
}

impl ModuleList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The list with `module` appended; it is keyed by its index.
    #[must_use]
    pub fn push(mut self, module: impl Module) -> Self {
        self.append(module);
        self
    }

    /// Appends `module`, as PyTorch's `append`.
    pub fn append(&mut self, module: impl Module) {
        self.modules.push(Box::new(module));
    }

    /// The number of modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The module at `index`, if there is one of type `T`.
    pub fn get<T: Module>(&self, index: usize) -> Option<&T> {
        // Through the box: `Box<dyn Module>` is a `Module` itself, of the box's type.
        (**self.modules.get(index)?).as_any().downcast_ref()
    }

    /// The module at `index` mutably, if there is one of type `T`.
    pub fn get_mut<T: Module>(&mut self, index: usize) -> Option<&mut T> {
        (**self.modules.get_mut(index)?).as_any_mut().downcast_mut()
    }

    /// Every module, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &dyn Module> {
        self.modules.iter().map(|module| &**module)
    }
}

impl StateDict for ModuleList {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        self.modules.visit(path, role, visitor);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        self.modules.visit_mut(path, role, visitor);
    }

    fn set_training(&mut self, training: bool) {
        self.modules.set_training(training);
    }

    fn training_mode(&self) -> Option<bool> {
        self.modules.training_mode()
    }

    fn module_name(&self) -> &'static str {
        "ModuleList"
    }

    fn version(&self) -> Option<i64> {
        Some(1)
    }

    fn visit_modules<'a>(
        &'a self,
        path: &mut KeyPath,
        visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
    ) {
        self.modules.visit_modules(path, visitor);
    }
}

/// Modules of any types keyed by name, in insertion order, as `torch.nn.ModuleDict`: keys
/// `name.weight`. Inserting an existing name replaces its module in place, as PyTorch does.
///
/// ```
/// use ckpt::StateDict;
/// use ckpt::nn::{Embedding, Linear, ModuleDict, ReLU, Rng};
///
/// let rng = &mut Rng::seed(0);
/// let heads = ModuleDict::new()
///     .insert("proj", Linear::new(6, 3, rng))?
///     .insert("act", ReLU)?
///     .insert("embed", Embedding::new(5, 3, rng))?;
/// let keys: Vec<_> = heads.state_dict().keys().map(str::to_owned).collect();
/// assert_eq!(keys, ["proj.weight", "proj.bias", "embed.weight"]);
/// assert_eq!(heads.get::<Embedding>("embed").unwrap().num_embeddings(), 5);
/// assert!(ModuleDict::new().insert("a.b", ReLU).is_err());
/// # Ok::<(), ckpt::nn::NnError>(())
/// ```
#[derive(Default)]
pub struct ModuleDict {
    modules: IndexMap<String, Box<dyn Module>>,
}

impl ModuleDict {
    /// An empty dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// The dict with `module` under `name`. Fails, in PyTorch's words, for a name that
    /// cannot be a key segment: empty, or containing a `.`.
    pub fn insert(mut self, name: impl Into<String>, module: impl Module) -> Result<Self, NnError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NnError::config(
                "ModuleDict",
                "module name can't be empty string \"\"",
            ));
        }
        if name.contains('.') {
            return Err(NnError::config(
                "ModuleDict",
                format!("module name can't contain \".\", got: {name}"),
            ));
        }
        self.modules.insert(name, Box::new(module));
        Ok(self)
    }

    /// The number of modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The module under `name`, if there is one of type `T`.
    pub fn get<T: Module>(&self, name: &str) -> Option<&T> {
        // Through the box, as in `ModuleList::get`.
        (**self.modules.get(name)?).as_any().downcast_ref()
    }

    /// The module under `name` mutably, if there is one of type `T`.
    pub fn get_mut<T: Module>(&mut self, name: &str) -> Option<&mut T> {
        (**self.modules.get_mut(name)?).as_any_mut().downcast_mut()
    }

    /// Removes and returns the module under `name`, keeping the others' order, as PyTorch's
    /// `pop`.
    pub fn remove(&mut self, name: &str) -> Option<Box<dyn Module>> {
        self.modules.shift_remove(name)
    }

    /// The names, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }

    /// Every name and module, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &dyn Module)> {
        self.modules
            .iter()
            .map(|(name, module)| (name.as_str(), &**module))
    }
}

impl StateDict for ModuleDict {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        self.modules.visit(path, role, visitor);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        self.modules.visit_mut(path, role, visitor);
    }

    fn set_training(&mut self, training: bool) {
        self.modules.set_training(training);
    }

    fn training_mode(&self) -> Option<bool> {
        self.modules.training_mode()
    }

    fn module_name(&self) -> &'static str {
        "ModuleDict"
    }

    fn version(&self) -> Option<i64> {
        Some(1)
    }

    fn visit_modules<'a>(
        &'a self,
        path: &mut KeyPath,
        visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
    ) {
        self.modules.visit_modules(path, visitor);
    }
}
