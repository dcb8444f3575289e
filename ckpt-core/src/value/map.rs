//! [`Map`]: a dict of a checkpoint, and the module versions a state dict carries beside it.

use std::ops::{Deref, DerefMut};

use indexmap::IndexMap;

use super::{Key, Value};
use crate::state::Metadata;

/// A dict, in insertion order: what [`Value::Map`] holds. It reads and writes as the
/// [`IndexMap`] it derefs to; a state dict also carries the version of each module
/// ([`metadata`](Map::metadata)), as PyTorch's `OrderedDict` carries `_metadata`, which is no
/// entry: a strict load does not see it as an unexpected key.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::state::Metadata;
/// use ckpt::value::{Key, Map};
/// use ckpt::Value;
///
/// let mut map = Map::new();
/// map.insert(Key::from("bn.weight"), Value::from(ckpt::Tensor::scalar(1.0f32)));
/// map.set_metadata(Some(Metadata::from_iter([("", Some(1)), ("bn", Some(2))])));
/// assert_eq!(map.len(), 1);
/// assert_eq!(map.metadata().and_then(|m| m.version("bn")), Some(2));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map<'a> {
    pub(crate) entries: IndexMap<Key, Value<'a>>,
    pub(crate) metadata: Option<Metadata>,
}

impl<'a> Map<'a> {
    /// An empty map without metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// The version of each module, if this is a state dict that records them.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// Sets (or with `None` removes) the module versions.
    pub fn set_metadata(&mut self, metadata: Option<Metadata>) {
        self.metadata = metadata;
    }

    /// The entries, without the metadata.
    pub fn into_entries(self) -> IndexMap<Key, Value<'a>> {
        self.entries
    }
}

impl<'a> Deref for Map<'a> {
    type Target = IndexMap<Key, Value<'a>>;

    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl DerefMut for Map<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.entries
    }
}

impl<'a> From<IndexMap<Key, Value<'a>>> for Map<'a> {
    fn from(entries: IndexMap<Key, Value<'a>>) -> Self {
        Map {
            entries,
            metadata: None,
        }
    }
}

impl<'a> FromIterator<(Key, Value<'a>)> for Map<'a> {
    fn from_iter<I: IntoIterator<Item = (Key, Value<'a>)>>(iter: I) -> Self {
        Map::from(iter.into_iter().collect::<IndexMap<_, _>>())
    }
}

impl<'a> IntoIterator for Map<'a> {
    type Item = (Key, Value<'a>);
    type IntoIter = indexmap::map::IntoIter<Key, Value<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'m, 'a> IntoIterator for &'m Map<'a> {
    type Item = (&'m Key, &'m Value<'a>);
    type IntoIter = indexmap::map::Iter<'m, Key, Value<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl<'m, 'a> IntoIterator for &'m mut Map<'a> {
    type Item = (&'m Key, &'m mut Value<'a>);
    type IntoIter = indexmap::map::IterMut<'m, Key, Value<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter_mut()
    }
}
