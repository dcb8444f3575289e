//! [`Metadata`]: the version of each module's layout of keys, as PyTorch's `_metadata`.

use indexmap::IndexMap;

/// The version of each module of a state dict, by the module's prefix (`""` for the root,
/// `"layer1.0.bn1"`): what PyTorch keeps in a state dict's `_metadata` attribute
/// (`OrderedDict([("", {"version": 1}), ("bn", {"version": 2}), …])`), and what
/// `load_state_dict` hands each module, so that a module whose keys changed between versions
/// (BatchNorm gained `num_batches_tracked` in version 2) still loads older checkpoints.
///
/// A model's [`state_dict`](crate::StateDict::state_dict) records one, from each module's
/// [`version`](crate::StateDict::version); a `.pt` file's `_metadata` is read into one and
/// written back from one; ckpt's own format keeps it. Each entry is the version or, for an
/// entry without one, `None`; PyTorch writes nothing else there, and anything else a file holds
/// in an entry is not kept.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::state::Metadata;
///
/// let mut metadata = Metadata::new();
/// metadata.insert("", Some(1));
/// metadata.insert("bn", Some(2));
/// assert_eq!(metadata.version("bn"), Some(2));
/// assert_eq!(metadata.version("fc"), None);
/// assert_eq!(metadata.iter().collect::<Vec<_>>(), [("", Some(1)), ("bn", Some(2))]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    modules: IndexMap<String, Option<i64>>,
}

impl Metadata {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the version of the module at `prefix`; a prefix seen before keeps its place.
    pub fn insert(&mut self, prefix: impl Into<String>, version: Option<i64>) {
        self.modules.insert(prefix.into(), version);
    }

    /// The version recorded for the module at `prefix`: `None` when there is no entry for it,
    /// or an entry without a version, which PyTorch's modules read alike.
    pub fn version(&self, prefix: &str) -> Option<i64> {
        self.modules.get(prefix).copied().flatten()
    }

    /// Whether there is an entry for `prefix`.
    pub fn contains(&self, prefix: &str) -> bool {
        self.modules.contains_key(prefix)
    }

    /// Every entry, prefix and version, in order (a module before the modules inside it, as
    /// PyTorch's `state_dict()` records them).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, Option<i64>)> + '_ {
        self.modules.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }
}

impl<K: Into<String>> FromIterator<(K, Option<i64>)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, Option<i64>)>>(iter: I) -> Self {
        Metadata {
            modules: iter.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }
}
