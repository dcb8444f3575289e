//! [`TensorSource`]: anything a model can load tensors from.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use indexmap::IndexMap;

use super::{Metadata, TensorMap};
use crate::shard::Sharded;
use crate::tensor::{Tensor, TensorView};

/// Tensors looked up by key: what [`load_state_dict`](crate::StateDict::load_state_dict) reads.
///
/// Implemented by [`TensorMap`] (another model's `state_dict()`), by maps from `String` to
/// [`Tensor`], by checkpoint values and loaded checkpoints; a
/// [`KeyMap`](crate::keymap::KeyMap) renames a source's keys.
pub trait TensorSource {
    /// The tensor under `key`, if there is one.
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>>;

    /// Every key that holds a tensor, in the source's order.
    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_>;

    /// Why nothing may be loaded from this source, in a user's words, if that is so: an entry
    /// a checkpoint does not have, a state dict in which two tensors had one key. A load from
    /// such a source fails whatever its strictness. `None` by default.
    fn defect(&self) -> Option<String> {
        None
    }

    /// The tensor under `key` when the source holds only parts of it (a [`Sharded`] tensor:
    /// the state dict of one rank, what one rank read of a sharded checkpoint), if so. Its
    /// key is among [`tensor_keys`](TensorSource::tensor_keys); a load takes from it the
    /// parts the model needs, and reports the others missing from it. `None` by default.
    fn get_sharded(&self, key: &str) -> Option<&Sharded> {
        let _ = key;
        None
    }

    /// The version of each module the tensors were saved by (PyTorch's `_metadata`), if the
    /// source records them: what each module's
    /// [`upgrade_state`](crate::StateDict::upgrade_state) is told at load time. `None` by
    /// default, which modules read as a checkpoint of unknown, old, versions.
    fn metadata(&self) -> Option<&Metadata> {
        None
    }
}

impl TensorSource for TensorMap<'_> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.get(key).map(TensorView::view)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(
            self.keys()
                .chain(self.sharded().map(|(k, _)| k))
                .map(Cow::Borrowed),
        )
    }

    fn defect(&self) -> Option<String> {
        TensorMap::defect(self)
    }

    fn get_sharded(&self, key: &str) -> Option<&Sharded> {
        TensorMap::get_sharded(self, key)
    }

    fn metadata(&self) -> Option<&Metadata> {
        TensorMap::metadata(self)
    }
}

impl<S> TensorSource for IndexMap<String, Tensor, S>
where
    S: BuildHasher,
{
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.get(key).map(Tensor::view)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(self.keys().map(|k| Cow::Borrowed(k.as_str())))
    }
}

impl TensorSource for BTreeMap<String, Tensor> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.get(key).map(Tensor::view)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(self.keys().map(|k| Cow::Borrowed(k.as_str())))
    }
}

impl<S: BuildHasher> TensorSource for HashMap<String, Tensor, S> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.get(key).map(Tensor::view)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(self.keys().map(|k| Cow::Borrowed(k.as_str())))
    }
}

impl<T: TensorSource + ?Sized> TensorSource for &T {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        (**self).get_tensor(key)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        (**self).tensor_keys()
    }

    fn defect(&self) -> Option<String> {
        (**self).defect()
    }

    fn get_sharded(&self, key: &str) -> Option<&Sharded> {
        (**self).get_sharded(key)
    }

    fn metadata(&self) -> Option<&Metadata> {
        (**self).metadata()
    }
}
