//! Writing DCP checkpoints that `torch.distributed.checkpoint.load` reads, from one rank or
//! several, with PyTorch's commit: every rank writes its data file `__{rank}_0.distcp` (the
//! items its `RankPlan` keeps), then one process (the coordinator) writes
//! `.metadata`, which names every item, last. A
//! directory holding `.metadata` is a complete checkpoint.
//!
//! Each rank removes an old `.metadata` before writing its data (PyTorch leaves it in place
//! while data files are rewritten under it), so an interrupted overwrite leaves a directory
//! that no loader takes for a checkpoint, never new data under old metadata.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Seek, SeekFrom, Write};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::error::DcpError;
use super::metadata::{self, ChunkMeta, Entry, ItemKey, Metadata, StorageInfo, TensorMeta};
use super::plan::{Leaf, PathPart, Planned, RankPlan, TensorChunk, leaves, sizes_of};
use super::{METADATA, NAME};
use crate::dtype::DType;
use crate::format::{Format, FormatError, PyTorch};
use crate::shard::{Chunk, check_tiling};
use crate::storage::atomic::{Commit, CommitError, write_atomically};
use crate::storage::{self, Location, Sink};
use crate::value::{Key, Value};

/// What one rank wrote into its data file: each tensor chunk and value it holds, where it
/// lies, and how its key nests. The coordinator gives every rank's to
/// [`commit`](crate::dcp::commit); it is serde-serializable, so that it can travel between
/// processes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankWrite {
    rank: usize,
    file: String,
    entries: Vec<Written>,
}

/// One item a rank wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Written {
    key: String,
    path: Vec<PathPart>,
    /// `None` for a value; for a tensor chunk, its dtype, global shape, offsets and sizes.
    tensor: Option<TensorChunk>,
    offset: u64,
    length: u64,
}

impl RankWrite {
    /// The rank that wrote it.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Its data file's name: `__{rank}_0.distcp`.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The flattened keys of the items it wrote, in the order they lie in the file.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|w| w.key.as_str())
    }

    /// The bytes of its data file: every item it wrote, back to back.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|w| w.length).sum()
    }
}

/// Writes the data file `__{rank}_0.distcp` of the rank whose plan is `plan` into the
/// directory `dir`: the items of `value` the plan keeps, each as a whole `torch.save`
/// archive. Each must be in `value` as planned (a tensor of the planned dtype and sizes, or a
/// value); what the plan does not keep, another rank writes.
pub(crate) fn write_rank(
    dir: &Location,
    plan: &RankPlan,
    value: &Value<'_>,
    commit: &Commit<'_>,
) -> Result<RankWrite, FormatError> {
    let error = |e: DcpError, key: &str| FormatError::new(dir, NAME, e).at_key(key.to_owned());
    let all = leaves(dir, value, &HashMap::new())?;
    let planned: HashMap<&str, &Planned> = plan.items.iter().map(|i| (i.key.as_str(), i)).collect();
    let mut kept = Vec::new();
    for (key, path, leaf) in &all {
        let Some(item) = planned.get(key.as_str()) else {
            continue;
        };
        match (leaf, &item.tensor) {
            (Leaf::Tensor(t), Some(chunk))
                if t.dtype().as_str() == chunk.dtype && sizes_of(t) == chunk.sizes => {}
            (Leaf::Value(_), None) => {}
            (leaf, _) => {
                let held = match leaf {
                    Leaf::Tensor(t) => format!("a {} tensor of shape {:?}", t.dtype(), t.shape()),
                    Leaf::Value(v) => format!("a {}", v.kind()),
                };
                let planned = match &item.tensor {
                    Some(c) => format!("a {} chunk of sizes {:?}", c.dtype, c.sizes),
                    None => "a value".to_owned(),
                };
                return Err(error(
                    DcpError::Invalid(format!(
                        "rank {}'s plan has {planned} here, the state {held}: the plan was \
                         made from another state",
                        plan.rank
                    )),
                    key,
                ));
            }
        }
        kept.push((key, path, leaf, *item));
    }
    if kept.len() != planned.len() {
        let missing = plan
            .items
            .iter()
            .find(|i| !all.iter().any(|(key, _, _)| *key == i.key))
            .map_or("", |i| i.key.as_str());
        return Err(error(
            DcpError::Invalid(format!(
                "rank {}'s plan names a key the state does not hold",
                plan.rank
            )),
            missing,
        ));
    }
    storage::create_dir(dir).map_err(|e| FormatError::new(dir, NAME, e))?;
    let marker = dir.child(METADATA);
    storage::dir::remove(&marker, commit.fsync, commit.remote)
        .map_err(|e| FormatError::new(&marker, NAME, e))?;

    let file = format!("__{}_0.distcp", plan.rank);
    let location = dir.child(&file);
    let written = RefCell::new(Vec::new());
    let data_commit = Commit {
        size_hint: plan.tensor_bytes(),
        ..*commit
    };
    write_atomically(&location, &data_commit, |sink| {
        let mut entries = written.borrow_mut();
        entries.clear();
        // Values first, then tensors, as PyTorch orders a rank's items.
        let ordered = kept
            .iter()
            .filter(|(_, _, l, _)| matches!(l, Leaf::Value(_)))
            .chain(
                kept.iter()
                    .filter(|(_, _, l, _)| matches!(l, Leaf::Tensor(_))),
            );
        for (key, path, leaf, item) in ordered {
            let offset = sink
                .stream_position()
                .map_err(|e| FormatError::writing(NAME, e))?;
            let mut archive = Shifted {
                inner: sink,
                base: offset,
            };
            match leaf {
                Leaf::Value(value) => PyTorch.write(value, &mut archive)?,
                Leaf::Tensor(t) => PyTorch.write(&Value::from(t.clone()), &mut archive)?,
            }
            let end = sink
                .seek(SeekFrom::End(0))
                .map_err(|e| FormatError::writing(NAME, e))?;
            entries.push(Written {
                key: (*key).clone(),
                path: (*path).clone(),
                tensor: item.tensor.clone(),
                offset,
                length: end - offset,
            });
        }
        Ok(())
    })
    .map_err(|e| commit_error(e, &location))?;
    Ok(RankWrite {
        rank: plan.rank,
        file,
        entries: written.into_inner(),
    })
}

fn commit_error(e: CommitError<FormatError>, location: &Location) -> FormatError {
    match e {
        CommitError::Write(e) => e.in_file(location),
        CommitError::Io(e) => FormatError::new(location, NAME, e),
    }
}

/// A sink whose offsets start where an item starts: each item is a zip archive of its own,
/// whose offsets count from its first byte.
struct Shifted<'s> {
    inner: &'s mut dyn Sink,
    base: u64,
}

impl Write for Shifted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Seek for Shifted<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let at = match pos {
            SeekFrom::Start(at) => self.inner.seek(SeekFrom::Start(self.base + at))?,
            // The item is the last thing in the file while it is written.
            other => self.inner.seek(other)?,
        };
        at.checked_sub(self.base)
            .ok_or_else(|| io::Error::other("seek before the start of the item"))
    }
}

/// The coordinator's step: checks every rank's writes against one another (each tensor of one
/// dtype and global shape everywhere, its chunks tiling it exactly) and writes `.metadata`
/// into `dir`, atomically. Only then is the checkpoint there. An item several ranks wrote
/// (their plans were not deduplicated) is named from the lowest rank.
pub(crate) fn commit(
    dir: &Location,
    parts: &[RankWrite],
    commit: &Commit<'_>,
) -> Result<(), FormatError> {
    let marker = dir.child(METADATA);
    let error = |key: &str, message: String| {
        FormatError::new(&marker, NAME, DcpError::Invalid(message)).at_key(key.to_owned())
    };
    let mut parts: Vec<&RankWrite> = parts.iter().collect();
    parts.sort_by_key(|p| p.rank);
    if let Some(pair) = parts.windows(2).find(|w| w[0].rank == w[1].rank) {
        return Err(FormatError::new(
            &marker,
            NAME,
            DcpError::Invalid(format!("rank {} gave its writes twice", pair[0].rank)),
        ));
    }
    let mut entries: IndexMap<String, Entry> = IndexMap::new();
    let mut planner_data = HashMap::new();
    let mut storage_data = HashMap::new();
    for part in &parts {
        for w in &part.entries {
            let path: Vec<Key> = w
                .path
                .iter()
                .map(|p| match p {
                    PathPart::Key(s) => Key::Str(s.clone()),
                    PathPart::Index(i) => Key::Int(*i),
                })
                .collect();
            if let Some(first) = planner_data.insert(w.key.clone(), path.clone())
                && first != path
            {
                return Err(error(&w.key, "ranks nest this key differently".to_owned()));
            }
            let info = StorageInfo {
                relative_path: part.file.clone(),
                offset: w.offset,
                length: w.length,
            };
            let index = ItemKey {
                fqn: w.key.clone(),
                offset: w.tensor.as_ref().map(|t| t.offsets.clone()),
            };
            match (&w.tensor, entries.get_mut(&w.key)) {
                (None, None) => {
                    entries.insert(w.key.clone(), Entry::Bytes);
                }
                (None, Some(Entry::Bytes)) => {}
                (Some(chunk), None) => {
                    let dtype: DType = chunk
                        .dtype
                        .parse()
                        .map_err(|_| error(&w.key, format!("unknown dtype {}", chunk.dtype)))?;
                    entries.insert(
                        w.key.clone(),
                        Entry::Tensor(TensorMeta {
                            dtype,
                            size: chunk.global.clone(),
                            chunks: vec![ChunkMeta {
                                offsets: chunk.offsets.clone(),
                                sizes: chunk.sizes.clone(),
                            }],
                        }),
                    );
                }
                (Some(chunk), Some(Entry::Tensor(tensor))) => {
                    if tensor.dtype.as_str() != chunk.dtype || tensor.size != chunk.global {
                        return Err(error(
                            &w.key,
                            format!(
                                "rank {} holds it as {} of global shape {:?}, an earlier rank \
                                 as {} of {:?}",
                                part.rank, chunk.dtype, chunk.global, tensor.dtype, tensor.size
                            ),
                        ));
                    }
                    match tensor.chunks.iter().find(|c| c.offsets == chunk.offsets) {
                        // Replicated: the lowest rank's is kept.
                        Some(c) if c.sizes == chunk.sizes => continue,
                        Some(_) => {
                            return Err(error(
                                &w.key,
                                format!(
                                    "two chunks start at {:?} with different sizes",
                                    chunk.offsets
                                ),
                            ));
                        }
                        None => tensor.chunks.push(ChunkMeta {
                            offsets: chunk.offsets.clone(),
                            sizes: chunk.sizes.clone(),
                        }),
                    }
                }
                _ => {
                    return Err(error(
                        &w.key,
                        "a tensor on one rank and a value on another".to_owned(),
                    ));
                }
            }
            storage_data.entry(index).or_insert(info);
        }
    }
    for (key, entry) in &entries {
        let Entry::Tensor(tensor) = entry else {
            continue;
        };
        tensor
            .chunks
            .iter()
            .map(|c| Chunk::new(tensor.size.clone(), c.offsets.clone(), c.sizes.clone()))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|chunks| check_tiling(&tensor.size, &chunks))
            .map_err(|e| {
                error(
                    key,
                    format!("the ranks' chunks do not make the tensor: {e}"),
                )
            })?;
    }
    let metadata = Metadata {
        entries,
        planner_data,
        storage: storage_data,
    };
    let bytes = metadata::encode(&metadata);
    let marker_commit = Commit {
        size_hint: bytes.len() as u64,
        ..*commit
    };
    write_atomically(&marker, &marker_commit, |sink| {
        sink.write_all(&bytes)
            .map_err(|e| FormatError::writing(NAME, e))
    })
    .map_err(|e| commit_error(e, &marker))
}
