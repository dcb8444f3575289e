//! [`StateDict`] for tensor leaves and for the standard containers.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use indexmap::IndexMap;
use ndarray::{ArrayBase, DataMut, DataOwned, Dimension};

use super::{StateDict, merge_modes};
use crate::dtype::Element;
use crate::shard::Sharded;
use crate::state::{KeyPath, Leaf, Role, TensorSource, Visitor, VisitorMut};
use crate::tensor::Tensor;

impl StateDict for Tensor {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        visitor.tensor(path.as_str(), self.view(), role);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        visitor.tensor(path.as_str(), self, role);
    }
}

/// A sharded tensor is one entry of the state dict, under its global key.
impl StateDict for Sharded {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        visitor.sharded(path.as_str(), self, role);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        visitor.sharded(path.as_str(), self, role);
    }
}

impl<A, S, D> StateDict for ArrayBase<S, D>
where
    A: Element,
    S: DataOwned<Elem = A> + DataMut,
    D: Dimension,
{
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        visitor.tensor(path.as_str(), Leaf::view(self), role);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        visitor.tensor(path.as_str(), self, role);
    }
}

/// Implements `StateDict` for a sequence whose items are keyed by their index.
macro_rules! indexed {
    () => {
        fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
            for (index, item) in self.iter().enumerate() {
                path.push_index(index);
                item.visit(path, role, visitor);
                path.pop();
            }
        }

        fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
            for (index, item) in self.iter_mut().enumerate() {
                path.push_index(index);
                item.visit_mut(path, role, visitor);
                path.pop();
            }
        }

        fn set_training(&mut self, training: bool) {
            for item in self.iter_mut() {
                item.set_training(training);
            }
        }

        fn training_mode(&self) -> Option<bool> {
            self.iter()
                .map(StateDict::training_mode)
                .fold(None, merge_modes)
        }

        fn version(&self) -> Option<i64> {
            Some(1)
        }

        fn visit_modules<'a>(
            &'a self,
            path: &mut KeyPath,
            visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
        ) {
            for (index, item) in self.iter().enumerate() {
                path.push_index(index);
                visitor(path.as_str(), item);
                item.visit_modules(path, visitor);
                path.pop();
            }
        }
    };
}

/// `Vec` items are keyed `0`, `1`, … as in `nn.ModuleList` and `nn.Sequential`.
impl<T: StateDict> StateDict for Vec<T> {
    indexed!();
}

/// Array items are keyed `0`, `1`, … as `Vec` items are.
impl<T: StateDict, const N: usize> StateDict for [T; N] {
    indexed!();
}

/// Implements `StateDict` for a map whose values are keyed by their map key.
macro_rules! keyed {
    () => {
        fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
            for (key, item) in self {
                path.push(key);
                item.visit(path, role, visitor);
                path.pop();
            }
        }

        fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
            for (key, item) in self.iter_mut() {
                path.push(key);
                item.visit_mut(path, role, visitor);
                path.pop();
            }
        }

        fn set_training(&mut self, training: bool) {
            for item in self.values_mut() {
                item.set_training(training);
            }
        }

        fn training_mode(&self) -> Option<bool> {
            self.values()
                .map(StateDict::training_mode)
                .fold(None, merge_modes)
        }

        fn version(&self) -> Option<i64> {
            Some(1)
        }

        fn visit_modules<'a>(
            &'a self,
            path: &mut KeyPath,
            visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
        ) {
            for (key, item) in self {
                path.push(key);
                visitor(path.as_str(), item);
                item.visit_modules(path, visitor);
                path.pop();
            }
        }
    };
}

/// Values are keyed by their map key, in sorted order, as in `nn.ModuleDict`.
impl<T: StateDict> StateDict for BTreeMap<String, T> {
    keyed!();
}

/// Values are keyed by their map key, in insertion order, as in `nn.ModuleDict`.
impl<T: StateDict, H> StateDict for IndexMap<String, T, H> {
    keyed!();
}

/// `None` has no tensors; `Some(module)` is `module`.
impl<T: StateDict> StateDict for Option<T> {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        if let Some(inner) = self {
            inner.visit(path, role, visitor);
        }
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        if let Some(inner) = self {
            inner.visit_mut(path, role, visitor);
        }
    }

    fn set_training(&mut self, training: bool) {
        if let Some(inner) = self {
            inner.set_training(training);
        }
    }

    fn training_mode(&self) -> Option<bool> {
        self.as_ref().and_then(StateDict::training_mode)
    }

    fn version(&self) -> Option<i64> {
        self.as_ref().and_then(StateDict::version)
    }

    fn visit_modules<'a>(
        &'a self,
        path: &mut KeyPath,
        visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
    ) {
        if let Some(inner) = self {
            inner.visit_modules(path, visitor);
        }
    }

    fn upgrade_state(
        &self,
        prefix: &str,
        saved_version: Option<i64>,
        source: &dyn TensorSource,
        supply: &mut dyn FnMut(String, Tensor),
    ) {
        if let Some(inner) = self {
            inner.upgrade_state(prefix, saved_version, source, supply);
        }
    }
}

/// A box is its contents, trait objects (`Box<dyn StateDict>`) included.
impl<T: StateDict + ?Sized> StateDict for Box<T> {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        (**self).visit(path, role, visitor);
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        (**self).visit_mut(path, role, visitor);
    }

    fn set_training(&mut self, training: bool) {
        (**self).set_training(training);
    }

    fn training_mode(&self) -> Option<bool> {
        (**self).training_mode()
    }

    fn module_name(&self) -> &'static str {
        (**self).module_name()
    }

    fn version(&self) -> Option<i64> {
        (**self).version()
    }

    fn visit_modules<'a>(
        &'a self,
        path: &mut KeyPath,
        visitor: &mut dyn FnMut(&str, &'a dyn StateDict),
    ) {
        (**self).visit_modules(path, visitor);
    }

    fn upgrade_state(
        &self,
        prefix: &str,
        saved_version: Option<i64>,
        source: &dyn TensorSource,
        supply: &mut dyn FnMut(String, Tensor),
    ) {
        (**self).upgrade_state(prefix, saved_version, source, supply);
    }
}

/// No tensors: lets generic modules carry a `PhantomData` marker without `#[state(skip)]`.
impl<T: ?Sized> StateDict for PhantomData<T> {
    fn visit<'a>(&'a self, _: &mut KeyPath, _: Role, _: &mut dyn Visitor<'a>) {}

    fn visit_mut(&mut self, _: &mut KeyPath, _: Role, _: &mut dyn VisitorMut) {}
}
