//! PyTorch's `load_state_dict`, made transactional: options, the report and the error.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use indexmap::IndexMap;

use crate::keymap::{KeyMap, KeyMapError, MappedSource};
use crate::location::MapLocation;
use crate::module::{KeyPath, Leaf, Role, StateDict};
use crate::source::TensorSource;
use crate::tensor::TensorError;
use crate::{DType, DTypeKind};

/// How to load a state dict into a model.
///
/// ```
/// use ckpt_core::{DTypePolicy, LoadOptions};
///
/// let options = LoadOptions::new().strict(false).dtype_policy(DTypePolicy::Exact);
/// assert!(!options.strict);
/// ```
///
/// A warm start: a pretrained checkpoint saved from `nn.DataParallel`, its `fc` renamed `head`,
/// into a model whose head has a new shape.
///
/// ```
/// use ckpt_core::{KeyMap, LoadOptions};
///
/// let options = LoadOptions::new()
///     .strict(false)
///     .auto_prefix(true)
///     .key_map(KeyMap::new().replace(r"^fc\.", "head.")?)
///     .skip_shape_mismatches(true);
/// assert_eq!(options.key_map.to_string(), r#"replace(/^fc\./ -> "head.")"#);
/// # Ok::<(), ckpt_core::KeyMapError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Whether missing and unexpected keys are errors (`true`, the default) or only reported.
    pub strict: bool,
    /// Whether tensors may be cast to the model's dtype.
    pub dtype_policy: DTypePolicy,
    /// Where loaded tensors go, from the device each was saved on.
    pub map_location: MapLocation,
    /// Whether file checksums are verified before anything is used (`true`, the default);
    /// turn off only for files you trust, to save one pass over the data.
    pub verify_checksums: bool,
    /// Whether files are memory-mapped (`true`, the default) rather than read into memory.
    pub mmap: bool,
    /// Rules applied to the source's keys before they are matched with the model's (none by
    /// default).
    pub key_map: KeyMap,
    /// Whether the wrappers' prefixes are handled without a rule (`false` by default): after
    /// the key map, DataParallel's `module.` or `torch.compile`'s `_orig_mod.` is stripped when
    /// every source key carries it and the model's keys do not, and added when every key of the
    /// model carries it and no source key does, in either case only if more keys then match.
    /// The rule applied is in [`LoadReport::auto_prefix`].
    pub auto_prefix: bool,
    /// Whether tensors whose shapes differ from the model's are left out and listed in
    /// [`LoadReport::skipped_shape_mismatches`] (`true`) rather than failing the load (`false`,
    /// the default): a new classifier head over a pretrained backbone.
    pub skip_shape_mismatches: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            strict: true,
            dtype_policy: DTypePolicy::Cast,
            map_location: MapLocation::Saved,
            verify_checksums: true,
            mmap: true,
            key_map: KeyMap::new(),
            auto_prefix: false,
            skip_shape_mismatches: false,
        }
    }
}

impl LoadOptions {
    /// Strict, casting floats to the model's float type: PyTorch's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`LoadOptions::strict`].
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Sets [`LoadOptions::dtype_policy`].
    #[must_use]
    pub fn dtype_policy(mut self, policy: DTypePolicy) -> Self {
        self.dtype_policy = policy;
        self
    }

    /// Sets [`LoadOptions::map_location`]: a [`Device`](crate::Device), a table
    /// `[(from, to), ...]`, or a [`MapLocation`].
    #[must_use]
    pub fn map_location(mut self, location: impl Into<MapLocation>) -> Self {
        self.map_location = location.into();
        self
    }

    /// Sets [`LoadOptions::verify_checksums`].
    #[must_use]
    pub fn verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }

    /// Sets [`LoadOptions::mmap`].
    #[must_use]
    pub fn mmap(mut self, mmap: bool) -> Self {
        self.mmap = mmap;
        self
    }

    /// Sets [`LoadOptions::key_map`]. Loads one sub-module out of a bigger checkpoint with
    /// `key_map(KeyMap::new().select_prefix("encoder."))`.
    #[must_use]
    pub fn key_map(mut self, key_map: KeyMap) -> Self {
        self.key_map = key_map;
        self
    }

    /// Sets [`LoadOptions::auto_prefix`].
    #[must_use]
    pub fn auto_prefix(mut self, auto: bool) -> Self {
        self.auto_prefix = auto;
        self
    }

    /// Sets [`LoadOptions::skip_shape_mismatches`].
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

/// What a successful load did, as PyTorch's `_IncompatibleKeys` plus what loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// Keys copied into the model, in the model's order.
    pub loaded_keys: Vec<String>,
    /// Keys of the model that the source lacked (only in non-strict loads).
    pub missing_keys: Vec<String>,
    /// Keys of the source that the model lacks (only in non-strict loads).
    pub unexpected_keys: Vec<String>,
    /// Loaded keys whose tensors were cast to the model's dtype.
    pub cast_keys: Vec<String>,
    /// Keys left as they were because the shapes differ (only with
    /// [`LoadOptions::skip_shape_mismatches`]).
    pub skipped_shape_mismatches: Vec<String>,
    /// The rules of [`LoadOptions::key_map`], as displayed, that matched no key of the source:
    /// usually a typo.
    pub unmatched_rules: Vec<String>,
    /// The prefix rule [`LoadOptions::auto_prefix`] applied, as displayed, if any.
    pub auto_prefix: Option<String>,
}

impl LoadReport {
    /// Whether every key matched: nothing missing, nothing unexpected.
    pub fn is_complete(&self) -> bool {
        self.missing_keys.is_empty() && self.unexpected_keys.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_complete() {
            write!(
                f,
                "<All keys matched successfully: {} loaded>",
                self.loaded_keys.len()
            )?;
        } else {
            write!(
                f,
                "{} loaded; missing keys: [{}]; unexpected keys: [{}]",
                self.loaded_keys.len(),
                Quoted(&self.missing_keys),
                Quoted(&self.unexpected_keys),
            )?;
        }
        if !self.skipped_shape_mismatches.is_empty() {
            write!(
                f,
                "; skipped for their shapes: [{}]",
                Quoted(&self.skipped_shape_mismatches)
            )?;
        }
        if !self.unmatched_rules.is_empty() {
            write!(
                f,
                "; key rules that matched nothing: [{}]",
                self.unmatched_rules.join(", ")
            )?;
        }
        Ok(())
    }
}

/// One thing wrong with a load.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadProblem {
    /// The model has the key; the source does not.
    Missing {
        /// The model's key.
        key: String,
        /// A similar unexpected key of the source, if there is one.
        suggestion: Option<String>,
    },
    /// The source has the key; the model does not.
    Unexpected {
        /// The source's key.
        key: String,
    },
    /// The shapes differ.
    SizeMismatch {
        /// The key.
        key: String,
        /// The shape in the source.
        checkpoint: Vec<usize>,
        /// The shape in the model.
        model: Vec<usize>,
    },
    /// The dtypes differ and may not be cast.
    DTypeMismatch {
        /// The key.
        key: String,
        /// The dtype in the source.
        checkpoint: DType,
        /// The dtype in the model.
        model: DType,
        /// Whether only [`DTypePolicy::Exact`] refused the cast.
        refused_by_policy: bool,
    },
    /// A value does not fit the model's integer dtype.
    OutOfRange {
        /// The key.
        key: String,
        /// Which value, and why.
        error: TensorError,
    },
    /// Two tensors of the model map to one key (a `#[state(flatten)]` collision).
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// Two keys of the source map to one key under [`LoadOptions::key_map`].
    KeyCollision {
        /// The key both map to.
        key: String,
        /// The first source key, in the source's order.
        first: String,
        /// The second source key.
        second: String,
    },
    /// Copying failed after every check had passed. This is a bug in a [`Leaf`]
    /// implementation; the model may be partly written.
    Copy {
        /// The key.
        key: String,
        /// The leaf's error.
        error: TensorError,
    },
}

impl LoadProblem {
    /// The key the problem is about.
    pub fn key(&self) -> &str {
        match self {
            LoadProblem::Missing { key, .. }
            | LoadProblem::Unexpected { key }
            | LoadProblem::SizeMismatch { key, .. }
            | LoadProblem::DTypeMismatch { key, .. }
            | LoadProblem::OutOfRange { key, .. }
            | LoadProblem::DuplicateKey { key }
            | LoadProblem::KeyCollision { key, .. }
            | LoadProblem::Copy { key, .. } => key,
        }
    }
}

impl fmt::Display for LoadProblem {
    /// One problem alone; [`LoadError`] groups missing and unexpected keys as PyTorch does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadProblem::Missing { key, suggestion } => {
                write!(f, "Missing key(s) in state_dict: \"{key}\".")?;
                if let Some(near) = suggestion {
                    write!(f, " Did you mean \"{near}\"?")?;
                }
                Ok(())
            }
            LoadProblem::Unexpected { key } => {
                write!(f, "Unexpected key(s) in state_dict: \"{key}\".")
            }
            LoadProblem::SizeMismatch {
                key,
                checkpoint,
                model,
            } => write!(
                f,
                "size mismatch for {key}: copying a param with shape {checkpoint:?} from \
                 checkpoint, the shape in current model is {model:?}."
            ),
            LoadProblem::DTypeMismatch {
                key,
                checkpoint,
                model,
                refused_by_policy,
            } => {
                write!(
                    f,
                    "dtype mismatch for {key}: copying a param of dtype {checkpoint} from \
                     checkpoint, the dtype in current model is {model}"
                )?;
                if *refused_by_policy {
                    f.write_str(" (casts are refused by DTypePolicy::Exact).")
                } else {
                    f.write_str(" (integer, bool and float tensors do not convert).")
                }
            }
            LoadProblem::OutOfRange { key, error } => write!(f, "for {key}: {error}."),
            LoadProblem::DuplicateKey { key } => {
                write!(f, "two tensors of the model map to the key \"{key}\".")
            }
            LoadProblem::KeyCollision { key, first, second } => write!(
                f,
                "the checkpoint keys \"{first}\" and \"{second}\" both map to \"{key}\" under \
                 the key map."
            ),
            LoadProblem::Copy { key, error } => write!(f, "copying {key} failed: {error}."),
        }
    }
}

/// Why a load failed: every problem at once, in PyTorch's wording, with hints. The model is
/// unchanged.
///
/// ```text
/// Error(s) in loading state_dict for Net:
///     Missing key(s) in state_dict: "fc.bias".
///     Unexpected key(s) in state_dict: "fc.biass".
///     size mismatch for fc.weight: copying a param with shape [10, 4] from checkpoint, the shape in current model is [10, 8].
///     Did you mean "fc.biass" for missing "fc.bias"?
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    module: String,
    problems: Vec<LoadProblem>,
    hints: Vec<String>,
}

impl LoadError {
    /// The name of the model, as in the message's first line.
    pub fn module_name(&self) -> &str {
        &self.module
    }

    /// Every problem found, in the model's key order: missing keys and size or dtype mismatches
    /// first, then unexpected keys.
    pub fn problems(&self) -> &[LoadProblem] {
        &self.problems
    }

    /// Advice that would make the load succeed, such as stripping a `module.` prefix.
    pub fn hints(&self) -> &[String] {
        &self.hints
    }

    /// The model's keys that the source lacked.
    pub fn missing_keys(&self) -> Vec<&str> {
        self.keys_of(|p| matches!(p, LoadProblem::Missing { .. }))
    }

    /// The source's keys that the model lacks.
    pub fn unexpected_keys(&self) -> Vec<&str> {
        self.keys_of(|p| matches!(p, LoadProblem::Unexpected { .. }))
    }

    fn keys_of(&self, pick: impl Fn(&LoadProblem) -> bool) -> Vec<&str> {
        self.problems
            .iter()
            .filter(|p| pick(p))
            .map(LoadProblem::key)
            .collect()
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error(s) in loading state_dict for {}:", self.module)?;
        let missing = self.missing_keys();
        if !missing.is_empty() {
            write!(f, "\n\tMissing key(s) in state_dict: {}.", Quoted(&missing))?;
        }
        let unexpected = self.unexpected_keys();
        if !unexpected.is_empty() {
            write!(
                f,
                "\n\tUnexpected key(s) in state_dict: {}.",
                Quoted(&unexpected)
            )?;
        }
        for problem in &self.problems {
            match problem {
                LoadProblem::Missing { .. } | LoadProblem::Unexpected { .. } => {}
                other => write!(f, "\n\t{other}")?,
            }
        }
        for problem in &self.problems {
            if let LoadProblem::Missing {
                key,
                suggestion: Some(near),
            } = problem
            {
                write!(f, "\n\tDid you mean \"{near}\" for missing \"{key}\"?")?;
            }
        }
        for hint in &self.hints {
            write!(f, "\n\tHint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// Keys as PyTorch lists them: `"a", "b"`.
struct Quoted<'k, K>(&'k [K]);

impl<K: AsRef<str>> fmt::Display for Quoted<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "\"{}\"", key.as_ref())?;
        }
        Ok(())
    }
}

/// A model tensor's key, dtype and shape, collected before anything is written.
struct Slot {
    dtype: DType,
    shape: Vec<usize>,
}

/// Checks everything, then copies: the model changes only if the whole load succeeds.
pub(crate) fn load_into<M: StateDict + ?Sized>(
    model: &mut M,
    source: &dyn TensorSource,
    options: &LoadOptions,
) -> Result<LoadReport, LoadError> {
    load_into_with(model, source, options, &mut |leaf, tensor| {
        leaf.copy_from(tensor)
    })
}

/// [`load_into`], copying each checked tensor with `copy`.
pub(crate) fn load_into_with<M: StateDict + ?Sized>(
    model: &mut M,
    source: &dyn TensorSource,
    options: &LoadOptions,
    copy: &mut dyn FnMut(&mut dyn Leaf, &crate::TensorView<'_>) -> Result<(), TensorError>,
) -> Result<LoadReport, LoadError> {
    let mut problems = Vec::new();
    let mut slots: IndexMap<String, Slot> = IndexMap::new();
    model.visit(
        &mut KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, tensor: crate::TensorView<'_>, role: Role| {
            if !role.is_persistent() {
                return;
            }
            let slot = Slot {
                dtype: tensor.dtype(),
                shape: tensor.shape().to_vec(),
            };
            if slots.insert(key.to_owned(), slot).is_some() {
                problems.push(LoadProblem::DuplicateKey {
                    key: key.to_owned(),
                });
            }
        },
    );

    let mut report = LoadReport::default();
    let mapped;
    let source: &dyn TensorSource = if options.key_map.is_empty() && !options.auto_prefix {
        source
    } else {
        let keys: Vec<Cow<'_, str>> = source.tensor_keys().collect();
        let plan = options.key_map.plan(&keys);
        report.unmatched_rules = plan.unmatched_rules().to_vec();
        for collision in plan.collisions() {
            if let KeyMapError::Collision { key, first, second } = collision {
                problems.push(LoadProblem::KeyCollision {
                    key: key.clone(),
                    first: first.clone(),
                    second: second.clone(),
                });
            }
        }
        let mut pairs = plan.pairs().to_vec();
        if options.auto_prefix {
            report.auto_prefix = auto_prefix(&mut pairs, &slots);
        }
        mapped = MappedSource::new(source, pairs);
        &mapped
    };
    for (key, slot) in &slots {
        let Some(tensor) = source.get_tensor(key) else {
            report.missing_keys.push(key.clone());
            continue;
        };
        if tensor.shape() != slot.shape.as_slice() {
            if options.skip_shape_mismatches {
                report.skipped_shape_mismatches.push(key.clone());
                continue;
            }
            problems.push(LoadProblem::SizeMismatch {
                key: key.clone(),
                checkpoint: tensor.shape().to_vec(),
                model: slot.shape.clone(),
            });
            continue;
        }
        let from = tensor.dtype();
        if from != slot.dtype {
            let same_kind = from.kind() == slot.dtype.kind() && from.kind() != DTypeKind::Bool;
            if !same_kind || options.dtype_policy == DTypePolicy::Exact {
                problems.push(LoadProblem::DTypeMismatch {
                    key: key.clone(),
                    checkpoint: from,
                    model: slot.dtype,
                    refused_by_policy: same_kind,
                });
                continue;
            }
            if let Err(error) = tensor.check_cast(slot.dtype) {
                problems.push(LoadProblem::OutOfRange {
                    key: key.clone(),
                    error,
                });
                continue;
            }
            report.cast_keys.push(key.clone());
        }
        report.loaded_keys.push(key.clone());
    }
    report.unexpected_keys = source
        .tensor_keys()
        .filter(|key| !slots.contains_key(key.as_ref()))
        .map(Cow::into_owned)
        .collect();

    let incomplete = !report.is_complete();
    if !problems.is_empty() || (options.strict && incomplete) {
        let suggestions = suggest(&report.missing_keys, &report.unexpected_keys);
        let mut all: Vec<LoadProblem> = report
            .missing_keys
            .iter()
            .zip(suggestions)
            .map(|(key, suggestion)| LoadProblem::Missing {
                key: key.clone(),
                suggestion,
            })
            .filter(|_| options.strict)
            .collect();
        all.extend(problems);
        if options.strict {
            all.extend(
                report
                    .unexpected_keys
                    .iter()
                    .map(|key| LoadProblem::Unexpected { key: key.clone() }),
            );
        }
        let mut hints = prefix_hints(&slots, &report, source);
        hints.extend(
            report
                .unmatched_rules
                .iter()
                .map(|rule| format!("the key rule {rule} matched no key of the checkpoint.")),
        );
        if !slots.is_empty() && source.tensor_keys().next().is_none() {
            hints.push(
                "the state dict holds no tensors at all; if it is a checkpoint indexed by name \
                 (`checkpoint[\"model_state_dict\"]`), check the name: a missing one gives \
                 an empty value."
                    .to_owned(),
            );
        }
        return Err(LoadError {
            module: model.module_name().to_owned(),
            problems: all,
            hints,
        });
    }

    let loaded: HashSet<&str> = report.loaded_keys.iter().map(String::as_str).collect();
    let mut failure = None;
    model.visit_mut(
        &mut KeyPath::new(),
        Role::Parameter,
        &mut |key: &str, leaf: &mut dyn Leaf, role: Role| {
            if !role.is_persistent() || failure.is_some() || !loaded.contains(key) {
                return;
            }
            if let Some(tensor) = source.get_tensor(key) {
                if let Err(error) = copy(leaf, &tensor) {
                    failure = Some(LoadProblem::Copy {
                        key: key.to_owned(),
                        error,
                    });
                }
            }
        },
    );
    if let Some(problem) = failure {
        return Err(LoadError {
            module: model.module_name().to_owned(),
            problems: vec![problem],
            hints: Vec::new(),
        });
    }
    Ok(report)
}

/// The prefixes that wrappers put before a model's keys: `nn.DataParallel`'s and
/// `torch.compile`'s.
const WRAPPER_PREFIXES: [&str; 2] = ["module.", "_orig_mod."];

/// Strips a wrapper's prefix from the source's keys (`pairs` maps source keys to the keys the
/// model will see) when all carry it and the model's keys do not, or adds it when all of the
/// model's keys carry it and none of the source's do; returns the rule applied. Either happens
/// only if more source keys then match the model's, so a model that has a field called
/// `module` is not mistaken for a wrapper.
fn auto_prefix(pairs: &mut [(String, String)], slots: &IndexMap<String, Slot>) -> Option<String> {
    let targets = || pairs.iter().map(|(_, to)| to.as_str());
    let matching = |keys: &mut dyn Iterator<Item = String>| -> usize {
        keys.filter(|key| slots.contains_key(key)).count()
    };
    let now = matching(&mut targets().map(str::to_owned));
    let model_has = |prefix| all_have(slots.keys().map(String::as_str), prefix);
    for prefix in WRAPPER_PREFIXES {
        if all_have(targets(), prefix)
            && !model_has(prefix)
            && matching(&mut targets().map(|key| key[prefix.len()..].to_owned())) > now
        {
            for (_, key) in pairs.iter_mut() {
                key.drain(..prefix.len());
            }
            return Some(KeyMap::new().strip_prefix(prefix).to_string());
        }
    }
    for prefix in WRAPPER_PREFIXES {
        if model_has(prefix)
            && !targets().any(|key| key.starts_with(prefix))
            && matching(&mut targets().map(|key| format!("{prefix}{key}"))) > now
        {
            for (_, key) in pairs.iter_mut() {
                key.insert_str(0, prefix);
            }
            return Some(KeyMap::new().add_prefix(prefix).to_string());
        }
    }
    None
}

/// Whether there are keys and every one has `prefix` and more.
fn all_have<'k>(mut keys: impl Iterator<Item = &'k str>, prefix: &str) -> bool {
    let mut any = false;
    let every = keys.all(|key| {
        any = true;
        key.len() > prefix.len() && key.starts_with(prefix)
    });
    any && every
}

/// The load options that strip `prefix` from a checkpoint's keys, as a hint shows them.
fn strip_option(prefix: &str) -> String {
    match prefix {
        "module." => "LoadOptions::new().key_map(KeyMap::data_parallel())".to_owned(),
        "_orig_mod." => "LoadOptions::new().key_map(KeyMap::compiled())".to_owned(),
        _ => format!("LoadOptions::new().key_map(KeyMap::new().strip_prefix(\"{prefix}\"))"),
    }
}

/// The load options that add `prefix` to a checkpoint's keys, as a hint shows them.
fn add_option(prefix: &str) -> String {
    if WRAPPER_PREFIXES.contains(&prefix) {
        "LoadOptions::new().auto_prefix(true)".to_owned()
    } else {
        format!("LoadOptions::new().key_map(KeyMap::new().add_prefix(\"{prefix}\"))")
    }
}

/// For each missing key, the closest unexpected key if it is only a typo away.
fn suggest(missing: &[String], unexpected: &[String]) -> Vec<Option<String>> {
    missing
        .iter()
        .map(|key| {
            let limit = (key.len() / 5).max(2);
            unexpected
                .iter()
                .map(|candidate| (strsim::levenshtein(key, candidate), candidate))
                .filter(|(distance, _)| *distance <= limit)
                .min_by_key(|(distance, _)| *distance)
                .map(|(_, candidate)| candidate.clone())
        })
        .collect()
}

/// Explains a prefix that, stripped from the source's keys or added to them, would make the
/// load succeed: DataParallel's `module.`, `torch.compile`'s `_orig_mod.`, or a checkpoint's
/// `model_state_dict.`.
fn prefix_hints(
    slots: &IndexMap<String, Slot>,
    report: &LoadReport,
    source: &dyn TensorSource,
) -> Vec<String> {
    let (missing, unexpected) = (&report.missing_keys, &report.unexpected_keys);
    if missing.is_empty() || unexpected.is_empty() || missing.len() != unexpected.len() {
        return Vec::new();
    }
    let fits = |model_key: &str, source_key: &str| {
        let slot = &slots[model_key];
        source.get_tensor(source_key).is_some_and(|t| {
            t.shape() == slot.shape.as_slice()
                && (t.dtype() == slot.dtype || t.dtype().kind() == slot.dtype.kind())
        })
    };
    let origin = |prefix: &str| match prefix {
        "module." => " (the prefix nn.DataParallel adds)",
        "_orig_mod." => " (the prefix torch.compile adds)",
        _ => "",
    };

    if let Some(prefix) = common_prefix(unexpected) {
        let wanted: HashSet<&str> = missing.iter().map(String::as_str).collect();
        if unexpected.iter().all(|key| {
            let stripped = &key[prefix.len()..];
            wanted.contains(stripped) && fits(stripped, key)
        }) {
            return vec![format!(
                "every unexpected key starts with \"{prefix}\"{}; with that prefix stripped \
                 the load succeeds: load with `{}`.",
                origin(prefix),
                strip_option(prefix),
            )];
        }
    }
    if let Some(prefix) = common_prefix(missing) {
        let present: HashSet<&str> = unexpected.iter().map(String::as_str).collect();
        if missing.iter().all(|key| {
            let stripped = &key[prefix.len()..];
            present.contains(stripped) && fits(key, stripped)
        }) {
            return vec![format!(
                "every missing key starts with \"{prefix}\"{} and the checkpoint has them \
                 without it; load the checkpoint into the wrapped module instead, or load with \
                 `{}`.",
                origin(prefix),
                add_option(prefix),
            )];
        }
    }
    Vec::new()
}

/// The first segment (with its dot) that every key starts with.
fn common_prefix(keys: &[String]) -> Option<&str> {
    let first = keys.first()?;
    let end = first.find('.')? + 1;
    let prefix = &first[..end];
    keys.iter()
        .all(|key| key.len() > end && key.starts_with(prefix))
        .then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_typos_only() {
        let missing = ["fc.bias".to_owned(), "fc.weight".to_owned()];
        let unexpected = ["fc.biass".to_owned(), "head.weight".to_owned()];
        assert_eq!(
            suggest(&missing, &unexpected),
            [Some("fc.biass".to_owned()), None]
        );
    }

    #[test]
    fn common_prefixes() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            common_prefix(&keys(&["module.a", "module.b.c"])),
            Some("module.")
        );
        assert_eq!(common_prefix(&keys(&["module.a", "other.b"])), None);
        assert_eq!(common_prefix(&keys(&["module.", "module.b"])), None);
        assert_eq!(common_prefix(&keys(&["plain"])), None);
    }
}
