//! [`Whole`]: a committed sharded checkpoint read one global tensor at a time, each whole,
//! from the chunks every rank stored; and [`Whole::consolidate`], all of them at once with
//! one tensor in memory at a time, the rest staged in a scratch file.

use std::collections::HashMap;
use std::io::{BufWriter, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;
use memmap2::Mmap;

use super::Error;
use super::index::Global;
use super::load::{Opened, Reader, open};
use super::survey::{TensorSummary, summarize};
use crate::file::LoadOptions;
use crate::shard::{Chunk, in_place, local_shape};
use crate::storage::{Location, Source};
use crate::tensor::{Backing, Tensor};
use crate::value::{Key, Value};

/// Where tensors start in the scratch file: aligned for every dtype, so that each is read
/// in place from the mapping.
const ALIGN: u64 = 64;

/// The committed sharded checkpoint in a directory, read one global tensor at a time, whole:
/// what consolidating it into one file (`ckpt convert DIR model.safetensors`) needs. Every
/// block read is checked against its checksum.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::distributed::{self, Job, Whole};
/// use ckpt::shard::{Chunk, Sharded};
/// use ckpt::state::TensorMap;
/// use ckpt::{SaveOptions, Tensor};
///
/// # let tmp = tempfile::tempdir()?;
/// let dir = tmp.path().join("step-1");
/// let weight = Tensor::from_vec((0..8).map(|i| i as f32).collect(), &[4, 2])?;
/// let rows = Chunk::split(&[4, 2], 0, 2)?;
/// let parts = rows
///     .into_iter()
///     .map(|rows| Sharded::from_whole(&weight.view(), vec![rows]))
///     .collect::<Result<Vec<_>, _>>()?;
/// std::thread::scope(|s| {
///     for (rank, part) in parts.iter().enumerate() {
///         let dir = &dir;
///         s.spawn(move || {
///             let mut state = TensorMap::new();
///             state.insert_sharded("w", part);
///             distributed::save(&state, dir, &Job::new(rank, 2), &SaveOptions::new())
///         });
///     }
/// });
///
/// let mut whole = Whole::open(&dir)?;
/// assert_eq!(whole.tensors()[0].shape, [4, 2]);
/// assert_eq!(whole.read("w")?.view().to_f64_vec()?, [0., 1., 2., 3., 4., 5., 6., 7.]);
/// let all = whole.consolidate(&["w"], tmp.path())?;
/// assert_eq!(all["w"].as_tensor().map(|t| t.to_f64_vec()).transpose()?, Some(vec![0., 1., 2., 3., 4., 5., 6., 7.]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Whole {
    dir: Location,
    opened: Opened,
    files: LoadOptions,
    summary: Vec<TensorSummary>,
    sources: HashMap<usize, Arc<dyn Source>>,
    bytes_read: u64,
}

impl Whole {
    /// Opens the committed sharded checkpoint in `dir`: its commit marker and every manifest,
    /// checked as a load checks them. A directory without the marker is refused as
    /// [`Error::Incomplete`], naming the ranks present and missing.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Whole::open_with(dir, &LoadOptions::default())
    }

    /// [`open`](Whole::open), with how files are opened (memory-mapped or read) and how URLs
    /// are reached.
    pub fn open_with(dir: impl AsRef<Path>, files: &LoadOptions) -> Result<Self, Error> {
        let dir = Location::from(dir.as_ref());
        let opened = open(&dir, files)?;
        let summary = summarize(&opened.manifests);
        Ok(Whole {
            dir,
            opened,
            files: files.clone(),
            summary,
            sources: HashMap::new(),
            bytes_read: 0,
        })
    }

    /// How many ranks saved it.
    pub fn world_size(&self) -> usize {
        self.opened.manifests.len()
    }

    /// Every tensor, by global key, in the order rank 0 and then the others name them: the
    /// tensors saved whole (replicated) first, then the sharded ones.
    pub fn tensors(&self) -> &[TensorSummary] {
        &self.summary
    }

    /// Bytes of tensor data read so far (whole checksum blocks).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The tensor `key`, whole: its little-endian bytes in C order, gathered from every
    /// rank's chunks, each block checked against its checksum ([`Error::Damaged`] names the
    /// data file and the key). Holds about twice the tensor's bytes while it reads.
    pub fn read_le_bytes(&mut self, key: &str) -> Result<Vec<u8>, Error> {
        let (global, whole) = whole_of(&self.dir, &self.opened, key)?;
        let mut reader = Reader {
            dir: &self.dir,
            opened: &self.opened,
            files: &self.files,
            sources: std::mem::take(&mut self.sources),
            bytes_read: 0,
        };
        let read = reader.read_bytes(key, global, &[whole]);
        self.sources = reader.sources;
        self.bytes_read += reader.bytes_read;
        Ok(read?.remove(0))
    }

    /// The tensor `key`, whole, as [`read_le_bytes`](Whole::read_le_bytes) reads it.
    pub fn read(&mut self, key: &str) -> Result<Tensor, Error> {
        let bytes = self.read_le_bytes(key)?;
        let (dtype, shape) = self.dtype_and_shape(key)?;
        in_place(dtype, &shape, bytes)
            .map_err(|e| Error::invalid(&self.dir, format!("\"{key}\": {e}")))
    }

    /// The tensors `keys`, each whole, as one map under their global keys, in that order:
    /// what a single-file save of the whole checkpoint takes.
    ///
    /// Memory holds one tensor at a time (about twice its bytes while it is gathered): each
    /// is written to a scratch file in `scratch` as soon as it is read, and the map's
    /// tensors read that file in place, memory-mapped, so a writer streams them from the page
    /// cache. The scratch file needs the tensors' bytes of disk in `scratch` (on the output's
    /// file system, not a RAM disk, for the bound to hold) and is removed when the last tensor
    /// of the map is dropped, or by the system if the process dies: it has no name.
    pub fn consolidate(
        &mut self,
        keys: &[&str],
        scratch: impl AsRef<Path>,
    ) -> Result<Value<'static>, Error> {
        let scratch = Location::from(scratch.as_ref());
        let io = |e| Error::io(&scratch, e);
        let Location::Path(scratch_dir) = &scratch else {
            return Err(Error::invalid(
                &scratch,
                "the scratch space must be a local directory",
            ));
        };
        let file = tempfile::tempfile_in(scratch_dir).map_err(io)?;
        let mut out = BufWriter::new(file);
        let mut placed = Vec::with_capacity(keys.len());
        let mut at = 0u64;
        for &key in keys {
            let bytes = self.read_le_bytes(key)?;
            let start = at.next_multiple_of(ALIGN);
            let padding = [0u8; ALIGN as usize];
            out.write_all(&padding[..(start - at) as usize])
                .map_err(io)?;
            out.write_all(&bytes).map_err(io)?;
            at = start + bytes.len() as u64;
            placed.push((key, start..at));
        }
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.flush().map_err(io)?;
        file.rewind().map_err(io)?;
        let backing: Arc<dyn Backing> = if at == 0 {
            Arc::new(Vec::new())
        } else {
            // SAFETY: the scratch file has no name and only this handle, so nothing else can
            // truncate or write it; this function wrote it whole before mapping it and never
            // writes it again.
            Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?)
        };
        let mut map = IndexMap::with_capacity(placed.len());
        for (key, range) in placed {
            let (dtype, shape) = self.dtype_and_shape(key)?;
            let to_usize = |n: u64| {
                usize::try_from(n)
                    .map_err(|_| Error::invalid(&scratch, "larger than memory can address"))
            };
            let range = to_usize(range.start)?..to_usize(range.end)?;
            let tensor = Tensor::mapped(Arc::clone(&backing), range, dtype, &shape)
                .map_err(|e| Error::invalid(&self.dir, format!("\"{key}\": {e}")))?;
            map.insert(Key::Str(key.to_owned()), Value::from(tensor));
        }
        Ok(Value::Map(map.into()))
    }

    /// A tensor's dtype and its shape in memory.
    fn dtype_and_shape(&self, key: &str) -> Result<(crate::dtype::DType, Vec<usize>), Error> {
        let (global, whole) = whole_of(&self.dir, &self.opened, key)?;
        let shape = local_shape(&whole).map_err(|e| Error::invalid(&self.dir, e.to_string()))?;
        Ok((global.dtype, shape))
    }
}

/// The tensor `key` of the checkpoint, and the chunk that is all of it.
fn whole_of<'o>(
    dir: &Location,
    opened: &'o Opened,
    key: &str,
) -> Result<(&'o Global, Chunk), Error> {
    let global = opened
        .tensors
        .get(key)
        .ok_or_else(|| Error::invalid(dir, format!("the checkpoint holds no tensor \"{key}\"")))?;
    let whole =
        Chunk::whole(global.shape.clone()).map_err(|e| Error::invalid(dir, e.to_string()))?;
    Ok((global, whole))
}
