//! [`StateDictOptions`]: how `load_state_dict` matches a source's tensors with a model's.

use crate::keymap::KeyMap;

/// How to load a state dict into a model: `load_state_dict`'s options. Reading a file is
/// configured apart, by [`LoadOptions`](crate::LoadOptions).
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{DTypePolicy, StateDictOptions};
///
/// let options = StateDictOptions::new().strict(false).dtype_policy(DTypePolicy::Exact);
/// assert!(!options.strict);
/// ```
///
/// A warm start: a pretrained checkpoint saved from `nn.DataParallel`, its `fc` renamed `head`,
/// into a model whose head has a new shape.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::StateDictOptions;
/// use ckpt::keymap::KeyMap;
///
/// let options = StateDictOptions::new()
///     .strict(false)
///     .auto_prefix(true)
///     .key_map(KeyMap::new().replace(r"^fc\.", "head.")?)
///     .skip_shape_mismatches(true);
/// assert_eq!(options.key_map.to_string(), r#"replace(/^fc\./ -> "head.")"#);
/// # Ok::<(), ckpt::keymap::KeyMapError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StateDictOptions {
    /// Whether missing and unexpected keys are errors (`true`, the default) or only reported.
    pub strict: bool,
    /// Whether tensors may be cast to the model's dtype.
    pub dtype_policy: DTypePolicy,
    /// Rules applied to the source's keys before they are matched with the model's (none by
    /// default).
    pub key_map: KeyMap,
    /// Whether the wrappers' prefixes are handled without a rule (`false` by default): after
    /// the key map, DataParallel's `module.` or `torch.compile`'s `_orig_mod.` is stripped when
    /// every source key carries it and the model's keys do not, and added when every key of the
    /// model carries it and no source key does, in either case only if more keys then match.
    /// The rule applied is in [`LoadReport::auto_prefix`](crate::LoadReport::auto_prefix).
    pub auto_prefix: bool,
    /// Whether tensors whose shapes differ from the model's are left out and listed in
    /// [`LoadReport::skipped_shape_mismatches`](crate::LoadReport::skipped_shape_mismatches)
    /// (`true`) rather than failing the load (`false`, the default): a new classifier head over
    /// a pretrained backbone.
    pub skip_shape_mismatches: bool,
}

impl Default for StateDictOptions {
    fn default() -> Self {
        StateDictOptions {
            strict: true,
            dtype_policy: DTypePolicy::Cast,
            key_map: KeyMap::new(),
            auto_prefix: false,
            skip_shape_mismatches: false,
        }
    }
}

impl StateDictOptions {
    /// Strict, casting floats to the model's float type: PyTorch's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`StateDictOptions::strict`].
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Sets [`StateDictOptions::dtype_policy`].
    #[must_use]
    pub fn dtype_policy(mut self, policy: DTypePolicy) -> Self {
        self.dtype_policy = policy;
        self
    }

    /// Sets [`StateDictOptions::key_map`]. Loads one sub-module out of a bigger checkpoint with
    /// `key_map(KeyMap::new().select_prefix("encoder."))`.
    #[must_use]
    pub fn key_map(mut self, key_map: KeyMap) -> Self {
        self.key_map = key_map;
        self
    }

    /// Sets [`StateDictOptions::auto_prefix`].
    #[must_use]
    pub fn auto_prefix(mut self, auto: bool) -> Self {
        self.auto_prefix = auto;
        self
    }

    /// Sets [`StateDictOptions::skip_shape_mismatches`].
    #[must_use]
    pub fn skip_shape_mismatches(mut self, skip: bool) -> Self {
        self.skip_shape_mismatches = skip;
        self
    }
}

/// What to do when a checkpoint tensor's dtype differs from the model's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DTypePolicy {
    /// Cast to the model's dtype within a kind, as PyTorch's `copy_` does: any float to any
    /// float, and integers to integers when every value fits. Integers, bools and floats never
    /// convert into one another.
    #[default]
    Cast,
    /// Refuse any difference of dtype.
    Exact,
}
