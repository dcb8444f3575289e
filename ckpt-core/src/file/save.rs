//! `torch.save`: [`save`], and [`save_async`] for training loops.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{Error, SaveOptions, threads};
use crate::format::safetensors::sharded;
use crate::format::{Format, Native};
use crate::storage::Location;
use crate::storage::atomic::{Commit, CommitError, write_atomically};
use crate::value::Value;

/// Saves a state dict or a checkpoint to `path`, as `torch.save` does.
///
/// Anything that converts into a [`Value`] can be saved: `model.state_dict()`, a [`dict!`]
/// of epoch, loss and state dicts, a `&Value` or a loaded [`Checkpoint`](crate::Checkpoint).
/// The file is replaced atomically: a save that fails (or a process killed mid-save) leaves
/// the previous file as it was. Tensors that share memory (tied weights) are stored once.
/// With the `object-store` feature, `path` may be a URL (`s3://bucket/key`): the file is
/// streamed into a multipart upload in bounded memory, and appears whole when it completes.
///
/// [`dict!`]: crate::dict
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Tensor, dict, load, save};
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

/// [`save`] with options: the format, fsync, the shard size of sharded checkpoints.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::format::PyTorch;
/// use ckpt::{SaveOptions, Tensor, dict, save_with};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("weights"); // no extension: the format is given
/// let options = SaveOptions::new().format(PyTorch);
/// save_with(dict! { "w" => Tensor::scalar(1.0f32) }, &path, &options)?;
/// assert_eq!(ckpt::load(&path)?.format().name(), "pytorch");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_with<'a>(
    value: impl Into<Value<'a>>,
    path: impl AsRef<Path>,
    options: &SaveOptions,
) -> Result<(), Error> {
    let location = Location::from(path.as_ref());
    let value = value.into();
    if let Some((key, defect)) = value.first_defect() {
        return Err(Error::Unsupported {
            location,
            key: (!key.is_empty()).then_some(key),
            problem: format!("cannot be saved: {defect}"),
        });
    }
    let commit = Commit {
        fsync: options.fsync,
        remote: &options.object_store,
        size_hint: value.tensors().iter().map(|(_, t)| t.nbytes() as u64).sum(),
    };
    if options.format.is_none() && sharded::is_index(&location) {
        return Ok(sharded::write(
            &location,
            &value,
            options.max_shard_bytes,
            &commit,
        )?);
    }
    let format: Arc<dyn Format> = match &options.format {
        Some(format) => Arc::clone(format),
        None => location
            .file_name()
            .and_then(|name| options.formats.by_extension(Path::new(name)))
            .cloned()
            .unwrap_or_else(|| Arc::new(Native)),
    };
    // On ckpt's pool (`CKPT_THREADS`, else every core): this thread writes, the others hash
    // what it writes meanwhile.
    threads::run(None, || {
        write_atomically(&location, &commit, |sink| format.write(&value, sink))
    })
    .map_err(|e| match e {
        CommitError::Write(e) => Error::from(e.in_file(&location)),
        CommitError::Io(e) => Error::io(&location, e),
    })
}

/// Saves in the background: takes a snapshot now and writes it on another thread, so the
/// model can change as soon as this returns.
///
/// The snapshot shares the data of [`Tensor`](crate::Tensor) fields (they copy on write) and
/// copies borrowed data such as ndarray fields.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Tensor, dict, load, save_async};
///
/// # let dir = tempfile::tempdir()?;
/// let mut weight = Tensor::from(ndarray::array![1.0f32, 2.0]);
/// let handle = save_async(dict! { "w" => &weight }, dir.path().join("w.ckpt"));
/// weight.array_mut::<f32>()?[[0]] = 9.0; // training goes on
/// handle.wait()?;
/// let saved = load(dir.path().join("w.ckpt"))?;
/// assert_eq!(saved["w"].as_tensor().unwrap().to_f64_vec()?, [1.0, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_async<'a>(value: impl Into<Value<'a>>, path: impl AsRef<Path>) -> SaveHandle {
    save_async_with(value, path, &SaveOptions::default())
}

/// [`save_async`] with options.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{SaveOptions, Tensor, dict};
///
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("w.safetensors");
/// let handle = ckpt::save_async_with(dict! { "w" => Tensor::scalar(1.0f32) }, &path, &SaveOptions::new().fsync(false));
/// assert_eq!(handle.path(), path);
/// handle.wait()?;
/// assert_eq!(ckpt::load(&path)?.format().name(), "safetensors");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_async_with<'a>(
    value: impl Into<Value<'a>>,
    path: impl AsRef<Path>,
    options: &SaveOptions,
) -> SaveHandle {
    // The snapshot's copies spread over ckpt's pool, a few MiB at a time.
    let value = value.into();
    let snapshot = threads::run(None, || value.to_owned_value());
    let path = path.as_ref().to_owned();
    let options = options.clone();
    let thread_path = path.clone();
    let thread = std::thread::Builder::new()
        .name("ckpt-save".to_owned())
        .spawn(move || save_with(snapshot, &thread_path, &options));
    SaveHandle { path, thread }
}

/// A save running in the background; [`wait`](SaveHandle::wait) for its result.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Tensor, dict};
///
/// # let dir = tempfile::tempdir()?;
/// let handle = ckpt::save_async(dict! { "w" => Tensor::scalar(1.0f32) }, dir.path().join("w.ckpt"));
/// handle.wait()?; // the save's error, if it failed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a background save's errors are only seen through wait()"]
pub struct SaveHandle {
    path: PathBuf,
    thread: std::io::Result<JoinHandle<Result<(), Error>>>,
}

impl SaveHandle {
    /// Waits for the save to finish and returns its result.
    pub fn wait(self) -> Result<(), Error> {
        let location = Location::from(self.path.as_path());
        let thread = self.thread.map_err(|e| Error::io(&location, e))?;
        thread.join().unwrap_or_else(|_| {
            Err(Error::io(
                &location,
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
