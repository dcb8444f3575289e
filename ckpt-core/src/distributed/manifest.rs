//! The files of a sharded checkpoint besides the data: each rank's [`Manifest`], and the
//! [`Metadata`] the coordinator writes last, as the commit marker. Both are JSON, read with a
//! bound on their size before anything is parsed.

use serde::{Deserialize, Serialize};

use super::Error;
use super::tiles::{Layout, Tiles, rows_of};
use crate::file::SaveOptions;
use crate::shard::Chunk;
use crate::storage::atomic::{Commit, CommitError, write_atomically};
use crate::storage::{self, Location, ObjectStoreOptions};

/// The name of the commit marker.
pub(super) const MARKER: &str = "checkpoint.json";

/// What the files say they are.
pub(super) const MANIFEST_FORMAT: &str = "ckpt-sharded-manifest";
pub(super) const METADATA_FORMAT: &str = "ckpt-sharded";
pub(super) const VERSION: u32 = 2;

/// The largest manifest or metadata file read: far above what any job writes (a few
/// hundred bytes per tensor), and a bound on what a hostile one can make ckpt allocate.
const MAX_LEN: u64 = 256 << 20;

/// The name of rank `rank`'s manifest.
pub(super) fn manifest_name(rank: usize) -> String {
    format!("rank-{rank}.manifest.json")
}

/// The name of rank `rank`'s data file.
pub(super) fn data_name(rank: usize) -> String {
    format!("rank-{rank}.ckpt")
}

/// The rank a manifest's file name is for.
pub(super) fn manifest_rank(name: &str) -> Option<usize> {
    name.strip_prefix("rank-")?
        .strip_suffix(".manifest.json")?
        .parse()
        .ok()
}

/// One rank's part of the checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    pub(super) format: String,
    pub(super) version: u32,
    pub(super) rank: usize,
    pub(super) world_size: usize,
    /// The digest of the job's run id, if it has one (`Job::run_id`).
    pub(super) run: Option<u64>,
    /// The nonce of the save this manifest is a vote of (see `attempt`).
    pub(super) save: String,
    /// The data file's name, in the checkpoint's directory.
    pub(super) data_file: String,
    pub(super) data_len: u64,
    /// The data's checksums cover blocks of this many bytes, from each tensor's first byte.
    pub(super) block_size: u64,
    pub(super) entries: Vec<Entry>,
}

/// One tensor of a rank: its global dtype and shape, and the chunk the rank stored, if it
/// stored one (a replicated tensor is stored by rank 0 only; the others declare it).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) dtype: String,
    pub(super) global: Vec<u64>,
    /// Whether the model held it whole (replicated) rather than as a `Sharded`.
    pub(super) replicated: bool,
    pub(super) stored: Option<Stored>,
}

/// Where a chunk's data lies in the rank's data file, and its checksums.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Stored {
    pub(super) chunk: Chunk,
    pub(super) offset: u64,
    pub(super) length: u64,
    /// xxh3-64 of each block of `block_size` bytes of the data (the last one shorter).
    pub(super) checksums: Vec<u64>,
    /// Checksums of column tiles of the rows, for loads that need some columns of each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tiles: Option<Tiles>,
}

/// The commit marker: the job, and a checksum of each rank's manifest as it was committed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Metadata {
    pub(super) format: String,
    pub(super) version: u32,
    pub(super) world_size: usize,
    /// The nonce of the save that was committed, which every manifest carries.
    pub(super) save: String,
    /// xxh3-64 of each rank's manifest file, by rank.
    pub(super) manifests: Vec<u64>,
}

/// Reads a small JSON file, refusing one larger than the bound; `Ok(None)` if it is absent.
pub(super) fn read_small(
    location: &Location,
    remote: &ObjectStoreOptions,
) -> Result<Option<Vec<u8>>, Error> {
    if !storage::dir::exists(location, remote).map_err(|e| Error::io(location, e))? {
        return Ok(None);
    }
    let source = storage::open(location, true, remote).map_err(|e| Error::io(location, e))?;
    if source.len() > MAX_LEN {
        return Err(Error::invalid(
            location,
            format!(
                "{} bytes, more than the {MAX_LEN} a manifest may have",
                source.len()
            ),
        ));
    }
    let bytes = storage::read_range(source.as_ref(), 0..source.len())
        .map_err(|e| Error::io(location, e))?;
    Ok(Some(bytes))
}

/// Writes a small file atomically.
pub(super) fn write_small(
    location: &Location,
    bytes: &[u8],
    options: &SaveOptions,
) -> Result<(), Error> {
    let commit = Commit {
        fsync: options.fsync,
        remote: &options.object_store,
        size_hint: bytes.len() as u64,
    };
    write_atomically(location, &commit, |sink| sink.write_all(bytes)).map_err(|e| match e {
        CommitError::Write(e) | CommitError::Io(e) => Error::io(location, e),
    })
}

/// Parses a manifest's bytes and checks what it says about itself.
pub(super) fn parse_manifest(
    location: &Location,
    bytes: &[u8],
    rank: usize,
) -> Result<Manifest, Error> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(location, format!("not a rank manifest: {e}")))?;
    if manifest.format != MANIFEST_FORMAT || manifest.version != VERSION {
        return Err(Error::invalid(
            location,
            format!(
                "a manifest of format {:?} version {}; this ckpt reads {MANIFEST_FORMAT:?} version {VERSION}",
                manifest.format, manifest.version
            ),
        ));
    }
    if manifest.rank != rank || manifest.rank >= manifest.world_size {
        return Err(Error::invalid(
            location,
            format!(
                "says it is rank {} of {}, in the file of rank {rank}",
                manifest.rank, manifest.world_size
            ),
        ));
    }
    if manifest.block_size == 0 || manifest.data_file != data_name(rank) {
        return Err(Error::invalid(
            location,
            "a block size of 0, or a data file not its rank's",
        ));
    }
    for entry in &manifest.entries {
        let bad =
            |problem: String| Error::invalid(location, format!("\"{}\": {problem}", entry.key));
        let dtype = entry
            .dtype
            .parse::<crate::dtype::DType>()
            .map_err(|e| bad(format!("{e}")))?;
        if let Some(stored) = &entry.stored {
            if stored.chunk.nbytes(dtype).ok() != Some(stored.length) {
                return Err(bad(format!(
                    "{} bytes of data for chunk {} of {dtype}",
                    stored.length, stored.chunk
                )));
            }
            if stored.chunk.global_shape() != entry.global.as_slice() {
                return Err(bad(format!(
                    "chunk {} of another shape than {:?}",
                    stored.chunk, entry.global
                )));
            }
            let end = stored.offset.checked_add(stored.length);
            if end.is_none_or(|end| end > manifest.data_len) {
                return Err(bad(format!(
                    "data at {}+{} past the end of its {}-byte file",
                    stored.offset, stored.length, manifest.data_len
                )));
            }
            let blocks = stored.length.div_ceil(manifest.block_size);
            if stored.checksums.len() as u64 != blocks {
                return Err(bad(format!(
                    "{} checksums for {blocks} blocks",
                    stored.checksums.len()
                )));
            }
            if let Some(tiles) = &stored.tiles {
                let layout = rows_of(&stored.chunk, dtype)
                    .and_then(|(rows, row)| Layout::new(tiles, rows, row))
                    .ok_or_else(|| {
                        bad(format!(
                            "tiles of {} bytes by {} rows for chunk {}",
                            tiles.band, tiles.rows, stored.chunk
                        ))
                    })?;
                if tiles.checksums.len() as u64 != layout.count() {
                    return Err(bad(format!(
                        "{} checksums for {} tiles",
                        tiles.checksums.len(),
                        layout.count()
                    )));
                }
            }
        }
    }
    Ok(manifest)
}

/// The save a manifest is a vote of, read leniently: `None` for bytes that are not a manifest
/// of this version (one an older ckpt left), which are no vote of any save under way.
pub(super) fn save_of(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Vote {
        format: String,
        version: u32,
        save: String,
    }
    serde_json::from_slice::<Vote>(bytes)
        .ok()
        .filter(|v| v.format == MANIFEST_FORMAT && v.version == VERSION)
        .map(|v| v.save)
}

/// Parses the commit marker.
pub(super) fn parse_metadata(location: &Location, bytes: &[u8]) -> Result<Metadata, Error> {
    let metadata: Metadata = serde_json::from_slice(bytes).map_err(|e| {
        Error::invalid(
            location,
            format!("not a sharded checkpoint's metadata: {e}"),
        )
    })?;
    if metadata.format != METADATA_FORMAT || metadata.version != VERSION {
        return Err(Error::invalid(
            location,
            format!(
                "metadata of format {:?} version {}; this ckpt reads {METADATA_FORMAT:?} version {VERSION}",
                metadata.format, metadata.version
            ),
        ));
    }
    if metadata.world_size == 0 || metadata.manifests.len() != metadata.world_size {
        return Err(Error::invalid(
            location,
            format!(
                "a job of {} ranks with {} manifests",
                metadata.world_size,
                metadata.manifests.len()
            ),
        ));
    }
    Ok(metadata)
}
