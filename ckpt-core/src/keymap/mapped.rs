//! A source seen through a key plan.

use std::borrow::Cow;

use indexmap::IndexMap;

use crate::shard::Sharded;
use crate::state::{Metadata, TensorSource};
use crate::tensor::TensorView;

/// A source seen through a key plan: what loads read when [`LoadOptions`](crate::LoadOptions)
/// has a key map.
pub(crate) struct MappedSource<'s> {
    inner: &'s dyn TensorSource,
    /// Mapped key -> the source's key, in the source's order.
    keys: IndexMap<String, String>,
}

impl<'s> MappedSource<'s> {
    pub(crate) fn new(inner: &'s dyn TensorSource, pairs: Vec<(String, String)>) -> Self {
        let keys = pairs.into_iter().map(|(from, to)| (to, from)).collect();
        MappedSource { inner, keys }
    }
}

impl TensorSource for MappedSource<'_> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.inner.get_tensor(self.keys.get(key)?)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(self.keys.keys().map(|k| Cow::Borrowed(k.as_str())))
    }

    fn get_sharded(&self, key: &str) -> Option<&Sharded> {
        self.inner.get_sharded(self.keys.get(key)?)
    }

    /// The source's, under its own prefixes: a key map renames tensors, not modules.
    fn metadata(&self) -> Option<&Metadata> {
        self.inner.metadata()
    }
}
