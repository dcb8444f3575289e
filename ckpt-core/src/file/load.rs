//! `torch.load`: [`load`], [`inspect`], and loading a file straight into a model
//! ([`LoadFrom`]).

use std::path::Path;
use std::sync::Arc;

use super::fetch;
use super::open::{File, open, open_source};
use super::paged::Paged;
use super::place::{Placement, any_to_gpu, place};
use super::threads;
use super::{Checkpoint, Error, LoadOptions};
use crate::format::Header;
use crate::loading::{LoadReport, StateDictOptions};
use crate::state_dict::{StateDict, load_into_with};
use crate::storage::Location;
use crate::storage::memory::Held;
use crate::value::Value;

/// Loads a file saved by [`save`](crate::save) or written by PyTorch or safetensors, as
/// `torch.load` does, checking every checksum.
///
/// Tensors read the memory-mapped file in place: nothing is copied until a model loads them
/// or they are written to. Do not modify the file in place while the checkpoint lives
/// (replacing it, as [`save`](crate::save) does, is fine). With the `object-store` feature,
/// `path` may be a URL (`s3://bucket/key`, see [`Location`]): the object is fetched into
/// memory, several ranged GETs at once, each conditional on the version first seen.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Tensor, dict};
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("w.ckpt");
/// ckpt::save(dict! { "w" => Tensor::scalar(2.5f32) }, &path)?;
/// let checkpoint = ckpt::load(&path)?;
/// assert_eq!(checkpoint["w"].as_tensor().unwrap().to_f64_vec()?, [2.5]);
/// assert_eq!(checkpoint.format().name(), "ckpt");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint, Error> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with options: `map_location`, checksums, memory mapping, the format.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Device, LoadOptions, Tensor, dict};
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("w.ckpt");
/// ckpt::save(dict! { "w" => Tensor::scalar(2.5f32) }, &path)?;
/// let options = LoadOptions::new().map_location(Device::Cpu).mmap(false);
/// let checkpoint = ckpt::load_with(&path, &options)?;
/// assert_eq!(checkpoint["w"].as_tensor().unwrap().device(), Device::Cpu);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Checkpoint, Error> {
    let file = open(&Location::from(path.as_ref()), options)?;
    read(file, options)
}

impl Checkpoint {
    /// Loads a file's bytes already in memory (received over a network, embedded with
    /// `include_bytes!`); errors name the file `<memory>`. Tensors are copied out of `bytes`
    /// where it is not aligned for them, and read in place where it is.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::{Checkpoint, LoadOptions};
    ///
    /// let err = Checkpoint::from_bytes(b"not a checkpoint".to_vec(), &LoadOptions::new())
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("<memory>: not a checkpoint"), "{err}");
    /// ```
    pub fn from_bytes(bytes: Vec<u8>, options: &LoadOptions) -> Result<Checkpoint, Error> {
        let file = open_source(Arc::new(Held::from_vec("<memory>", bytes)), options)?;
        read(file, options)
    }
}

/// Verifies (as `options` say), reads and places an opened file.
fn read(file: File, options: &LoadOptions) -> Result<Checkpoint, Error> {
    file.fetch_whole()?;
    let saved = file.saved_devices();
    let mut value = file.value()?;
    let to_gpu = any_to_gpu(&value, &saved, &options.map_location);
    let place = |value: &mut Value<'static>| {
        place(
            value,
            &saved,
            &file.location,
            &options.map_location,
            Placement::Move,
        )
    };
    if !options.verify_checksums {
        place(&mut value)?;
    } else if to_gpu && cfg!(feature = "cuda") && file.header().nbytes() >= 8 << 20 {
        // Tensors bound for a GPU are copied while the checksums are checked, as both read the
        // mapped file; nothing is returned unless both succeed, and a damaged file is reported
        // as such even if the copy failed too. (Tensors staying on the CPU only map the file,
        // so for them this would cost a thread for nothing.)
        let (verified, placed) = std::thread::scope(|scope| {
            let verifier = scope.spawn(|| threads::run(options.threads, || file.verify(false)));
            let placed = place(&mut value);
            (verifier.join(), placed)
        });
        verified.unwrap_or_else(|_| {
            Err(Error::io(
                &file.location,
                std::io::Error::other("the checksum thread panicked"),
            ))
        })?;
        placed?;
    } else {
        threads::run(options.threads, || file.verify(false))?;
        place(&mut value)?;
    }
    Ok(Checkpoint::new(value, file.location, file.format))
}

/// Reads only the structure of a file: the keys, dtypes, shapes and devices of its tensors and
/// its plain values, without reading or checking tensor data. Fast on files of any size, and
/// lists a file whose data is damaged. For an object behind a URL, only the header is fetched.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Device, Tensor, dict};
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("w.ckpt");
/// ckpt::save(dict! { "epoch" => 2, "w" => Tensor::zeros(ckpt::DType::F16, &[3, 4])? }, &path)?;
/// let header = ckpt::inspect(&path)?;
/// assert_eq!(header.format, "ckpt");
/// assert_eq!(header.tensors[0].key, "w");
/// assert_eq!((header.tensors[0].shape.as_slice(), header.tensors[0].nbytes), (&[3, 4][..], 24));
/// assert_eq!(header.tensors[0].device, Device::Cpu);
/// assert_eq!(header.values[0].0, "epoch");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect(path: impl AsRef<Path>) -> Result<Header, Error> {
    inspect_with(path, &LoadOptions::default())
}

/// [`inspect`] with options: the format, the formats to detect among.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::format::PyTorch;
/// use ckpt::{LoadOptions, SaveOptions, Tensor, dict};
///
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("weights"); // no extension
/// ckpt::save_with(dict! { "w" => Tensor::scalar(1i64) }, &path, &SaveOptions::new().format(PyTorch))?;
/// let header = ckpt::inspect_with(&path, &LoadOptions::new().format(PyTorch))?;
/// assert_eq!((header.format, header.tensors.len()), ("pytorch", 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Header, Error> {
    Ok(open(&Location::from(path.as_ref()), options)?.header())
}

/// Loads a state dict file straight into a model, as `model.load_state_dict(torch.load(path))`
/// in one step: implemented for every [`StateDict`].
///
/// Unlike loading the file and then the state dict, no second copy of the tensors is held:
/// after the checksums (unless [`LoadOptions::verify_checksums`] says not to), each tensor is
/// copied from the memory-mapped file into the model's own memory in chunks, whose pages are
/// released as soon as they are copied, so memory stays near the model's size. The load is
/// checked whole before anything is written, as `load_state_dict` is; the model's tensors stay
/// on their devices, so `map_location` is only checked.
///
/// From an object behind a URL (the `object-store` feature), only the tensors the model takes
/// are fetched, several ranged GETs at once, and their checksums checked before the first
/// write; a model that does not fit is refused before any tensor data is fetched.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{LoadFrom, LoadOptions, StateDictOptions, Tensor, dict};
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("w.ckpt");
/// ckpt::save(dict! { "" => Tensor::scalar(4.0f32) }, &path)?;
/// let mut w = Tensor::scalar(0.0f32); // a model of one tensor, whose key is ""
/// let report = w.load_from(&path)?;
/// assert_eq!(report.loaded_keys, [""]);
/// assert_eq!(w, Tensor::scalar(4.0f32));
///
/// let trusted = LoadOptions::new().verify_checksums(false);
/// let partial = StateDictOptions::new().strict(false);
/// let _ = w.load_from_with(&path, &trusted, &partial)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait LoadFrom: StateDict {
    /// Loads the file at `path` into this model, strictly, with the default options.
    fn load_from(&mut self, path: impl AsRef<Path>) -> Result<LoadReport, Error>
    where
        Self: Sized,
    {
        self.load_from_with(path, &LoadOptions::new(), &StateDictOptions::new())
    }

    /// [`load_from`](LoadFrom::load_from) with the options of both steps: how the file is
    /// read, and how its state dict loads.
    fn load_from_with(
        &mut self,
        path: impl AsRef<Path>,
        load: &LoadOptions,
        state: &StateDictOptions,
    ) -> Result<LoadReport, Error>
    where
        Self: Sized,
    {
        let file = open(&Location::from(path.as_ref()), load)?;
        load_into(self, &file, load, state)
    }
}

impl<M: StateDict + ?Sized> LoadFrom for M {}

fn load_into<M: StateDict + ?Sized>(
    model: &mut M,
    file: &File,
    load: &LoadOptions,
    state: &StateDictOptions,
) -> Result<LoadReport, Error> {
    if fetch::is_remote(file) {
        if let Some(report) = fetch::load_into(model, file, load, state)? {
            return Ok(report);
        }
        file.fetch_whole()?;
    }
    if load.verify_checksums {
        // Every checksum, on every thread, before anything is written.
        threads::run(load.threads, || file.verify(true))?;
    }
    let mut value = file.value()?;
    place(
        &mut value,
        &file.saved_devices(),
        &file.location,
        &load.map_location,
        Placement::Check,
    )?;
    let pager = Paged::new(
        file.sources().iter().filter_map(|s| s.backing()).collect(),
        load.threads,
    );
    load_into_with(model, &value, state, &pager).map_err(|source| Error::Load {
        location: file.location.clone(),
        source: Box::new(source),
    })
}
