//! A sharded checkpoint seen from outside a job, as the `ckpt` tool shows it: what it holds
//! from its manifests alone ([`inspect`]), and whether every block of its data matches its
//! checksum ([`verify`]).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use indexmap::IndexMap;
use xxhash_rust::xxh3::Xxh3;

use super::Error;
use super::layout::{Status, status_of};
use super::load::open;
use super::manifest::{self, Manifest};
use super::tiles::{Layout, Streaming, rows_of};
use crate::dtype::DType;
use crate::file::LoadOptions;
use crate::shard::Chunk;
use crate::storage::{self, Location};

/// What a directory's manifests say: whether it is committed, and every tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Committed, or the ranks a save left.
    pub status: Status,
    /// Every tensor the manifests present name, in the order rank 0 and then the others
    /// name them. Of an incomplete checkpoint, the chunks of missing ranks are absent.
    pub tensors: Vec<TensorSummary>,
}

/// One tensor of a sharded checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TensorSummary {
    /// The global key.
    pub key: String,
    /// Its dtype.
    pub dtype: DType,
    /// Its global shape.
    pub shape: Vec<u64>,
    /// Whether the model held it whole (saved once, by rank 0) rather than as a `Sharded`.
    pub replicated: bool,
    /// The stored chunks, each with the rank whose data file holds it.
    pub chunks: Vec<(usize, Chunk)>,
    /// The bytes of its stored chunks.
    pub stored_bytes: u64,
}

/// What [`verify`] read, and the blocks that did not match their checksums.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The ranks of the job that saved it.
    pub world_size: usize,
    /// How many tensors it holds.
    pub tensors: usize,
    /// The bytes of tensor data read and checked.
    pub bytes: u64,
    /// Every block whose checksum does not match, in file order; empty if all do.
    pub damaged: Vec<Damage>,
}

/// A block of tensor data that does not match its checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// The data file.
    pub file: Location,
    /// The key whose data the block holds.
    pub key: String,
    /// Where the block starts in the file.
    pub start: u64,
    /// Where it ends.
    pub end: u64,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the data of \"{}\" is damaged: bytes {}..{} do not match their checksum",
            self.file, self.key, self.start, self.end
        )
    }
}

/// What the sharded checkpoint in the directory `dir` (a local one, or a URL's prefix) holds,
/// from its commit marker and manifests alone: no tensor data is read. A committed one is
/// checked as a load checks it (the manifests as committed, the chunks tiling every tensor);
/// of an incomplete one, the manifests present are listed.
pub fn inspect(dir: impl AsRef<Path>) -> Result<Summary, Error> {
    inspect_with(dir, &LoadOptions::default())
}

/// [`inspect`], with how files are opened and URLs reached.
pub fn inspect_with(dir: impl AsRef<Path>, files: &LoadOptions) -> Result<Summary, Error> {
    let dir = Location::from(dir.as_ref());
    let remote = &files.object_store;
    let status = status_of(&dir, remote)?;
    let manifests = match &status {
        Status::Complete { .. } => open(&dir, files)?.manifests,
        Status::Incomplete { present, .. } => present
            .iter()
            .map(|&rank| {
                let file = dir.child(&manifest::manifest_name(rank));
                let bytes = manifest::read_small(&file, remote)?
                    .ok_or_else(|| Error::invalid(&file, "removed while it was read"))?;
                manifest::parse_manifest(&file, &bytes, rank)
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Summary {
        status,
        tensors: summarize(&manifests),
    })
}

/// Every tensor the manifests name, with the chunks each stored.
pub(super) fn summarize(manifests: &[Manifest]) -> Vec<TensorSummary> {
    let mut tensors: IndexMap<&str, TensorSummary> = IndexMap::new();
    for manifest in manifests {
        for entry in &manifest.entries {
            let tensor = tensors
                .entry(entry.key.as_str())
                .or_insert_with(|| TensorSummary {
                    key: entry.key.clone(),
                    // Checked when the manifest was parsed.
                    dtype: DType::from_str(&entry.dtype).unwrap_or(DType::U8),
                    shape: entry.global.clone(),
                    replicated: entry.replicated,
                    chunks: Vec::new(),
                    stored_bytes: 0,
                });
            if let Some(stored) = &entry.stored {
                tensor.chunks.push((manifest.rank, stored.chunk.clone()));
                tensor.stored_bytes += stored.length;
            }
        }
    }
    tensors.into_values().collect()
}

/// How much of a block is read at a time: memory stays bounded whatever block size a
/// manifest gives.
const READ_LEN: u64 = 1 << 20;

/// Reads every block of tensor data of the committed sharded checkpoint in `dir` (a local
/// directory, or a URL's prefix) and checks it against its checksum, reporting every block
/// that does not match. The structure is checked as a load checks it; what is not a sharded
/// checkpoint, or an incomplete one, is an error.
pub fn verify(dir: impl AsRef<Path>) -> Result<Verified, Error> {
    verify_with(dir, &LoadOptions::default())
}

/// [`verify`], with how files are opened and URLs reached.
pub fn verify_with(dir: impl AsRef<Path>, files: &LoadOptions) -> Result<Verified, Error> {
    let dir = Location::from(dir.as_ref());
    let opened = open(&dir, files)?;
    let mut verified = Verified {
        world_size: opened.manifests.len(),
        tensors: opened.tensors.len(),
        bytes: 0,
        damaged: Vec::new(),
    };
    let mut buf = Vec::new();
    for manifest in &opened.manifests {
        let location = dir.child(&manifest.data_file);
        let source = storage::open(&location, files.mmap, &files.object_store)
            .map_err(|e| Error::io(&location, e))?;
        if source.len() != manifest.data_len {
            return Err(Error::invalid(
                &location,
                format!(
                    "{} bytes; its manifest says {}",
                    source.len(),
                    manifest.data_len
                ),
            ));
        }
        for entry in &manifest.entries {
            let Some(stored) = &entry.stored else {
                continue;
            };
            let dtype = DType::from_str(&entry.dtype).unwrap_or(DType::U8);
            let layout = stored.tiles.as_ref().and_then(|tiles| {
                let (rows, row) = rows_of(&stored.chunk, dtype)?;
                Layout::new(tiles, rows, row)
            });
            let mut tiles = layout.as_ref().map(Streaming::new);
            let first_damage = verified.damaged.len();
            let mut damaged_tiles = Vec::new();
            let size = manifest.block_size;
            for (index, &expected) in stored.checksums.iter().enumerate() {
                let start = stored.offset + index as u64 * size;
                let end = (start + size).min(stored.offset + stored.length);
                let mut hasher = Xxh3::new();
                let mut at = start;
                while at < end {
                    let len = (end - at).min(READ_LEN) as usize;
                    buf.resize(len, 0);
                    source
                        .read_at(at, &mut buf)
                        .map_err(|e| Error::io(&location, e))?;
                    hasher.update(&buf);
                    if let (Some(streaming), Some(sums)) = (&mut tiles, &stored.tiles) {
                        streaming.feed(&buf, &mut |tile, sum| {
                            if sums.checksums.get(tile as usize) != Some(&sum) {
                                damaged_tiles.push(tile);
                            }
                        });
                    }
                    at += len as u64;
                }
                verified.bytes += end - start;
                if hasher.digest() != expected {
                    verified.damaged.push(Damage {
                        file: location.clone(),
                        key: entry.key.clone(),
                        start,
                        end,
                    });
                }
            }
            // A tile that does not match where every block does: its checksum is wrong.
            if let Some(layout) = &layout {
                for tile in damaged_tiles {
                    let span = layout.span(tile);
                    let (start, end) = (stored.offset + span.start, stored.offset + span.end);
                    let covered = verified
                        .damaged
                        .iter()
                        .any(|d| d.key == entry.key && d.start < end && start < d.end);
                    if !covered {
                        verified.damaged.push(Damage {
                            file: location.clone(),
                            key: entry.key.clone(),
                            start,
                            end,
                        });
                    }
                }
                verified.damaged[first_damage..].sort_by_key(|d| d.start);
            }
        }
    }
    Ok(verified)
}
