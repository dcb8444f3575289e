//! [`TensorSource`]: anything a model can load tensors from.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use indexmap::IndexMap;

use crate::map::TensorMap;
use crate::tensor::{Tensor, TensorView};

/// Tensors looked up by key: what [`load_state_dict`](crate::StateDict::load_state_dict) reads.
///
/// Implemented by [`TensorMap`] (another model's `state_dict()`), by maps from `String` to
/// [`Tensor`], by loaded checkpoints, and by adapters such as [`StripPrefix`].
pub trait TensorSource {
    /// The tensor under `key`, if there is one.
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>>;

    /// Every key that holds a tensor, in the source's order.
    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_>;
}

impl TensorSource for TensorMap<'_> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.get(key).map(TensorView::view)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(self.keys().map(Cow::Borrowed))
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
}

/// The tensors of a source whose keys start with a prefix, with the prefix removed; other keys
/// are hidden. Loads a DataParallel checkpoint (`module.fc.weight`) into a plain model, or one
/// sub-module (`encoder.`) out of a bigger checkpoint. [`LoadOptions::key_map`] does the same
/// and more from the load options, checked.
///
/// [`LoadOptions::key_map`]: crate::LoadOptions::key_map
///
/// ```
/// use ckpt_core::{StripPrefix, Tensor, TensorSource};
/// use indexmap::IndexMap;
///
/// let mut state = IndexMap::new();
/// state.insert("module.fc.bias".to_owned(), Tensor::scalar(1.0f32));
/// state.insert("other".to_owned(), Tensor::scalar(2.0f32));
/// let stripped = StripPrefix::new(&state, "module.");
/// assert_eq!(stripped.tensor_keys().collect::<Vec<_>>(), ["fc.bias"]);
/// assert!(stripped.get_tensor("fc.bias").is_some());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct StripPrefix<'s, S: ?Sized> {
    source: &'s S,
    prefix: &'s str,
}

impl<'s, S: TensorSource + ?Sized> StripPrefix<'s, S> {
    /// Views `source` with `prefix` removed from its keys.
    pub fn new(source: &'s S, prefix: &'s str) -> Self {
        StripPrefix { source, prefix }
    }
}

impl<S: TensorSource + ?Sized> TensorSource for StripPrefix<'_, S> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.source.get_tensor(&format!("{}{key}", self.prefix))
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(self.source.tensor_keys().filter_map(|key| {
            match key {
                Cow::Borrowed(key) => key.strip_prefix(self.prefix).map(Cow::Borrowed),
                Cow::Owned(key) => key
                    .strip_prefix(self.prefix)
                    .map(|k| Cow::Owned(k.to_owned())),
            }
        }))
    }
}
