//! Saving and loading files: `save`, `load`, [`Checkpoint`], streaming loads into models.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, Index};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::de::DeserializeOwned;

use crate::device::DeviceError;
use crate::error::Error;
use crate::format::{Format, native, pytorch, safetensors};
use crate::load::{LoadOptions, LoadReport, load_into_with};
use crate::location::MapLocation;
use crate::module::{KeyPath, Leaf, StateDict};
use crate::source::TensorSource;
use crate::tensor::{Backing, Tensor, TensorError, TensorView};
use crate::value::{TensorCow, Value};
use crate::{DType, Device};

/// How to save a file.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SaveOptions {
    /// Whether the data and the rename are flushed to disk before `save` returns (`true`, the
    /// default). Off, a power failure soon after a save may lose it; the previous file is
    /// never damaged either way.
    pub fsync: bool,
    /// The format; `None` (the default) picks it from the extension: `.safetensors`, and
    /// ckpt's own for `.ckpt` and anything else. A path ending in `.index.json` writes a
    /// sharded safetensors checkpoint.
    pub format: Option<Format>,
    /// The most tensor bytes in one shard of a sharded checkpoint (default 5 GB, as Hugging
    /// Face's `max_shard_size`); a larger tensor gets a shard of its own.
    pub max_shard_bytes: usize,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            fsync: true,
            format: None,
            max_shard_bytes: 5_000_000_000,
        }
    }
}

impl SaveOptions {
    /// Durable saves: PyTorch's `torch.save` with an fsync.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`SaveOptions::fsync`].
    #[must_use]
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Sets [`SaveOptions::format`].
    #[must_use]
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Sets [`SaveOptions::max_shard_bytes`].
    #[must_use]
    pub fn max_shard_bytes(mut self, bytes: usize) -> Self {
        self.max_shard_bytes = bytes;
        self
    }
}

/// Saves a state dict or a checkpoint to `path`, as `torch.save` does.
///
/// Anything that converts into a [`Value`] can be saved: `model.state_dict()`, a [`dict!`]
/// of epoch, loss and state dicts, a `&Value` or a loaded [`Checkpoint`]. The file is replaced
/// atomically: a save that fails (or a process killed mid-save) leaves the previous file as
/// it was. Tensors that share memory (tied weights) are stored once.
///
/// [`dict!`]: crate::dict
///
/// ```
/// use ckpt_core::{Tensor, dict, load, save};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("checkpoint.ckpt");
/// let weight = Tensor::from(ndarray::array![[1.0f32, 2.0], [3.0, 4.0]]);
/// save(dict! { "epoch" => 3, "model_state_dict" => dict! { "fc.weight" => &weight } }, &path)?;
///
/// let checkpoint = load(&path)?;
/// assert_eq!(checkpoint.get::<u32>("epoch")?, 3);
/// assert_eq!(checkpoint["model_state_dict"]["fc.weight"].as_tensor().unwrap(), weight.view());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save<'a>(value: impl Into<Value<'a>>, path: impl AsRef<Path>) -> Result<(), Error> {
    save_with(value, path, &SaveOptions::default())
}

/// [`save`] with options.
pub fn save_with<'a>(
    value: impl Into<Value<'a>>,
    path: impl AsRef<Path>,
    options: &SaveOptions,
) -> Result<(), Error> {
    let (path, value) = (path.as_ref(), value.into());
    if options.format.is_none() && safetensors::is_index(path) {
        return safetensors::write_sharded(
            path,
            &value,
            options.max_shard_bytes,
            options.fsync,
            &|shard, value| write_file(shard, value, Format::SafeTensors, options.fsync),
        );
    }
    let format = options
        .format
        .or_else(|| Format::from_path(path))
        .unwrap_or(Format::Ckpt);
    write_file(path, &value, format, options.fsync)
}

fn write_file(path: &Path, value: &Value<'_>, format: Format, fsync: bool) -> Result<(), Error> {
    match format {
        Format::Ckpt => crate::atomic::write_atomically(path, fsync, |file, _| {
            native::write(value, file).map_err(|e| match e {
                native::WriteError::Io(e) => Error::io(path, e),
                native::WriteError::Device { key, source } => Error::Device {
                    path: path.to_owned(),
                    key,
                    source,
                },
            })
        }),
        Format::SafeTensors => {
            let prepared = safetensors::prepare(path, value)?;
            crate::atomic::write_atomically(path, fsync, |_, tmp| {
                prepared.write_to(tmp).map_err(|e| Error::io(path, e))
            })
        }
        Format::PyTorch => crate::atomic::write_atomically(path, fsync, |file, _| {
            pytorch::write(value, file).map_err(|source| Error::PyTorch {
                path: path.to_owned(),
                source,
            })
        }),
    }
}

/// Saves in the background: takes a snapshot now and writes it on another thread, so the
/// model can change as soon as this returns.
///
/// The snapshot shares the data of [`Tensor`](crate::Tensor) fields (they copy on write) and
/// copies borrowed data such as ndarray fields.
///
/// ```
/// # use ckpt_core::{Tensor, dict, save_async, load};
/// # let dir = tempfile::tempdir()?;
/// let mut weight = Tensor::from(ndarray::array![1.0f32, 2.0]);
/// let handle = save_async(dict! { "w" => &weight }, dir.path().join("w.ckpt"));
/// weight.array_mut::<f32>()?[[0]] = 9.0; // training goes on
/// handle.wait()?;
/// let saved = load(dir.path().join("w.ckpt"))?;
/// assert_eq!(saved["w"].as_tensor().unwrap().to_f64_vec(), [1.0, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_async<'a>(value: impl Into<Value<'a>>, path: impl AsRef<Path>) -> SaveHandle {
    save_async_with(value, path, &SaveOptions::default())
}

/// [`save_async`] with options.
pub fn save_async_with<'a>(
    value: impl Into<Value<'a>>,
    path: impl AsRef<Path>,
    options: &SaveOptions,
) -> SaveHandle {
    let snapshot = value.into().to_owned_value();
    let path = path.as_ref().to_owned();
    let options = options.clone();
    let thread_path = path.clone();
    let thread = std::thread::Builder::new()
        .name("ckpt-save".to_owned())
        .spawn(move || save_with(snapshot, &thread_path, &options));
    SaveHandle { path, thread }
}

/// A save running in the background; [`wait`](SaveHandle::wait) for its result.
#[must_use = "a background save's errors are only seen through wait()"]
pub struct SaveHandle {
    path: PathBuf,
    thread: std::io::Result<JoinHandle<Result<(), Error>>>,
}

impl SaveHandle {
    /// Waits for the save to finish and returns its result.
    pub fn wait(self) -> Result<(), Error> {
        let thread = self.thread.map_err(|e| Error::io(&self.path, e))?;
        thread.join().unwrap_or_else(|_| {
            Err(Error::io(
                &self.path,
                std::io::Error::other("the saving thread panicked"),
            ))
        })
    }

    /// Whether the save has finished (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().map_or(true, JoinHandle::is_finished)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for SaveHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaveHandle")
            .field("path", &self.path)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Loads a file saved by [`save`], as `torch.load` does, checking every checksum.
///
/// Tensors read the memory-mapped file in place: nothing is copied until a model loads them
/// or they are written to. Do not modify the file in place while the checkpoint lives
/// (replacing it, as [`save`] does, is fine).
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint, Error> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with options: `map_location`, checksums, memory mapping.
pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Checkpoint, Error> {
    let path = path.as_ref();
    let (checkpoint, _) = read(path, options, false, Placement::Move)?;
    Ok(checkpoint)
}

/// Opens any supported file (or sharded index), verifies it as `options` say (letting pages
/// go after hashing with `release`), and returns it with the bytes its tensors read.
fn read(
    path: &Path,
    options: &LoadOptions,
    release: bool,
    placement: Placement,
) -> Result<(Checkpoint, Vec<Arc<dyn Backing>>), Error> {
    if safetensors::is_index(path) {
        let (value, backings) = safetensors::read_sharded(path, options.mmap)?;
        let checkpoint = Checkpoint {
            value: placed(path, value, &options.map_location, placement)?,
            path: path.to_owned(),
            format: Format::SafeTensors,
        };
        return Ok((checkpoint, backings));
    }
    let backing = crate::backing::open(path, options.mmap)?;
    let checkpoint = from_backing(path, Arc::clone(&backing), options, release, placement)?;
    Ok((checkpoint, vec![backing]))
}

/// What loading does with the devices `map_location` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Moves each tensor there, as `torch.load` does.
    Move,
    /// Only checks that each device can be used: a load straight into a model copies into
    /// the model's tensors wherever they are, so moving first would copy twice.
    Check,
}

fn from_backing(
    path: &Path,
    backing: Arc<dyn Backing>,
    options: &LoadOptions,
    release: bool,
    placement: Placement,
) -> Result<Checkpoint, Error> {
    let format =
        Format::detect(backing.bytes()).ok_or_else(|| not_a_checkpoint(path, backing.bytes()))?;
    let value = match format {
        Format::Ckpt => {
            let opened = native::open(path, backing)?;
            let map_location = &options.map_location;
            if !options.verify_checksums {
                opened.value(path, map_location, placement)?
            } else if placement == Placement::Move
                && cfg!(feature = "cuda")
                && opened.data_len() >= 8 << 20
            {
                // Tensors bound for a GPU are copied while the checksums are checked, as
                // both read the mapped file; nothing is returned unless both succeed, and a
                // damaged file is reported as such even if the copy failed too. (Tensors
                // staying on the CPU only map the file: for them this costs a thread.)
                let (verified, value) = std::thread::scope(|scope| {
                    let verifier = scope.spawn(|| opened.verify(path, release));
                    let value = opened.value(path, map_location, placement);
                    (verifier.join(), value)
                });
                verified.unwrap_or_else(|_| {
                    Err(Error::io(
                        path,
                        std::io::Error::other("the checksum thread panicked"),
                    ))
                })?;
                value?
            } else {
                opened.verify(path, release)?;
                opened.value(path, map_location, placement)?
            }
        }
        Format::SafeTensors => placed(
            path,
            safetensors::read(path, backing)?,
            &options.map_location,
            placement,
        )?,
        Format::PyTorch => {
            let read = pytorch::ReadOptions::new().verify_crc(options.verify_checksums);
            let value =
                pytorch::read_backing(&backing, &read).map_err(|source| Error::PyTorch {
                    path: path.to_owned(),
                    source,
                })?;
            placed(path, value, &options.map_location, placement)?
        }
    };
    Ok(Checkpoint {
        value,
        path: path.to_owned(),
        format,
    })
}

fn not_a_checkpoint(path: &Path, bytes: &[u8]) -> Error {
    if bytes.len() < 8 {
        let needed = 8;
        return Error::corrupt(
            path,
            None,
            crate::error::Corruption::Truncated {
                len: bytes.len() as u64,
                needed,
            },
        );
    }
    Error::corrupt(
        path,
        None,
        crate::error::Corruption::BadMagic {
            found: bytes.iter().take(8).copied().collect(),
        },
    )
}

/// Applies `map_location` to a value read from a format that records no devices: every tensor
/// was saved from the CPU.
fn placed(
    path: &Path,
    mut value: Value<'static>,
    map_location: &MapLocation,
    placement: Placement,
) -> Result<Value<'static>, Error> {
    let mut place = |key: &str, tensor: &mut Tensor| {
        let target = map_location.resolve(key, Device::Cpu);
        if target != Device::Cpu {
            let error = |e| placement_error(path, key, Device::Cpu, target, map_location, e);
            crate::device::check(target).map_err(error)?;
            if placement == Placement::Move {
                *tensor = Tensor::to(tensor, target).map_err(error)?;
            }
        }
        Ok(())
    };
    place_tensors(&mut value, &mut KeyPath::new(), &mut place)?;
    Ok(value)
}

/// Calls `f` with every tensor of `value` and its flattened key, as [`Value::tensors`] names it.
fn place_tensors(
    value: &mut Value<'static>,
    path: &mut KeyPath,
    f: &mut dyn FnMut(&str, &mut Tensor) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut descend =
        |path: &mut KeyPath, segment: &dyn fmt::Display, child: &mut Value<'static>| {
            path.push(segment);
            let result = place_tensors(child, path, f);
            path.pop();
            result
        };
    match value {
        Value::List(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                descend(path, &i, item)?;
            }
        }
        Value::Map(map) => {
            for (k, v) in map.iter_mut() {
                descend(path, k, v)?;
            }
        }
        Value::Tensor(cow) => {
            if let TensorCow::Borrowed(view) = cow {
                *cow = TensorCow::Owned(view.to_tensor());
            }
            if let TensorCow::Owned(tensor) = cow {
                f(path.as_str(), tensor)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The error for a tensor that cannot go where `map_location` sent it.
pub(crate) fn placement_error(
    path: &Path,
    key: &str,
    saved: Device,
    target: Device,
    map_location: &MapLocation,
    error: DeviceError,
) -> Error {
    let reason = match &error {
        DeviceError::CudaUnavailable { reason, .. } => format!("CUDA is not available ({reason})"),
        DeviceError::NoSuchDevice { count, .. } => {
            format!("this machine has {count} CUDA device(s)")
        }
        _ => {
            return Error::Device {
                path: path.to_owned(),
                key: key.to_owned(),
                source: error,
            };
        }
    };
    Error::CudaUnavailable {
        path: path.to_owned(),
        key: key.to_owned(),
        saved,
        target,
        reason,
        chosen: !matches!(map_location, MapLocation::Saved),
    }
}

impl Checkpoint {
    /// Loads a file's bytes already in memory (received over a network, embedded with
    /// `include_bytes!`); errors name the file `<memory>`. Tensors are copied out of `bytes`
    /// where it is not aligned for them, and read in place where it is.
    pub fn from_bytes(bytes: Vec<u8>, options: &LoadOptions) -> Result<Checkpoint, Error> {
        from_backing(
            Path::new("<memory>"),
            Arc::new(bytes),
            options,
            false,
            Placement::Move,
        )
    }
}

/// Reads only the header of a file: the keys, dtypes, shapes and devices of its tensors,
/// without touching their data. Fast on files of any size.
pub fn inspect(path: impl AsRef<Path>) -> Result<Vec<TensorInfo>, Error> {
    let path = path.as_ref();
    let options = LoadOptions::new().verify_checksums(false);
    if !safetensors::is_index(path) {
        let backing = crate::backing::open(path, true)?;
        if Format::detect(backing.bytes()) == Some(Format::Ckpt) {
            let opened = native::open(path, backing)?;
            return Ok(opened
                .entries()
                .map(|e| TensorInfo {
                    key: e.key.to_owned(),
                    dtype: e.dtype,
                    shape: e.shape.to_vec(),
                    device: e.device,
                })
                .collect());
        }
    }
    // Other formats record no devices, and their headers are read whole anyway.
    let (checkpoint, _) = read(path, &options, false, Placement::Move)?;
    Ok(checkpoint
        .tensors()
        .into_iter()
        .map(|(key, t)| TensorInfo {
            key,
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            device: Device::Cpu,
        })
        .collect())
}

/// A tensor as a file's header describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TensorInfo {
    /// The flattened key of its first appearance.
    pub key: String,
    /// The element type.
    pub dtype: DType,
    /// The shape.
    pub shape: Vec<usize>,
    /// The device it was saved from.
    pub device: Device,
}

/// A loaded file: the saved [`Value`] (usually a map) and the path it came from.
///
/// Index it by name and hand what you get to `load_state_dict`, as in PyTorch; read plain
/// values with [`Checkpoint::get`]. It dereferences to its [`Value`].
#[derive(Clone, Debug)]
pub struct Checkpoint {
    value: Value<'static>,
    path: PathBuf,
    format: Format,
}

impl Checkpoint {
    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The value under `key`, read through serde as `T`; errors name the file.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, Error> {
        self.value.get(key).map_err(|source| Error::Value {
            path: self.path.clone(),
            source,
        })
    }

    /// The saved value.
    pub fn into_value(self) -> Value<'static> {
        self.value
    }
}

impl Deref for Checkpoint {
    type Target = Value<'static>;

    fn deref(&self) -> &Value<'static> {
        &self.value
    }
}

impl Index<&str> for Checkpoint {
    type Output = Value<'static>;

    fn index(&self, key: &str) -> &Value<'static> {
        &self.value[key]
    }
}

impl TensorSource for Checkpoint {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.value.get_tensor(key)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        self.value.tensor_keys()
    }
}

impl<'a> From<&'a Checkpoint> for Value<'a> {
    fn from(checkpoint: &'a Checkpoint) -> Self {
        checkpoint.value.reborrow()
    }
}

/// Loads a state dict file straight into a model: after the checksums, each tensor is copied
/// from the memory-mapped file into the model's own memory in chunks, whose pages are released
/// as soon as they are copied, so memory stays near the model's size.
pub(crate) fn load_from<M: StateDict + ?Sized>(
    model: &mut M,
    path: &Path,
    options: &LoadOptions,
) -> Result<LoadReport, Error> {
    // The model's tensors stay where they are: map_location is only checked.
    let (value, backings) = read(path, options, true, Placement::Check)?;
    let release = |bytes: &[u8]| backings.iter().for_each(|b| b.release(bytes));
    let prefetch = |bytes: &[u8]| backings.iter().for_each(|b| b.prefetch(bytes));
    let mut copy = |leaf: &mut dyn Leaf, src: &TensorView<'_>| -> Result<(), TensorError> {
        if leaf.view().dtype() == src.dtype() {
            if let Cow::Borrowed(from) = src.to_le_bytes() {
                if let Some(to) = leaf
                    .contiguous_bytes_mut()
                    .filter(|to| to.len() == from.len())
                {
                    for (to, from) in to.chunks_mut(CHUNK).zip(from.chunks(CHUNK)) {
                        prefetch(from);
                        to.copy_from_slice(from);
                        release(from);
                    }
                    return Ok(());
                }
            }
        }
        leaf.copy_from(src)
    };
    load_into_with(model, &value, options, &mut copy).map_err(|source| Error::Load {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// Copy and release granularity: large enough for full-speed copies, small against memory.
const CHUNK: usize = 4 << 20;
