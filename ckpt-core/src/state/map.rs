//! [`TensorMap`]: an ordered map from key paths to borrowed tensors.

use std::fmt;
use std::ops::Index;

use indexmap::IndexMap;

use super::Metadata;
use crate::device::DeviceError;
use crate::shard::Sharded;
use crate::tensor::{Tensor, TensorView};

/// An ordered map from dotted keys to borrowed tensors: what
/// [`state_dict`](crate::StateDict::state_dict) returns, as PyTorch returns an `OrderedDict`.
///
/// It borrows the model, so taking one copies no tensor data; [`TensorMap::to_owned_tensors`]
/// makes an owned copy when the model must change while the map is kept.
///
/// A model in which two tensors have one key (a `#[state(flatten)]` collision, or a
/// hand-written `StateDict`) gives a map that keeps the first under that key and lists the key
/// in [`duplicate_keys`](TensorMap::duplicate_keys); loading from such a map, or saving it, is
/// an error naming the key, as loading into such a model is. So is a map of a model holding a
/// tensor ckpt has no dtype for (a candle `U32` tensor), listed in
/// [`unsupported`](TensorMap::unsupported).
///
/// The state dict of a model with [`Sharded`] fields holds those under their global keys in
/// [`sharded`](TensorMap::sharded), apart from the whole tensors: loading from it fills
/// another model's parts, and [`distributed::save`](crate::distributed::save) writes it as one
/// rank's part of a sharded checkpoint; a plain save of it is an error naming the keys.
#[derive(Clone, Default)]
pub struct TensorMap<'a> {
    entries: IndexMap<String, TensorView<'a>>,
    shards: IndexMap<String, &'a Sharded>,
    duplicates: Vec<String>,
    unsupported: Vec<(String, String)>,
    metadata: Option<Metadata>,
}

impl<'a> TensorMap<'a> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a tensor, returning the one it replaced. A new key goes last; a replaced key keeps
    /// its place.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        tensor: impl Into<TensorView<'a>>,
    ) -> Option<TensorView<'a>> {
        self.entries.insert(key.into(), tensor.into())
    }

    /// Inserts a tensor under a key not seen before; a key seen before keeps its first tensor
    /// and is recorded as a duplicate.
    pub(crate) fn insert_unique(&mut self, key: String, tensor: TensorView<'a>) {
        if self.entries.contains_key(&key) || self.shards.contains_key(&key) {
            if !self.duplicates.contains(&key) {
                self.duplicates.push(key);
            }
        } else {
            self.entries.insert(key, tensor);
        }
    }

    /// Inserts a sharded tensor under a key not seen before, as
    /// [`insert_unique`](TensorMap::insert_unique) does.
    pub(crate) fn insert_sharded_unique(&mut self, key: String, tensor: &'a Sharded) {
        if self.entries.contains_key(&key) || self.shards.contains_key(&key) {
            if !self.duplicates.contains(&key) {
                self.duplicates.push(key);
            }
        } else {
            self.shards.insert(key, tensor);
        }
    }

    /// Inserts the parts of a tensor this process holds only parts of, under its global key,
    /// returning the parts it replaced: how a state dict for
    /// [`distributed::save`](crate::distributed::save) is built by hand rather than derived.
    /// A key also given a whole tensor makes saving and loading the map an error naming it.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::shard::{Chunk, Sharded};
    /// use ckpt::{DType, state::TensorMap};
    ///
    /// let rows = Chunk::split(&[4, 2], 0, 2)?.remove(1);
    /// let part = Sharded::zeros(DType::F32, vec![4, 2], vec![rows])?;
    /// let mut map = TensorMap::new();
    /// map.insert_sharded("w", &part);
    /// assert_eq!(map.get_sharded("w").map(Sharded::global_shape), Some(&[4, 2][..]));
    /// # Ok::<(), ckpt::shard::ShardError>(())
    /// ```
    pub fn insert_sharded(
        &mut self,
        key: impl Into<String>,
        tensor: &'a Sharded,
    ) -> Option<&'a Sharded> {
        let key = key.into();
        if self.entries.contains_key(&key) && !self.duplicates.contains(&key) {
            self.duplicates.push(key.clone());
        }
        self.shards.insert(key, tensor)
    }

    /// The tensors this process holds only parts of, by global key, in order.
    pub fn sharded(&self) -> impl ExactSizeIterator<Item = (&str, &'a Sharded)> + '_ {
        self.shards.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The sharded tensor under `key`.
    pub fn get_sharded(&self, key: &str) -> Option<&'a Sharded> {
        self.shards.get(key).copied()
    }

    /// The keys that more than one tensor of the model had; empty for every sound model.
    pub fn duplicate_keys(&self) -> &[String] {
        &self.duplicates
    }

    /// Records a tensor of the model that has no view, and why.
    pub(crate) fn insert_unsupported(&mut self, key: String, why: &str) {
        self.unsupported.push((key, why.to_owned()));
    }

    /// The model's tensors that ckpt cannot represent, each with why: a candle tensor of a
    /// dtype ckpt lacks. Empty for models of ckpt tensors and ndarray arrays.
    pub fn unsupported(&self) -> &[(String, String)] {
        &self.unsupported
    }

    /// Why the map may not be saved or loaded from, if so: duplicate keys, tensors ckpt cannot
    /// represent.
    pub(crate) fn defect(&self) -> Option<String> {
        let unsupported = self
            .unsupported
            .iter()
            .map(|(key, why)| format!("the tensor \"{key}\" cannot be saved or loaded: {why}"));
        let all: Vec<String> = duplicates_defect(&self.duplicates)
            .into_iter()
            .chain(unsupported)
            .collect();
        (!all.is_empty()).then(|| all.join("; "))
    }

    /// Why the map may not be saved to one file, if so: a [`defect`](TensorMap::defect), or
    /// a sharded tensor, of which this process holds only parts.
    pub(crate) fn save_defect(&self) -> Option<String> {
        let sharded = self.shards.keys().next().map(|key| {
            format!(
                "the tensor \"{key}\" is sharded: this process holds only parts of it; save \
                 every rank's state dict with ckpt::distributed::save"
            )
        });
        let all: Vec<String> = self.defect().into_iter().chain(sharded).collect();
        (!all.is_empty()).then(|| all.join("; "))
    }

    /// The version of each module (PyTorch's `_metadata`), if recorded: a model's
    /// [`state_dict`](crate::StateDict::state_dict) records each module's
    /// [`version`](crate::StateDict::version); a map built from tensors has none.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// Sets (or with `None` removes) the module versions the map carries.
    pub fn set_metadata(&mut self, metadata: Option<Metadata>) {
        self.metadata = metadata;
    }

    /// The tensor under `key`.
    pub fn get(&self, key: &str) -> Option<&TensorView<'a>> {
        self.entries.get(key)
    }

    /// Removes `key`, keeping the order of the rest.
    pub fn remove(&mut self, key: &str) -> Option<TensorView<'a>> {
        self.entries.shift_remove(key)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.keys().map(String::as_str)
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &TensorView<'a>)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The total size of the tensor data in bytes.
    pub fn nbytes(&self) -> usize {
        self.entries.values().map(TensorView::nbytes).sum()
    }

    /// Owned copies of every tensor, in order, on their devices (GPU tensors share their data
    /// until either side is written; candle tensors are copied to host memory); an error if a
    /// device fails a copy.
    pub fn to_owned_tensors(&self) -> Result<IndexMap<String, Tensor>, DeviceError> {
        self.entries
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.to_owned_tensor()?)))
            .collect()
    }
}

/// The defect of a state dict in which several tensors had the keys `duplicates`.
fn duplicates_defect(duplicates: &[String]) -> Option<String> {
    let (first, rest) = duplicates.split_first()?;
    let mut keys = format!("{first:?}");
    for key in rest {
        keys.push_str(&format!(", {key:?}"));
    }
    Some(format!(
        "two tensors of the state dict have the key(s) {keys}, so one of each pair would be \
         lost (a `#[state(flatten)]` collision, or a hand-written `StateDict`)"
    ))
}

impl<'a> Index<&str> for TensorMap<'a> {
    type Output = TensorView<'a>;

    /// # Panics
    ///
    /// If `key` is absent; the message names it.
    fn index(&self, key: &str) -> &TensorView<'a> {
        match self.entries.get(key) {
            Some(tensor) => tensor,
            None => panic!("no tensor under key {key:?}"),
        }
    }
}

impl<'a, K: Into<String>, V: Into<TensorView<'a>>> FromIterator<(K, V)> for TensorMap<'a> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        TensorMap {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            shards: IndexMap::new(),
            duplicates: Vec::new(),
            unsupported: Vec::new(),
            metadata: None,
        }
    }
}

impl<'a> IntoIterator for TensorMap<'a> {
    type Item = (String, TensorView<'a>);
    type IntoIter = indexmap::map::IntoIter<String, TensorView<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl fmt::Debug for TensorMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v as &dyn fmt::Debug)))
            .entries(self.shards.iter().map(|(k, v)| (k, v as &dyn fmt::Debug)))
            .finish()
    }
}

impl PartialEq for TensorMap<'_> {
    /// The same keys in the same order, with equal tensors, and the same module versions.
    fn eq(&self, other: &Self) -> bool {
        self.duplicates == other.duplicates
            && self.shards.len() == other.shards.len()
            && self
                .shards
                .iter()
                .zip(&other.shards)
                .all(|((ka, a), (kb, b))| ka == kb && a == b)
            && self.unsupported == other.unsupported
            && self.metadata == other.metadata
            && self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((ka, va), (kb, vb))| ka == kb && va == vb)
    }
}
