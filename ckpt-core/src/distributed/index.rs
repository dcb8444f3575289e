//! The checkpoint as a whole, from every rank's manifest: each tensor's dtype, global shape
//! and stored chunks, checked to agree across ranks and to tile every tensor exactly.

use std::str::FromStr;

use indexmap::IndexMap;

use super::Error;
use super::error::Holding;
use super::manifest::{Manifest, Stored};
use crate::dtype::DType;
use crate::shard::{Chunk, check_tiling};
use crate::storage::Location;

/// One tensor of the checkpoint.
pub(super) struct Global {
    pub(super) dtype: DType,
    pub(super) shape: Vec<u64>,
    /// Where its chunks lie: the rank whose data file holds each, and the block size.
    pub(super) pieces: Vec<Piece>,
    /// The first rank that declared it, for messages.
    first_rank: usize,
}

pub(super) struct Piece {
    pub(super) rank: usize,
    pub(super) block_size: u64,
    pub(super) stored: Stored,
}

/// Every tensor, in the order rank 0 and then the others name them.
pub(super) fn build(
    dir: &Location,
    manifests: &[Manifest],
) -> Result<IndexMap<String, Global>, Error> {
    let mut tensors: IndexMap<String, Global> = IndexMap::new();
    let mut replicated: IndexMap<String, Vec<usize>> = IndexMap::new();
    for manifest in manifests {
        for entry in &manifest.entries {
            // Checked when the manifest was parsed.
            let dtype = DType::from_str(&entry.dtype).unwrap_or(DType::U8);
            let global = tensors.entry(entry.key.clone()).or_insert_with(|| Global {
                dtype,
                shape: entry.global.clone(),
                pieces: Vec::new(),
                first_rank: manifest.rank,
            });
            if global.dtype != dtype || global.shape != entry.global {
                return Err(Error::Disagree {
                    dir: dir.clone(),
                    key: entry.key.clone(),
                    first: Box::new(Holding {
                        rank: global.first_rank,
                        dtype: global.dtype,
                        shape: global.shape.clone(),
                    }),
                    second: Box::new(Holding {
                        rank: manifest.rank,
                        dtype,
                        shape: entry.global.clone(),
                    }),
                });
            }
            if entry.replicated {
                replicated
                    .entry(entry.key.clone())
                    .or_default()
                    .push(manifest.rank);
            }
            if let Some(stored) = &entry.stored {
                global.pieces.push(Piece {
                    rank: manifest.rank,
                    block_size: manifest.block_size,
                    stored: stored.clone(),
                });
            }
        }
    }
    for (key, ranks) in &replicated {
        if ranks.first() != Some(&0) {
            return Err(Error::NotReplicated {
                dir: dir.clone(),
                key: key.clone(),
                ranks: ranks.clone(),
            });
        }
    }
    for (key, global) in &tensors {
        let chunks: Vec<Chunk> = global
            .pieces
            .iter()
            .map(|p| p.stored.chunk.clone())
            .collect();
        check_tiling(&global.shape, &chunks).map_err(|error| Error::Tiling {
            dir: dir.clone(),
            key: key.clone(),
            error: Box::new(error),
        })?;
    }
    Ok(tensors)
}
