//! Saving and loading files: `save`, `load`, [`Checkpoint`], streaming loads into models.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, Index};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::format::native;
use crate::load::{LoadOptions, LoadReport, load_into_with};
use crate::module::{Leaf, StateDict};
use crate::source::TensorSource;
use crate::tensor::{Backing, TensorError, TensorView};
use crate::value::Value;
use crate::{DType, Device};

/// How to save a file.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SaveOptions {
    /// Whether the data and the rename are flushed to disk before `save` returns (`true`, the
    /// default). Off, a power failure soon after a save may lose it; the previous file is
    /// never damaged either way.
    pub fsync: bool,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions { fsync: true }
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
    let value = value.into();
    crate::atomic::write_atomically(path.as_ref(), options.fsync, |file| {
        native::write(&value, file)
    })
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
    let opened = open(path, options)?;
    if options.verify_checksums {
        opened.verify(path, false)?;
    }
    Ok(Checkpoint {
        value: opened.value(path, &options.map_location)?,
        path: path.to_owned(),
    })
}

impl Checkpoint {
    /// Loads a file's bytes already in memory (received over a network, embedded with
    /// `include_bytes!`); errors name the file `<memory>`. Tensors are copied out of `bytes`
    /// where it is not aligned for them, and read in place where it is.
    pub fn from_bytes(bytes: Vec<u8>, options: &LoadOptions) -> Result<Checkpoint, Error> {
        let path = Path::new("<memory>");
        let opened = native::open(path, Arc::new(bytes))?;
        if options.verify_checksums {
            opened.verify(path, false)?;
        }
        Ok(Checkpoint {
            value: opened.value(path, &options.map_location)?,
            path: path.to_owned(),
        })
    }
}

fn open(path: &Path, options: &LoadOptions) -> Result<native::Opened, Error> {
    let backing = crate::backing::open(path, options.mmap)?;
    native::open(path, backing)
}

/// Reads only the header of a file: the keys, dtypes, shapes and devices of its tensors,
/// without touching their data. Fast on files of any size.
pub fn inspect(path: impl AsRef<Path>) -> Result<Vec<TensorInfo>, Error> {
    let path = path.as_ref();
    let opened = open(path, &LoadOptions::default())?;
    Ok(opened
        .entries()
        .map(|e| TensorInfo {
            key: e.key.to_owned(),
            dtype: e.dtype,
            shape: e.shape.to_vec(),
            device: e.device,
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
}

impl Checkpoint {
    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
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
    let opened = open(path, options)?;
    let backing: &Arc<dyn Backing> = opened.backing();
    if options.verify_checksums {
        opened.verify(path, true)?;
    }
    let value = opened.value(path, &options.map_location)?;
    let mut copy = |leaf: &mut dyn Leaf, src: &TensorView<'_>| -> Result<(), TensorError> {
        if leaf.view().dtype() == src.dtype() {
            if let Cow::Borrowed(from) = src.to_le_bytes() {
                if let Some(to) = leaf
                    .contiguous_bytes_mut()
                    .filter(|to| to.len() == from.len())
                {
                    for (to, from) in to.chunks_mut(CHUNK).zip(from.chunks(CHUNK)) {
                        backing.prefetch(from);
                        to.copy_from_slice(from);
                        backing.release(from);
                    }
                    return Ok(());
                }
            }
        }
        leaf.copy_from(src)
    };
    load_into_with(model, &value, options, &mut copy).map_err(|source| Error::Load {
        path: path.to_owned(),
        source,
    })
}

/// Copy and release granularity: large enough for full-speed copies, small against memory.
const CHUNK: usize = 4 << 20;
