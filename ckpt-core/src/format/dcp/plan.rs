//! What each rank of a DCP save writes, planned before anyone writes, as PyTorch's
//! `DefaultSavePlanner` plans it: every rank says what it holds ([`plan`]), the coordinator
//! gives every item held by several ranks (a replicated tensor, the same chunk on two ranks, a
//! plain value every rank has) to one of them ([`dedup`]), and each rank writes only what its
//! plan keeps. Each item's bytes are then stored once, and `.metadata` names that copy.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::NAME;
use super::error::DcpError;
use crate::format::FormatError;
use crate::shard::Chunk;
use crate::storage::Location;
use crate::tensor::TensorView;
use crate::value::{Key, Value};

/// What one rank of a DCP save holds, and after [`dedup`](crate::dcp::dedup) what it is to
/// write: each tensor chunk and value, by flattened key. Made by
/// [`plan_rank`](crate::dcp::plan_rank); serde-serializable and small (no tensor data), so
/// that it can travel to the coordinator and back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankPlan {
    pub(super) rank: usize,
    pub(super) items: Vec<Planned>,
}

/// One item of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Planned {
    pub(super) key: String,
    /// `None` for a value; for a tensor, the chunk of it the rank holds.
    pub(super) tensor: Option<TensorChunk>,
    /// The chunk's bytes; 0 for a value.
    pub(super) nbytes: u64,
    /// What the dedup balances, as DCP's `WriteItem.tensor_storage_size` counts it: the bytes
    /// of the whole tensor the chunk is of (not of the chunk); 0 for a value.
    pub(super) storage: u64,
}

/// A tensor chunk as DCP describes it: dtype, global shape, offsets and sizes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) struct TensorChunk {
    pub(super) dtype: String,
    pub(super) global: Vec<u64>,
    pub(super) offsets: Vec<u64>,
    pub(super) sizes: Vec<u64>,
}

impl RankPlan {
    /// The rank whose plan it is.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The flattened keys of what it holds (after [`dedup`](crate::dcp::dedup), of what it
    /// writes), in the state's order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|i| i.key.as_str())
    }

    /// The bytes of tensor data it holds (after [`dedup`](crate::dcp::dedup), writes).
    pub fn tensor_bytes(&self) -> u64 {
        self.items.iter().map(|i| i.nbytes).sum()
    }
}

/// A part of a key's path: a dict key, or a list index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum PathPart {
    Key(String),
    Index(i64),
}

/// A leaf of the state being saved, as DCP's planner flattens it.
pub(super) enum Leaf<'v> {
    Tensor(TensorView<'v>),
    Value(&'v Value<'v>),
}

/// A flattened leaf: its key, its path, and the leaf.
pub(super) type Flat<'v> = (String, Vec<PathPart>, Leaf<'v>);

/// Flattens `value` as DCP's `flatten_state_dict` does: dicts are always descended (their keys
/// as strings), lists only if they hold a tensor or a dict (directly or in a list inside), and
/// everything else is a leaf; an empty dict gives no key. Keys are the path joined with dots.
fn flatten<'v>(value: &'v Value<'v>, path: &mut Vec<PathPart>, out: &mut Vec<Flat<'v>>) {
    match value {
        Value::Map(map) => {
            for (k, v) in map {
                path.push(PathPart::Key(match k {
                    Key::Str(s) => s.clone(),
                    Key::Int(i) => i.to_string(),
                }));
                flatten(v, path, out);
                path.pop();
            }
        }
        Value::List(items) if descended(value) => {
            for (i, v) in items.iter().enumerate() {
                path.push(PathPart::Index(i as i64));
                flatten(v, path, out);
                path.pop();
            }
        }
        Value::Tensor(t) => out.push((join(path), path.clone(), Leaf::Tensor(t.view()))),
        other => out.push((join(path), path.clone(), Leaf::Value(other))),
    }
}

/// Whether DCP descends into a list (`_traverse.py`'s "not terminal"): it holds a tensor or a
/// dict, or a list that is descended.
fn descended(value: &Value<'_>) -> bool {
    match value {
        Value::List(items) => items
            .iter()
            .any(|v| matches!(v, Value::Tensor(_) | Value::Map(_)) || descended(v)),
        _ => false,
    }
}

fn join(path: &[PathPart]) -> String {
    let parts: Vec<String> = path
        .iter()
        .map(|p| match p {
            PathPart::Key(s) => s.clone(),
            PathPart::Index(i) => i.to_string(),
        })
        .collect();
    parts.join(".")
}

/// The leaves of `value`, flattened, with their chunks checked: the root is a dict, no two
/// leaves flatten to one key, and each key of `chunks` is a tensor of the chunk's sizes.
/// `dir` is the checkpoint the errors name.
pub(super) fn leaves<'v>(
    dir: &Location,
    value: &'v Value<'v>,
    chunks: &HashMap<String, Chunk>,
) -> Result<Vec<Flat<'v>>, FormatError> {
    let error = |e: DcpError| FormatError::new(dir, NAME, e);
    if !matches!(value, Value::Map(_)) {
        return Err(error(DcpError::Unsupported(format!(
            "{} at the root of a DCP checkpoint, which holds a dict",
            value.kind()
        ))));
    }
    let mut leaves = Vec::new();
    flatten(value, &mut Vec::new(), &mut leaves);
    let mut seen = HashMap::new();
    for (key, path, leaf) in &leaves {
        if let Some(other) = seen.insert(key.as_str(), path) {
            return Err(error(DcpError::Invalid(format!(
                "two entries flatten to one key ({other:?} and {path:?})"
            )))
            .at_key(key.clone()));
        }
        if let (Some(chunk), Leaf::Tensor(t)) = (chunks.get(key), leaf)
            && sizes_of(t) != chunk.sizes()
        {
            return Err(error(DcpError::Invalid(format!(
                "a tensor of shape {:?} given as a chunk of sizes {:?}",
                t.shape(),
                chunk.sizes()
            )))
            .at_key(key.clone()));
        }
    }
    if let Some(key) = chunks.keys().find(|k| !seen.contains_key(k.as_str())) {
        return Err(error(DcpError::Invalid(
            "a chunk is given for a key the state does not hold as a tensor".to_owned(),
        ))
        .at_key(key.clone()));
    }
    Ok(leaves)
}

pub(super) fn sizes_of(t: &TensorView<'_>) -> Vec<u64> {
    t.shape().iter().map(|&d| d as u64).collect()
}

/// The chunk of its tensor that `t`, under `key`, is: the one `chunks` gives, or the whole.
fn chunk_of(key: &str, t: &TensorView<'_>, chunks: &HashMap<String, Chunk>) -> TensorChunk {
    let sizes = sizes_of(t);
    let (global, offsets) = match chunks.get(key) {
        Some(c) => (c.global_shape().to_vec(), c.offsets().to_vec()),
        None => (sizes.clone(), vec![0; sizes.len()]),
    };
    TensorChunk {
        dtype: t.dtype().to_string(),
        global,
        offsets,
        sizes,
    }
}

/// Rank `rank`'s plan: every leaf of `value`, a tensor as the chunk `chunks` names (whole if
/// none), in the order DCP's planner lists them.
pub(crate) fn plan(
    dir: &Location,
    rank: usize,
    value: &Value<'_>,
    chunks: &HashMap<String, Chunk>,
) -> Result<RankPlan, FormatError> {
    let items = leaves(dir, value, chunks)?
        .iter()
        .map(|(key, _, leaf)| match leaf {
            Leaf::Tensor(t) => {
                let chunk = chunk_of(key, t, chunks);
                let numel = chunk.global.iter().product::<u64>();
                Planned {
                    key: key.clone(),
                    storage: numel.saturating_mul(t.dtype().size_in_bytes() as u64),
                    tensor: Some(chunk),
                    nbytes: t.nbytes() as u64,
                }
            }
            Leaf::Value(_) => Planned {
                key: key.clone(),
                tensor: None,
                nbytes: 0,
                storage: 0,
            },
        })
        .collect();
    Ok(RankPlan { rank, items })
}

/// The plans with every item that several hold kept by one of them, as PyTorch's
/// `dedup_save_plans` (its default, balanced by bytes) chooses: items in the order they first
/// appear (the lowest rank's first), each given to the holder that has been given the fewest
/// bytes so far, the lowest rank on a tie. Like PyTorch, it counts a chunk as the bytes of its
/// whole tensor, and a value or an empty tensor as one byte. An
/// item is a key and, for a tensor, the offsets of its chunk. Plans come back in the order
/// given.
pub(crate) fn dedup(plans: &[RankPlan]) -> Vec<RankPlan> {
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| plans[i].rank);
    // Each item's counted bytes and its holders, lowest rank first.
    let mut holders: IndexMap<Index<'_>, (u64, Vec<usize>)> = IndexMap::new();
    for &p in &order {
        for item in &plans[p].items {
            let entry = holders
                .entry(index(item))
                .or_insert((item.storage, Vec::new()));
            entry.1.push(p);
        }
    }
    let mut given = vec![0u64; plans.len()];
    let mut keeper = HashMap::new();
    for (item, (nbytes, holders)) in &holders {
        // `min_by_key` keeps the first of equals: the lowest rank.
        if let Some(&chosen) = holders.iter().min_by_key(|&&p| given[p]) {
            given[chosen] = given[chosen].saturating_add((*nbytes).max(1));
            keeper.insert(*item, chosen);
        }
    }
    plans
        .iter()
        .enumerate()
        .map(|(p, plan)| RankPlan {
            rank: plan.rank,
            items: plan
                .items
                .iter()
                .filter(|i| keeper.get(&index(i)) == Some(&p))
                .cloned()
                .collect(),
        })
        .collect()
}

/// What identifies an item across ranks, DCP's `MetadataIndex`: its key and, for a tensor,
/// its chunk's offsets.
type Index<'p> = (&'p str, Option<&'p [u64]>);

fn index(item: &Planned) -> Index<'_> {
    (
        item.key.as_str(),
        item.tensor.as_ref().map(|t| t.offsets.as_slice()),
    )
}
