//! [`load`]: a resharding load into one rank's model, reading only the blocks of the data
//! files that overlap the parts the model holds, each checked against its checksum.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;
use xxhash_rust::xxh3::xxh3_64;

use rayon::iter::{IntoParallelRefIterator, ParallelIterator};

use super::index::{self, Global, Piece};
use super::manifest::{self, MARKER, Manifest};
use super::tiles::{Layout, rows_of};
use super::{Error, layout};
use crate::dtype::DType;
use crate::file::LoadOptions;
use crate::file::paged::Paged;
use crate::file::threads;
use crate::loading::{LoadReport, StateDictOptions};
use crate::shard::{Chunk, Sharded, byte_ranges, copy_overlap, in_place, local_shape};
use crate::state::{KeyPath, Role, TensorSource, Visitor};
use crate::state_dict::{StateDict, load_into_with};
use crate::storage::{self, Lent, Location, Source};
use crate::tensor::{Backing, Tensor, TensorView};

/// What a sharded load did: `load_state_dict`'s report over the global keys, and how many
/// bytes of tensor data it read for how many it needed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Loaded {
    /// The report, as [`load_state_dict_with`](crate::StateDict::load_state_dict_with)
    /// gives it.
    pub report: LoadReport,
    /// Bytes read from the data files (whole checksum blocks).
    pub bytes_read: u64,
    /// Bytes of the parts the model holds.
    pub bytes_needed: u64,
}

/// Loads the sharded checkpoint in `dir` into `model`, one rank's or a whole one: the
/// [`Sharded`] fields get their parts, whatever sharding and number of ranks saved it; the
/// whole tensors get all of theirs. Each rank reads only the checksum blocks that overlap
/// what it holds, and checks each against its checksum.
///
/// Strictness, the key map and the dtype policy of `options` apply as in
/// [`load_state_dict_with`](crate::StateDict::load_state_dict_with), with the same report
/// and errors, over global keys; everything is read and checked before the model is
/// written, so after an error it is unchanged. A directory without the commit marker is
/// refused as incomplete.
///
/// Memory: data files are memory-mapped (unless `files` says not to) and each rank's parts
/// are copied from the checked blocks straight into its model, a few MiB at a time, so a load
/// holds no second copy of what it reads. As with [`load`](crate::load), do not modify the files in
/// place during the load. Read from files not mapped, or fetched from a URL, the rank's
/// parts are held in memory until the model is written: about their bytes again.
pub fn load<M: StateDict + ?Sized>(
    model: &mut M,
    dir: impl AsRef<Path>,
    options: &StateDictOptions,
) -> Result<Loaded, Error> {
    load_with(model, dir, options, &LoadOptions::default())
}

/// [`load`], with how files are opened (memory-mapped or read) and how URLs are reached.
pub fn load_with<M: StateDict + ?Sized>(
    model: &mut M,
    dir: impl AsRef<Path>,
    options: &StateDictOptions,
    files: &LoadOptions,
) -> Result<Loaded, Error> {
    let dir = Location::from(dir.as_ref());
    if options.auto_prefix {
        return Err(Error::invalid(
            &dir,
            "auto_prefix is not supported by sharded loads; give the key map instead",
        ));
    }
    let opened = open(&dir, files)?;

    // The model's persistent tensors: the parts each holds (the whole for a plain tensor).
    let mut needs = Needs::default();
    model.visit(&mut KeyPath::new(), Role::Parameter, &mut needs);
    let keys: Vec<&str> = opened.tensors.keys().map(String::as_str).collect();
    let plan = options.key_map.plan(&keys);
    let mut read = Read {
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        whole: IndexMap::new(),
        shards: IndexMap::new(),
    };
    let mut reader = Reader {
        dir: &dir,
        opened: &opened,
        files,
        sources: HashMap::new(),
        bytes_read: 0,
    };
    let mut bytes_needed = 0;
    for (from, to) in plan.pairs() {
        let (Some(need), Some(global)) = (needs.0.get(to.as_str()), opened.tensors.get(from))
        else {
            continue;
        };
        let fits = match need {
            Need::Whole(shape) => shape == &global.shape,
            Need::Parts(global_shape, _) => global_shape == &global.shape,
        };
        if !fits {
            // The load reports the shapes; nothing is read.
            read.shards.insert(
                from.clone(),
                Sharded::new(global.dtype, global.shape.clone(), Vec::new())
                    .map_err(|e| Error::invalid(&dir, e.to_string()))?,
            );
            continue;
        }
        let targets = match need {
            Need::Whole(shape) => {
                vec![Chunk::whole(shape.clone()).map_err(|e| Error::invalid(&dir, e.to_string()))?]
            }
            Need::Parts(_, chunks) => chunks.clone(),
        };
        for target in &targets {
            bytes_needed += target
                .nbytes(global.dtype)
                .map_err(|e| Error::invalid(&dir, e.to_string()))?;
        }
        // Verified and lent in place from the mapped files, or read into memory.
        let (chunks, mut parts): (Vec<Chunk>, Vec<Tensor>) =
            match reader.lend(from, global, &targets)? {
                Some(lent) => lent.into_iter().unzip(),
                None => (targets.clone(), reader.read(from, global, &targets)?),
            };
        if matches!(need, Need::Whole(_))
            && chunks == targets
            && let Some(whole) = parts.pop()
        {
            read.whole.insert(from.clone(), whole);
        } else {
            let sharded = Sharded::new(
                global.dtype,
                global.shape.clone(),
                chunks.into_iter().zip(parts).collect(),
            )
            .map_err(|e| Error::invalid(&dir, e.to_string()))?;
            read.shards.insert(from.clone(), sharded);
        }
    }
    // The parts lent from mapped files are paged in as they are copied and let go once
    // copied, so the files' pages do not stay resident beside the model.
    let backings = reader
        .sources
        .values()
        .filter_map(|s| s.backing())
        .collect();
    let pager = Paged::new(backings, files.threads);
    let report = load_into_with(model, &read, options, &pager)?;
    Ok(Loaded {
        report,
        bytes_read: reader.bytes_read,
        bytes_needed,
    })
}

/// A committed checkpoint's manifests and tensors.
pub(super) struct Opened {
    pub(super) manifests: Vec<Manifest>,
    pub(super) tensors: IndexMap<String, Global>,
}

/// Reads the commit marker, then every manifest it names, each checked against the
/// checksum the marker recorded, and checks them against one another.
pub(super) fn open(dir: &Location, files: &LoadOptions) -> Result<Opened, Error> {
    let remote = &files.object_store;
    let marker = dir.child(MARKER);
    let Some(bytes) = manifest::read_small(&marker, remote)? else {
        return Err(layout::incomplete(dir, remote));
    };
    let metadata = manifest::parse_metadata(&marker, &bytes)?;
    let mut manifests = Vec::with_capacity(metadata.world_size.min(1 << 16));
    for (rank, &expected) in metadata.manifests.iter().enumerate() {
        let file = dir.child(&manifest::manifest_name(rank));
        let bytes = manifest::read_small(&file, remote)?
            .ok_or_else(|| Error::invalid(&file, "missing, though the checkpoint is committed"))?;
        if xxh3_64(&bytes) != expected {
            return Err(Error::invalid(
                &file,
                "changed since the checkpoint was committed",
            ));
        }
        let manifest = manifest::parse_manifest(&file, &bytes, rank)?;
        if manifest.save != metadata.save {
            return Err(Error::invalid(
                &file,
                format!(
                    "a vote for save {}, in the checkpoint of save {}",
                    manifest.save, metadata.save
                ),
            ));
        }
        if manifest.world_size != metadata.world_size {
            return Err(Error::invalid(
                &file,
                format!(
                    "a rank of {} in a checkpoint of {}",
                    manifest.world_size, metadata.world_size
                ),
            ));
        }
        manifests.push(manifest);
    }
    let tensors = index::build(dir, &manifests)?;
    Ok(Opened { manifests, tensors })
}

/// What the model holds under a key.
enum Need {
    /// A whole tensor of this shape.
    Whole(Vec<u64>),
    /// Parts of a tensor of this global shape.
    Parts(Vec<u64>, Vec<Chunk>),
}

#[derive(Default)]
struct Needs(HashMap<String, Need>);

impl Visitor<'_> for Needs {
    fn tensor(&mut self, key: &str, tensor: TensorView<'_>, role: Role) {
        if role.is_persistent() {
            let shape = tensor.shape().iter().map(|&d| d as u64).collect();
            self.0.insert(key.to_owned(), Need::Whole(shape));
        }
    }

    fn sharded(&mut self, key: &str, tensor: &Sharded, role: Role) {
        if role.is_persistent() {
            let chunks = tensor.parts().iter().map(|(c, _)| c.clone()).collect();
            self.0.insert(
                key.to_owned(),
                Need::Parts(tensor.global_shape().to_vec(), chunks),
            );
        }
    }
}

/// Reads blocks of the data files, opening each once.
pub(super) struct Reader<'r> {
    pub(super) dir: &'r Location,
    pub(super) opened: &'r Opened,
    pub(super) files: &'r LoadOptions,
    pub(super) sources: HashMap<usize, Arc<dyn Source>>,
    pub(super) bytes_read: u64,
}

impl Reader<'_> {
    fn source(&mut self, rank: usize) -> Result<(Arc<dyn Source>, Location), Error> {
        let manifest = &self.opened.manifests[rank];
        let location = self.dir.child(&manifest.data_file);
        if let Some(source) = self.sources.get(&rank) {
            return Ok((Arc::clone(source), location));
        }
        let source = storage::open(&location, self.files.mmap, &self.files.object_store)
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
        self.sources.insert(rank, Arc::clone(&source));
        Ok((source, location))
    }

    /// The byte ranges of the stored `chunk`'s data that each of `targets` needs.
    fn wanted(
        &self,
        dtype: DType,
        chunk: &Chunk,
        targets: &[Chunk],
    ) -> Result<Vec<Vec<Range<u64>>>, Error> {
        targets
            .iter()
            .map(|target| byte_ranges(dtype, chunk, target))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::invalid(self.dir, e.to_string()))
    }

    /// The stored chunks of the tensor `key` that overlap `targets`, each as a tensor read
    /// in place from its mapped data file, once every checksum block that holds part of
    /// `targets` has been checked: a load copies only from those blocks. `None` where a
    /// chunk cannot be read in place (a file read into memory or fetched, a chunk not
    /// aligned for its dtype, `BOOL` data, whose every byte a tensor checks).
    fn lend(
        &mut self,
        key: &str,
        global: &Global,
        targets: &[Chunk],
    ) -> Result<Option<Vec<(Chunk, Tensor)>>, Error> {
        let dtype = global.dtype;
        let mut lent = Vec::new();
        let mut checks = Vec::new();
        for piece in &global.pieces {
            let chunk = &piece.stored.chunk;
            let wanted: Vec<Range<u64>> = self
                .wanted(dtype, chunk, targets)?
                .into_iter()
                .flatten()
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let (source, location) = self.source(piece.rank)?;
            let Some(backing) = source.backing() else {
                return Ok(None);
            };
            let range = usize::try_from(piece.stored.offset)
                .ok()
                .zip(usize::try_from(piece.stored.length).ok())
                .and_then(|(start, length)| Some(start..start.checked_add(length)?))
                .filter(|range| range.end <= backing.bytes().len());
            let Some(range) = range else {
                return Ok(None);
            };
            let at = backing.bytes().as_ptr() as usize + range.start;
            if dtype == DType::Bool || !at.is_multiple_of(dtype.size_in_bytes()) {
                return Ok(None);
            }
            let shape = local_shape(chunk).map_err(|e| Error::invalid(self.dir, e.to_string()))?;
            let tensor = Tensor::mapped(Arc::clone(&backing), range, dtype, &shape)
                .map_err(|e| Error::invalid(&location, format!("\"{key}\": {e}")))?;
            checks.push((
                piece,
                location,
                backing,
                Units::cheapest(piece, dtype, &wanted),
            ));
            lent.push((chunk.clone(), tensor));
        }
        // Every block or tile on the pool, each paged in, hashed and let go.
        let checked = threads::run(self.files.threads, || {
            checks
                .par_iter()
                .flat_map_iter(|(piece, location, backing, units)| {
                    (0..units.tasks()).map(move |task| (*piece, location, backing, units, task))
                })
                .map(|(piece, location, backing, units, index)| {
                    units.check(key, piece, location, backing.as_ref(), index)
                })
                .try_reduce(|| 0, |a, b| Ok(a + b))
        })?;
        self.bytes_read += checked;
        Ok(Some(lent))
    }

    /// The data of each of `targets` of the tensor `key`, gathered from the blocks of its
    /// stored chunks that overlap them.
    fn read(
        &mut self,
        key: &str,
        global: &Global,
        targets: &[Chunk],
    ) -> Result<Vec<Tensor>, Error> {
        let buffers = self.read_bytes(key, global, targets)?;
        targets
            .iter()
            .zip(buffers)
            .map(|(target, bytes)| {
                let shape =
                    local_shape(target).map_err(|e| Error::invalid(self.dir, e.to_string()))?;
                in_place(global.dtype, &shape, bytes)
                    .map_err(|e| Error::invalid(self.dir, format!("\"{key}\": {e}")))
            })
            .collect()
    }

    /// [`read`](Reader::read), as each target's little-endian bytes in C order.
    pub(super) fn read_bytes(
        &mut self,
        key: &str,
        global: &Global,
        targets: &[Chunk],
    ) -> Result<Vec<Vec<u8>>, Error> {
        let dtype = global.dtype;
        let mut buffers: Vec<Vec<u8>> = targets
            .iter()
            .map(|t| t.buffer_len(dtype).map(|n| vec![0u8; n]))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::invalid(self.dir, e.to_string()))?;
        for piece in &global.pieces {
            let chunk = &piece.stored.chunk;
            let wanted = self.wanted(dtype, chunk, targets)?;
            if wanted.iter().all(Vec::is_empty) {
                continue;
            }
            let blocks = self.read_blocks(key, piece, &wanted)?;
            for ((target, ranges), buffer) in targets.iter().zip(&wanted).zip(buffers.iter_mut()) {
                let Some(overlap) = chunk
                    .intersect(target)
                    .map_err(|e| Error::invalid(self.dir, e.to_string()))?
                else {
                    continue;
                };
                let mut bytes =
                    Vec::with_capacity(ranges.iter().map(|r| (r.end - r.start) as usize).sum());
                for r in ranges {
                    blocks.copy(r.start, r.end, &mut bytes);
                }
                copy_overlap(dtype, &overlap, &bytes, target, buffer)
                    .map_err(|e| Error::invalid(self.dir, e.to_string()))?;
            }
        }
        Ok(buffers)
    }

    /// Reads and checks every block of `piece` that one of `wanted` (ranges of its data)
    /// touches.
    fn read_blocks(
        &mut self,
        key: &str,
        piece: &Piece,
        wanted: &[Vec<std::ops::Range<u64>>],
    ) -> Result<Blocks, Error> {
        let size = piece.block_size;
        let length = piece.stored.length;
        let mut indices = BTreeSet::new();
        for r in wanted.iter().flatten() {
            indices.extend(r.start / size..r.end.div_ceil(size));
        }
        let (source, location) = self.source(piece.rank)?;
        let mut blocks = HashMap::with_capacity(indices.len());
        for index in indices {
            let start = index * size;
            let end = (start + size).min(length);
            let at = piece.stored.offset + start;
            // Lent in place from a mapped file; read into memory of its own otherwise.
            let block = storage::shared(source.as_ref(), at..at + (end - start))
                .map_err(|e| Error::io(&location, e))?;
            let bytes = &block.0.bytes()[block.1.clone()];
            self.bytes_read += bytes.len() as u64;
            if piece.stored.checksums.get(index as usize) != Some(&xxh3_64(bytes)) {
                return Err(Error::Damaged {
                    file: location,
                    key: key.to_owned(),
                    start: at,
                    end: at + bytes.len() as u64,
                });
            }
            blocks.insert(index, block);
        }
        Ok(Blocks { size, blocks })
    }
}

/// What a load checks of one stored chunk: the blocks, or the tiles, that hold the bytes it
/// needs, whichever are fewer bytes. Tiles are checked a row band at a time, so that the
/// pages of its rows are read in once for all its tiles.
enum Units {
    Blocks(Vec<u64>),
    /// The tiles needed, by row band.
    Tiles(Layout, Vec<Vec<u64>>),
}

impl Units {
    /// The cheaper units of `piece` (of `dtype`) that hold `wanted`, byte ranges of its data.
    fn cheapest(piece: &Piece, dtype: DType, wanted: &[Range<u64>]) -> Units {
        let size = piece.block_size;
        let length = piece.stored.length;
        let blocks: BTreeSet<u64> = wanted
            .iter()
            .flat_map(|r| r.start / size..r.end.div_ceil(size))
            .collect();
        let block_bytes: u64 = blocks
            .iter()
            .map(|&b| ((b + 1) * size).min(length) - b * size)
            .sum();
        let tiles = piece.stored.tiles.as_ref().and_then(|tiles| {
            let (rows, row) = rows_of(&piece.stored.chunk, dtype)?;
            let layout = Layout::new(tiles, rows, row)?;
            let touched = layout.touched(wanted);
            let bytes: u64 = touched.iter().map(|&t| layout.len(t)).sum();
            if bytes >= block_bytes {
                return None;
            }
            let mut bands: Vec<Vec<u64>> = Vec::new();
            for tile in touched {
                match bands.last_mut() {
                    Some(band) if layout.row_band(band[0]) == layout.row_band(tile) => {
                        band.push(tile);
                    }
                    _ => bands.push(vec![tile]),
                }
            }
            Some(Units::Tiles(layout, bands))
        });
        tiles.unwrap_or(Units::Blocks(blocks.into_iter().collect()))
    }

    /// How many tasks checking the units takes: one per block, one per row band of tiles.
    fn tasks(&self) -> usize {
        match self {
            Units::Blocks(blocks) => blocks.len(),
            Units::Tiles(_, bands) => bands.len(),
        }
    }

    /// Runs task `task` (see [`tasks`](Units::tasks)) over `piece`'s data, in the mapped file
    /// `backing` (at `location`): checks its units against their checksums, paging their
    /// bytes in for the hash and letting them go after; the bytes it checked.
    fn check(
        &self,
        key: &str,
        piece: &Piece,
        location: &Location,
        backing: &dyn Backing,
        task: usize,
    ) -> Result<u64, Error> {
        // Inside the mapped file: `lend` checked the chunk's range.
        let data = &backing.bytes()[piece.stored.offset as usize..][..piece.stored.length as usize];
        let damaged = |span: Range<u64>| Error::Damaged {
            file: location.clone(),
            key: key.to_owned(),
            start: piece.stored.offset + span.start,
            end: piece.stored.offset + span.end,
        };
        let bytes = |span: &Range<u64>| &data[span.start as usize..span.end as usize];
        match self {
            Units::Blocks(blocks) => {
                let (index, size) = (blocks[task], piece.block_size);
                let span = index * size..((index + 1) * size).min(piece.stored.length);
                backing.prefetch(bytes(&span));
                let sum = xxh3_64(bytes(&span));
                backing.release(bytes(&span));
                if piece.stored.checksums.get(index as usize) != Some(&sum) {
                    return Err(damaged(span));
                }
                Ok(span.end - span.start)
            }
            Units::Tiles(layout, bands) => {
                let tiles = &bands[task];
                let rows = layout.row_band_span(layout.row_band(tiles[0]));
                backing.prefetch(bytes(&rows));
                let checked = tiles.iter().try_fold(0, |checked, &tile| {
                    let sum = layout.hash(tile, data);
                    let expected = piece.stored.tiles.as_ref().map(|t| &t.checksums);
                    if expected.and_then(|sums| sums.get(tile as usize)) != Some(&sum) {
                        return Err(damaged(layout.span(tile)));
                    }
                    Ok(checked + layout.len(tile))
                });
                backing.release(bytes(&rows));
                checked
            }
        }
    }
}

/// Checked blocks of one stored chunk's data, by index. Blocks lent by a mapped file let
/// their pages go when dropped, so the file does not stay resident beside what was read.
struct Blocks {
    size: u64,
    blocks: HashMap<u64, Lent>,
}

impl Drop for Blocks {
    fn drop(&mut self) {
        for (backing, range) in self.blocks.values() {
            backing.release(&backing.bytes()[range.clone()]);
        }
    }
}

impl Blocks {
    /// Appends bytes `start..end` of the chunk's data, which lie in blocks read.
    fn copy(&self, mut start: u64, end: u64, out: &mut Vec<u8>) {
        while start < end {
            let index = start / self.size;
            let (backing, range) = &self.blocks[&index];
            let block = &backing.bytes()[range.clone()];
            let from = (start - index * self.size) as usize;
            let to = ((end - index * self.size) as usize).min(block.len());
            out.extend_from_slice(&block[from..to]);
            start = index * self.size + to as u64;
        }
    }
}

/// What this rank read, as a source for `load_state_dict`: every key of the checkpoint,
/// with the data of those the model holds.
struct Read {
    keys: Vec<String>,
    whole: IndexMap<String, Tensor>,
    shards: IndexMap<String, Sharded>,
}

impl TensorSource for Read {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.whole.get(key).map(Tensor::view)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        Box::new(self.keys.iter().map(|k| Cow::Borrowed(k.as_str())))
    }

    fn get_sharded(&self, key: &str) -> Option<&Sharded> {
        self.shards.get(key)
    }
}
