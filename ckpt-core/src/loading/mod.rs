//! PyTorch's `load_state_dict`, made transactional: every check runs before the first write,
//! so a load that fails leaves the model bit for bit as it was.
//!
//! The options ([`StateDictOptions`]), the report of a load that succeeded ([`LoadReport`]),
//! the error of one that did not ([`LoadError`], every [`LoadProblem`] at once), and how a
//! model's layout differs from a saved one ([`Difference`]).

mod error;
mod layout;
mod options;
mod pager;
mod parts;
mod prefix;
mod report;
mod suggest;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;

pub use self::error::{LoadError, LoadProblem};
pub use self::layout::Difference;
pub(crate) use self::layout::{Lines, compare};
pub use self::options::{DTypePolicy, StateDictOptions};
pub(crate) use self::pager::{InMemory, Pager};
use self::parts::Found;
use self::prefix::{auto_prefix, prefix_hints};
pub use self::report::LoadReport;
use self::suggest::suggest;
use crate::dtype::{DType, DTypeKind};
use crate::keymap::{KeyMapError, MappedSource};
use crate::shard::{Chunk, Sharded};
use crate::state::{Leaf, Metadata, Role, TensorSource, Visitor, VisitorMut};
use crate::tensor::{Tensor, TensorView};

/// What a load needs of a model: its tensors, read-only and as leaves, in one order, and its
/// name for messages. Every [`StateDict`](crate::StateDict) is one.
pub(crate) trait Target {
    /// The name error messages use, as PyTorch uses the class name.
    fn name(&self) -> &str;
    /// Every tensor with its key and role, in order.
    fn walk<'a>(&'a self, visitor: &mut dyn Visitor<'a>);
    /// Every tensor as a mutable leaf, in the order of [`walk`](Target::walk).
    fn walk_mut(&mut self, visitor: &mut dyn VisitorMut);
    /// Calls `supply` with the entries the model's modules supply for an older checkpoint
    /// (their versioned-load hooks), under the model's keys. None by default.
    fn supply(&self, source: &dyn TensorSource, supply: &mut dyn FnMut(String, Tensor)) {
        let _ = (source, supply);
    }
}

/// A source and the entries a model's modules supplied for what it lacks: what a load reads.
struct Supplied<'s> {
    source: &'s dyn TensorSource,
    supplied: IndexMap<String, Tensor>,
}

impl TensorSource for Supplied<'_> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.source
            .get_tensor(key)
            .or_else(|| self.supplied.get(key).map(Tensor::view))
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(
            self.source
                .tensor_keys()
                .chain(self.supplied.keys().map(|k| Cow::Borrowed(k.as_str()))),
        )
    }

    fn defect(&self) -> Option<String> {
        self.source.defect()
    }

    fn get_sharded(&self, key: &str) -> Option<&Sharded> {
        self.source.get_sharded(key)
    }

    fn metadata(&self) -> Option<&Metadata> {
        self.source.metadata()
    }
}

/// A model tensor's key, dtype and shape, collected before anything is written.
struct Slot {
    dtype: DType,
    /// The global shape, for a sharded tensor.
    shape: Vec<usize>,
    /// The parts the model holds, for a sharded tensor; `None` for a whole one.
    chunks: Option<Vec<Chunk>>,
}

/// The model's tensors as a load sees them before writing anything: their slots, and the
/// problems the model itself has.
#[derive(Default)]
struct Slots {
    slots: IndexMap<String, Slot>,
    /// Tensors ckpt cannot represent: refused, and their keys not unexpected in the source.
    unsupported: HashSet<String>,
    problems: Vec<LoadProblem>,
}

impl Visitor<'_> for Slots {
    fn tensor(&mut self, key: &str, tensor: TensorView<'_>, role: Role) {
        if !role.is_persistent() {
            return;
        }
        let slot = Slot {
            dtype: tensor.dtype(),
            shape: tensor.shape().to_vec(),
            chunks: None,
        };
        self.insert(key, slot);
    }

    fn sharded(&mut self, key: &str, tensor: &Sharded, role: Role) {
        if !role.is_persistent() {
            return;
        }
        if let Err(error) = tensor.check() {
            self.problems.push(LoadProblem::Shard {
                key: key.to_owned(),
                error: Box::new(error),
            });
        }
        let slot = Slot {
            dtype: tensor.dtype(),
            shape: tensor.global_shape().iter().map(|&d| d as usize).collect(),
            chunks: Some(tensor.parts().iter().map(|(c, _)| c.clone()).collect()),
        };
        self.insert(key, slot);
    }

    fn unsupported(&mut self, key: &str, why: &str, role: Role) {
        if role.is_persistent() {
            self.unsupported.insert(key.to_owned());
            self.problems.push(LoadProblem::Unsupported {
                key: key.to_owned(),
                why: why.to_owned(),
            });
        }
    }
}

impl Slots {
    fn insert(&mut self, key: &str, slot: Slot) {
        if self.slots.insert(key.to_owned(), slot).is_some() {
            self.problems.push(LoadProblem::DuplicateKey {
                key: key.to_owned(),
            });
        }
    }
}

/// Checks everything, then copies: the model changes only if the whole load succeeds.
pub(crate) fn load_into(
    model: &mut dyn Target,
    source: &dyn TensorSource,
    options: &StateDictOptions,
) -> Result<LoadReport, LoadError> {
    load_into_with(model, source, options, &InMemory)
}

/// [`load_into`], copying what it checked with `pager`.
pub(crate) fn load_into_with(
    model: &mut dyn Target,
    source: &dyn TensorSource,
    options: &StateDictOptions,
    pager: &dyn Pager,
) -> Result<LoadReport, LoadError> {
    let mut problems = Vec::new();
    if let Some(defect) = source.defect() {
        problems.push(LoadProblem::Source { defect });
    }
    let mut slots = Slots::default();
    model.walk(&mut slots);
    problems.append(&mut slots.problems);
    let Slots {
        slots, unsupported, ..
    } = slots;

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
    // The modules' versioned-load hooks see the keys as the model names them, and supply
    // what an older version of a module did not save.
    let mut supplied = IndexMap::new();
    model.supply(source, &mut |key, tensor| {
        if source.get_tensor(&key).is_none() && source.get_sharded(&key).is_none() {
            supplied.entry(key).or_insert(tensor);
        }
    });
    let supplied_keys: HashSet<String> = supplied.keys().cloned().collect();
    let with_supplied;
    let source: &dyn TensorSource = if supplied.is_empty() {
        source
    } else {
        with_supplied = Supplied { source, supplied };
        &with_supplied
    };
    // Parts of sharded tensors, gathered during the checks: (key -> one tensor per part).
    let mut gathered: HashMap<String, Vec<Tensor>> = HashMap::new();
    for (key, slot) in &slots {
        let Some(tensor) = Found::lookup(source, key) else {
            report.missing_keys.push(key.clone());
            continue;
        };
        if tensor.shape() != slot.shape {
            if options.skip_shape_mismatches {
                report.skipped_shape_mismatches.push(key.clone());
                continue;
            }
            problems.push(LoadProblem::SizeMismatch {
                key: key.clone(),
                checkpoint: tensor.shape(),
                model: slot.shape.clone(),
            });
            continue;
        }
        let from = tensor.dtype();
        let cast = from != slot.dtype;
        if cast {
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
        }
        // Parts in host memory are copied straight into the model once everything is checked
        // (unless a cast must check their values first); any other is gathered now, so that
        // the writing half cannot fail on it.
        let mut parts = None;
        if slot.chunks.is_some() || !tensor.is_whole() {
            if let Err(problem) = tensor.check(key, slot.chunks.as_deref()) {
                problems.push(problem);
                continue;
            }
            if cast || !tensor.in_place() {
                match tensor.gather(key, slot.chunks.as_deref()) {
                    Ok(gathered) => parts = Some(gathered),
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                }
            }
        }
        if cast {
            let out_of_range = match (&parts, &tensor) {
                (Some(parts), _) => parts
                    .iter()
                    .find_map(|t| t.view().check_cast(slot.dtype).err()),
                (None, Found::Whole(view)) => view.check_cast(slot.dtype).err(),
                (None, Found::Parts(_)) => None,
            };
            if let Some(error) = out_of_range {
                problems.push(LoadProblem::OutOfRange {
                    key: key.clone(),
                    error,
                });
                continue;
            }
            report.cast_keys.push(key.clone());
        }
        if let Some(parts) = parts {
            gathered.insert(key.clone(), parts);
        }
        report.loaded_keys.push(key.clone());
    }
    report.unexpected_keys = source
        .tensor_keys()
        .filter(|key| !slots.contains_key(key.as_ref()) && !unsupported.contains(key.as_ref()))
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
        // A key a module supplied for a checkpoint under another prefix (a BatchNorm's
        // counter, in a file saved from `nn.DataParallel`) is missing for the hints.
        let hint_report;
        let for_hints = if supplied_keys.is_empty() {
            &report
        } else {
            let mut with_supplied = report.clone();
            with_supplied.missing_keys = slots
                .keys()
                .filter(|k| report.missing_keys.contains(k) || supplied_keys.contains(*k))
                .cloned()
                .collect();
            hint_report = with_supplied;
            &hint_report
        };
        let mut hints = prefix_hints(&slots, for_hints, source);
        hints.extend(
            report
                .unmatched_rules
                .iter()
                .map(|rule| format!("the key rule {rule} matched no key of the checkpoint.")),
        );
        if !slots.is_empty() && source.defect().is_none() && source.tensor_keys().next().is_none() {
            hints.push("the state dict holds no tensors at all.".to_owned());
        }
        return Err(LoadError::new(model.name(), all, hints));
    }

    let loaded: HashSet<&str> = report.loaded_keys.iter().map(String::as_str).collect();
    let mut copier = Copier {
        loaded: &loaded,
        gathered,
        source,
        pager,
        failure: None,
    };
    model.walk_mut(&mut copier);
    let failure = copier.failure;
    if let Some(problem) = failure {
        return Err(LoadError::new(model.name(), vec![problem], Vec::new()));
    }
    Ok(report)
}

/// The writing half of a load: every checked tensor into its leaf.
struct Copier<'c, 's> {
    loaded: &'c HashSet<&'c str>,
    /// The parts gathered during the checks; the others are filled from the source.
    gathered: HashMap<String, Vec<Tensor>>,
    source: &'s dyn TensorSource,
    pager: &'c dyn Pager,
    failure: Option<LoadProblem>,
}

impl Copier<'_, '_> {
    fn wanted(&self, key: &str, role: Role) -> bool {
        role.is_persistent() && self.failure.is_none() && self.loaded.contains(key)
    }

    fn fail(&mut self, result: Result<(), LoadProblem>) {
        if let Err(problem) = result {
            self.failure = Some(problem);
        }
    }
}

impl VisitorMut for Copier<'_, '_> {
    fn tensor(&mut self, key: &str, leaf: &mut dyn Leaf, role: Role) {
        if !self.wanted(key, role) {
            return;
        }
        let copy = |error| LoadProblem::Copy {
            key: key.to_owned(),
            error,
        };
        let result = match self.gathered.remove(key) {
            Some(whole) => whole
                .first()
                .map_or(Ok(()), |tensor| self.pager.tensor(leaf, &tensor.view()))
                .map_err(copy),
            None => match Found::lookup(self.source, key) {
                Some(Found::Whole(tensor)) => self.pager.tensor(leaf, &tensor).map_err(copy),
                Some(parts) => Chunk::whole(parts.shape().iter().map(|&d| d as u64).collect())
                    .map_err(|e| parts::shard(key, e))
                    .and_then(|all| parts.fill(key, &all, leaf, self.pager)),
                None => Ok(()),
            },
        };
        self.fail(result);
    }

    fn sharded(&mut self, key: &str, tensor: &mut Sharded, role: Role) {
        if !self.wanted(key, role) {
            return;
        }
        let result = match self.gathered.remove(key) {
            Some(parts) => tensor
                .parts_mut()
                .zip(&parts)
                .try_for_each(|((_, local), part)| self.pager.tensor(local, &part.view()))
                .map_err(|error| LoadProblem::Copy {
                    key: key.to_owned(),
                    error,
                }),
            None => match Found::lookup(self.source, key) {
                Some(found) => tensor
                    .parts_mut()
                    .try_for_each(|(chunk, local)| found.fill(key, chunk, local, self.pager)),
                None => Ok(()),
            },
        };
        self.fail(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::tensor::Tensor;

    /// A model of one tensor under "w", for loads without the derive.
    struct One(Tensor);

    impl Target for One {
        fn name(&self) -> &str {
            "One"
        }
        fn walk<'a>(&'a self, visitor: &mut dyn Visitor<'a>) {
            visitor.tensor("w", self.0.view(), Role::Parameter);
        }
        fn walk_mut(&mut self, visitor: &mut dyn VisitorMut) {
            visitor.tensor("w", &mut self.0, Role::Parameter);
        }
    }

    #[test]
    fn a_tensor_the_model_cannot_hand_out_is_refused_and_is_not_unexpected() {
        /// "w", and "ids", which has no view (a candle `U32` tensor, say).
        struct Odd(Tensor);
        impl Target for Odd {
            fn name(&self) -> &str {
                "Odd"
            }
            fn walk<'a>(&'a self, visitor: &mut dyn Visitor<'a>) {
                visitor.tensor("w", self.0.view(), Role::Parameter);
                visitor.unsupported("ids", "no dtype for it", Role::Parameter);
            }
            fn walk_mut(&mut self, visitor: &mut dyn VisitorMut) {
                visitor.tensor("w", &mut self.0, Role::Parameter);
            }
        }
        let mut model = Odd(Tensor::zeros(DType::F32, &[2]).unwrap());
        let mut source = indexmap::IndexMap::new();
        source.insert("w".to_owned(), Tensor::from(ndarray::array![1f32, 2.]));
        source.insert("ids".to_owned(), Tensor::from(ndarray::array![1i64, 2]));
        let partial = StateDictOptions::new().strict(false);
        let err = load_into(&mut model, &source, &partial).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error(s) in loading state_dict for Odd:\n\tcannot load ids: no dtype for it."
        );
        assert_eq!(
            model.0,
            Tensor::zeros(DType::F32, &[2]).unwrap(),
            "untouched"
        );
    }

    #[test]
    fn a_defective_source_fails_even_a_non_strict_load() {
        struct Broken;
        impl TensorSource for Broken {
            fn get_tensor(&self, _: &str) -> Option<TensorView<'_>> {
                None
            }
            fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
                Box::new(std::iter::empty())
            }
            fn defect(&self) -> Option<String> {
                Some("it is broken".to_owned())
            }
        }
        let mut model = One(Tensor::zeros(DType::F32, &[2]).unwrap());
        let err =
            load_into(&mut model, &Broken, &StateDictOptions::new().strict(false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error(s) in loading state_dict for One:\n\tit is broken."
        );
    }
}
