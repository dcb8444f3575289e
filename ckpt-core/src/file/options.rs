//! [`LoadOptions`] and [`SaveOptions`]: how files are read and written.

use std::fmt;
use std::sync::Arc;

use crate::device::MapLocation;
use crate::format::{Format, Registry};
use crate::storage::ObjectStoreOptions;

/// How to read a file: `torch.load`'s options. How its tensors then load into a model is
/// configured apart, by [`StateDictOptions`](crate::StateDictOptions).
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{Device, LoadOptions};
///
/// let options = LoadOptions::new().map_location(Device::Cpu).verify_checksums(false);
/// assert!(!options.verify_checksums);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Where loaded tensors go, from the device each was saved on.
    pub map_location: MapLocation,
    /// Whether checksums are verified before anything is used (`true`, the default): every
    /// tensor's xxh3 in ckpt's format, every record's CRC-32 in PyTorch's; turn off only for
    /// files you trust, to save one pass over the data.
    pub verify_checksums: bool,
    /// Whether files are memory-mapped (`true`, the default) rather than read into memory.
    pub mmap: bool,
    /// The format to read the file as; `None` (the default) detects it from the first bytes.
    pub format: Option<Arc<dyn Format>>,
    /// The formats detection chooses among ([`Registry::builtin`] by default): add your own
    /// with [`Registry::with`].
    pub formats: Registry,
    /// How checkpoints at URLs are reached and fetched: credentials, endpoint, GETs in
    /// flight, retries (the environment's settings by default).
    pub object_store: ObjectStoreOptions,
    /// How many threads check the checksums and copy into a model; `None` (the default):
    /// the `CKPT_THREADS` environment variable, or every core. The result is the same with
    /// any number.
    pub threads: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            map_location: MapLocation::Saved,
            verify_checksums: true,
            mmap: true,
            format: None,
            formats: Registry::builtin(),
            object_store: ObjectStoreOptions::default(),
            threads: None,
        }
    }
}

impl LoadOptions {
    /// Checked, memory-mapped, each tensor where it was saved: the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`LoadOptions::map_location`]: a [`Device`](crate::Device), a table
    /// `[(from, to), ...]`, or a [`MapLocation`].
    #[must_use]
    pub fn map_location(mut self, location: impl Into<MapLocation>) -> Self {
        self.map_location = location.into();
        self
    }

    /// Sets [`LoadOptions::verify_checksums`].
    #[must_use]
    pub fn verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }

    /// Sets [`LoadOptions::mmap`].
    #[must_use]
    pub fn mmap(mut self, mmap: bool) -> Self {
        self.mmap = mmap;
        self
    }

    /// Sets [`LoadOptions::format`]: read the file as `format`, without detecting.
    #[must_use]
    pub fn format(mut self, format: impl Format + 'static) -> Self {
        self.format = Some(Arc::new(format));
        self
    }

    /// Sets [`LoadOptions::formats`].
    #[must_use]
    pub fn formats(mut self, formats: Registry) -> Self {
        self.formats = formats;
        self
    }

    /// Sets [`LoadOptions::threads`]; `1` is the serial load.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// let options = ckpt::LoadOptions::new().threads(2);
    /// assert_eq!(options.threads, Some(2));
    /// ```
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Sets [`LoadOptions::object_store`].
    #[must_use]
    pub fn object_store(mut self, options: ObjectStoreOptions) -> Self {
        self.object_store = options;
        self
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("map_location", &self.map_location)
            .field("verify_checksums", &self.verify_checksums)
            .field("mmap", &self.mmap)
            .field("format", &self.format.as_ref().map(|f| f.name()))
            .field("formats", &self.formats)
            .field("object_store", &self.object_store)
            .field("threads", &self.threads)
            .finish()
    }
}

/// How to write a file.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::SaveOptions;
/// use ckpt::format::PyTorch;
///
/// let options = SaveOptions::new().format(PyTorch).fsync(false);
/// assert_eq!(options.format.as_ref().map(|f| f.name()), Some("pytorch"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct SaveOptions {
    /// Whether the data and the rename are flushed to disk before `save` returns (`true`, the
    /// default). A save that fails or is killed never damages the previous file either way.
    /// Off, the save returns once its bytes are in the page cache, and a power failure (or
    /// kernel crash) before the kernel writes them back may lose it: the file then reads as
    /// zeros where its data did not reach the disk, which the checksums of ckpt's own format
    /// report on load, and the previous file is gone, as on file systems that allocate late
    /// (XFS, ext4 with the space reserved ahead, which such saves do to spare the rename a
    /// flush).
    pub fsync: bool,
    /// The format; `None` (the default) picks it from the extension among
    /// [`formats`](SaveOptions::formats): `.safetensors`, `.pt`/`.pth`/`.bin`, and ckpt's own
    /// for `.ckpt` and anything else. A path ending in `.index.json` writes a sharded
    /// safetensors checkpoint.
    pub format: Option<Arc<dyn Format>>,
    /// The formats the extension is looked up among ([`Registry::builtin`] by default).
    pub formats: Registry,
    /// The most tensor bytes in one shard of a sharded checkpoint (default 5 GB, as Hugging
    /// Face's `max_shard_size`); a larger tensor gets a shard of its own.
    pub max_shard_bytes: usize,
    /// How checkpoints at URLs are reached and uploaded: credentials, endpoint, part size,
    /// parts in flight, retries (the environment's settings by default).
    pub object_store: ObjectStoreOptions,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            fsync: true,
            format: None,
            formats: Registry::builtin(),
            max_shard_bytes: 5_000_000_000,
            object_store: ObjectStoreOptions::default(),
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
    pub fn format(mut self, format: impl Format + 'static) -> Self {
        self.format = Some(Arc::new(format));
        self
    }

    /// Sets [`SaveOptions::formats`].
    #[must_use]
    pub fn formats(mut self, formats: Registry) -> Self {
        self.formats = formats;
        self
    }

    /// Sets [`SaveOptions::max_shard_bytes`].
    #[must_use]
    pub fn max_shard_bytes(mut self, bytes: usize) -> Self {
        self.max_shard_bytes = bytes;
        self
    }

    /// Sets [`SaveOptions::object_store`].
    #[must_use]
    pub fn object_store(mut self, options: ObjectStoreOptions) -> Self {
        self.object_store = options;
        self
    }
}

impl fmt::Debug for SaveOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaveOptions")
            .field("fsync", &self.fsync)
            .field("format", &self.format.as_ref().map(|f| f.name()))
            .field("formats", &self.formats)
            .field("max_shard_bytes", &self.max_shard_bytes)
            .field("object_store", &self.object_store)
            .finish()
    }
}
