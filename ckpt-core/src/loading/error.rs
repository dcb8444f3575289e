//! [`LoadError`]: why a load failed, with every [`LoadProblem`] at once.

use std::fmt;

use crate::dtype::DType;
use crate::shard::{Chunk, ShardError};
use crate::tensor::TensorError;

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
        /// Whether only [`DTypePolicy::Exact`](super::DTypePolicy::Exact) refused the cast.
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
    /// The model holds a tensor that ckpt cannot represent (a candle `U32` tensor).
    Unsupported {
        /// The model's key.
        key: String,
        /// Why, in a user's words.
        why: String,
    },
    /// Nothing may be loaded from the source at all: an entry its checkpoint does not have,
    /// a state dict in which two tensors had one key ([`TensorSource::defect`](crate::state::TensorSource::defect)).
    Source {
        /// Why, in a user's words.
        defect: String,
    },
    /// Two keys of the source map to one key under
    /// [`StateDictOptions::key_map`](super::StateDictOptions::key_map).
    KeyCollision {
        /// The key both map to.
        key: String,
        /// The first source key, in the source's order.
        first: String,
        /// The second source key.
        second: String,
    },
    /// The source holds only parts of a tensor (a sharded one), and not all of the part the
    /// model needs.
    NotHeld {
        /// The key.
        key: String,
        /// The part the model needs.
        needed: Box<Chunk>,
        /// The parts the source holds.
        held: Vec<Chunk>,
    },
    /// A sharded tensor, of the model or of the source, is not sound (a part replaced by one
    /// of another shape), or its parts could not be read.
    Shard {
        /// The key.
        key: String,
        /// What is wrong.
        error: Box<ShardError>,
    },
    /// Copying failed after every check had passed. This is a bug in a [`Leaf`](crate::state::Leaf)
    /// implementation; the model may be partly written.
    Copy {
        /// The key.
        key: String,
        /// The leaf's error.
        error: TensorError,
    },
}

impl LoadProblem {
    /// The key the problem is about; empty for a problem with the whole source.
    pub fn key(&self) -> &str {
        match self {
            LoadProblem::Missing { key, .. }
            | LoadProblem::Unexpected { key }
            | LoadProblem::SizeMismatch { key, .. }
            | LoadProblem::DTypeMismatch { key, .. }
            | LoadProblem::OutOfRange { key, .. }
            | LoadProblem::DuplicateKey { key }
            | LoadProblem::Unsupported { key, .. }
            | LoadProblem::KeyCollision { key, .. }
            | LoadProblem::NotHeld { key, .. }
            | LoadProblem::Shard { key, .. }
            | LoadProblem::Copy { key, .. } => key,
            LoadProblem::Source { .. } => "",
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
            LoadProblem::Unsupported { key, why } => write!(f, "cannot load {key}: {why}."),
            LoadProblem::Source { defect } => write!(f, "{defect}."),
            LoadProblem::KeyCollision { key, first, second } => write!(
                f,
                "the checkpoint keys \"{first}\" and \"{second}\" both map to \"{key}\" under \
                 the key map."
            ),
            LoadProblem::NotHeld { key, needed, held } => {
                write!(
                    f,
                    "the state_dict holds only parts of {key}, not all of {needed} that the \
                     model needs; it holds "
                )?;
                if held.is_empty() {
                    f.write_str("none")?;
                }
                for (i, chunk) in held.iter().enumerate() {
                    write!(f, "{}{chunk}", if i > 0 { ", " } else { "" })?;
                }
                f.write_str(".")
            }
            LoadProblem::Shard { key, error } => write!(f, "for sharded {key}: {error}."),
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
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{StateDict, Tensor};
/// use ckpt::loading::LoadProblem;
///
/// let mut model = Tensor::zeros(ckpt::DType::F32, &[2])?; // one tensor, keyed ""
/// let mut state = indexmap::IndexMap::new();
/// state.insert("bias".to_owned(), Tensor::zeros(ckpt::DType::F32, &[2])?);
/// let err = model.load_state_dict(&state, true).unwrap_err();
/// assert_eq!(err.missing_keys(), [""]);
/// assert_eq!(err.unexpected_keys(), ["bias"]);
/// assert!(matches!(err.problems()[0], LoadProblem::Missing { .. }));
/// assert!(err.to_string().starts_with("Error(s) in loading state_dict for Tensor:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    module: String,
    problems: Vec<LoadProblem>,
    hints: Vec<String>,
}

impl LoadError {
    pub(crate) fn new(module: &str, problems: Vec<LoadProblem>, hints: Vec<String>) -> Self {
        LoadError {
            module: module.to_owned(),
            problems,
            hints,
        }
    }

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
pub(super) struct Quoted<'k, K>(pub(super) &'k [K]);

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
