//! Sharded checkpoints as Hugging Face writes them: `NAME.safetensors.index.json`, mapping
//! every tensor to one of the shards `NAME-00001-of-00003.safetensors`, … beside it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;

use super::write::{flatten, write_flat};
use super::{METADATA, NAME, SafeTensors};
use crate::format::{Corruption, Format, FormatError, FormatErrorKind, Opened};
use crate::storage::atomic::{Commit, CommitError, write_atomically};
use crate::storage::{self, Location, ObjectStoreOptions, Source};
use crate::tensor::TensorView;
use crate::value::Value;

/// Whether `location` names a sharded checkpoint's index.
pub(crate) fn is_index(location: &Location) -> bool {
    location
        .file_name()
        .is_some_and(|name| name.ends_with(".index.json"))
}

/// `model.safetensors.index.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
    weight_map: BTreeMap<String, String>,
}

/// One shard of a sharded checkpoint: its bytes, its structure checked.
pub(crate) type Shard = (Arc<dyn Source>, Box<dyn Opened>);

/// Opens a sharded checkpoint: every shard named in the index, in the order of their names,
/// each tensor checked to be in the shard the index names, and none missing. Only the shards'
/// headers are read (for an object store: a few ranged GETs per shard).
pub(crate) fn open(
    index: &Location,
    mmap: bool,
    remote: &ObjectStoreOptions,
) -> Result<Vec<Shard>, FormatError> {
    let error = |kind: FormatErrorKind| FormatError::new(index, NAME, kind);
    let corrupt = |message: String| error(Corruption::Index(message).into());
    let source = storage::open(index, mmap, remote).map_err(|e| error(e.into()))?;
    let text = storage::read_range(&*source, 0..source.len()).map_err(|e| error(e.into()))?;
    let parsed: Index = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    let mut names: Vec<&String> = parsed.weight_map.values().collect();
    names.sort();
    names.dedup();
    let mut found = HashSet::new();
    let mut shards = Vec::with_capacity(names.len());
    for shard in names {
        let shard_location = safe_sibling(index, shard)
            .ok_or_else(|| corrupt(format!("shard name {shard:?} leaves the directory")))?;
        let source = storage::open(&shard_location, mmap, remote)
            .map_err(|e| FormatError::new(&shard_location, NAME, e))?;
        let opened = SafeTensors.open(Arc::clone(&source))?;
        for tensor in opened.header().tensors {
            if parsed.weight_map.get(&tensor.key) != Some(shard) {
                return Err(corrupt(format!(
                    "found in {shard}, but the index does not put it there"
                ))
                .at_key(tensor.key));
            }
            found.insert(tensor.key);
        }
        shards.push((source, opened));
    }
    if let Some(missing) = parsed.weight_map.keys().find(|k| !found.contains(*k)) {
        return Err(corrupt(format!(
            "listed but absent from {}",
            parsed.weight_map[missing]
        ))
        .at_key(missing.clone()));
    }
    Ok(shards)
}

/// The value of a sharded checkpoint: every shard's tensors, merged in shard order.
pub(crate) fn value(shards: &[Shard]) -> Result<Value<'static>, FormatError> {
    let mut merged = IndexMap::new();
    for (_, opened) in shards {
        let Value::Map(tensors) = opened.value()? else {
            unreachable!("safetensors files read as maps")
        };
        merged.extend(
            tensors
                .into_iter()
                .filter(|(key, _)| key.to_string() != METADATA),
        );
    }
    Ok(Value::Map(merged.into()))
}

/// The object named `name` beside `index`, if `name` is a plain file name: an index cannot
/// point outside its directory.
fn safe_sibling(index: &Location, name: &str) -> Option<Location> {
    let candidate = std::path::Path::new(name);
    let plain = candidate.components().count() == 1
        && matches!(
            candidate.components().next(),
            Some(std::path::Component::Normal(_))
        );
    if plain { index.sibling(name) } else { None }
}

/// Writes `value` as shards of at most `max_shard_bytes` of tensor data (a larger tensor gets
/// a shard of its own) and then the index, each file committed atomically, the index last:
/// a reader finds either the previous index, or the new one with every shard it names in
/// place. Shards are named after the index: `model.safetensors.index.json` gets
/// `model-00001-of-00003.safetensors`, …
pub(crate) fn write(
    index: &Location,
    value: &Value<'_>,
    max_shard_bytes: usize,
    commit: &Commit<'_>,
) -> Result<(), FormatError> {
    let flat = flatten(value).map_err(|e| e.in_file(index))?;
    let unsupported = |message: &str| {
        FormatError::new(
            index,
            NAME,
            FormatErrorKind::Unsupported(message.to_owned()),
        )
    };
    let name = index
        .file_name()
        .and_then(|n| n.strip_suffix(".index.json"))
        .and_then(|n| n.strip_suffix(".safetensors"))
        .ok_or_else(|| {
            unsupported("a sharded checkpoint's index must be named NAME.safetensors.index.json")
        })?;
    let mut shards: Vec<Vec<&(String, TensorView<'_>)>> = vec![Vec::new()];
    let mut size = 0;
    for entry in &flat.tensors {
        let bytes = entry.1.nbytes();
        if size > 0 && size + bytes > max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        shards.last_mut().expect("one shard at least").push(entry);
    }
    let count = shards.len();
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("{name}-{:05}-of-{count:05}.safetensors", i + 1);
        let location = index
            .sibling(&file)
            .ok_or_else(|| unsupported("bytes in memory cannot hold a sharded checkpoint"))?;
        let tensors: Vec<(String, TensorView<'_>)> =
            shard.iter().map(|(k, t)| (k.clone(), t.view())).collect();
        let size_hint = tensors.iter().map(|(_, t)| t.nbytes() as u64).sum();
        let shard_commit = Commit {
            size_hint,
            ..*commit
        };
        write_file(&location, &shard_commit, |sink| {
            write_flat(&tensors, flat.metadata.clone(), sink)
        })?;
        for (key, _) in shard {
            weight_map.insert(key.clone(), file.clone());
        }
    }
    let total: usize = flat.tensors.iter().map(|(_, t)| t.nbytes()).sum();
    let parsed = Index {
        metadata: BTreeMap::from([("total_size".to_owned(), serde_json::Value::from(total))]),
        weight_map,
    };
    let json = serde_json::to_vec_pretty(&parsed)
        .map_err(|e| FormatError::new(index, NAME, std::io::Error::other(e)))?;
    let index_commit = Commit {
        size_hint: json.len() as u64,
        ..*commit
    };
    write_file(index, &index_commit, |sink| {
        sink.write_all(&json)
            .map_err(|e| FormatError::writing(NAME, e))
    })
}

/// An atomic write of one file of a sharded checkpoint; errors name it.
fn write_file(
    location: &Location,
    commit: &Commit<'_>,
    write: impl Fn(&mut dyn crate::storage::Sink) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    write_atomically(location, commit, write).map_err(|e| match e {
        CommitError::Write(e) => e.in_file(location),
        CommitError::Io(e) => FormatError::new(location, NAME, e),
    })
}
