//! The storage seam under the formats: where a checkpoint's bytes come from and where they go.
//!
//! Formats read through a [`Source`], a fixed-length object read by byte ranges, and write
//! into a [`Sink`]; they never name a file system. What stands behind a source is this
//! module's business: a memory-mapped or read local file (`local.rs`), bytes already in memory
//! (`memory.rs`), an object in an object store behind a URL (`remote/`, with the
//! `object-store` feature). Writes to a [`Location`] are atomic: the bytes go to a temporary
//! object that is committed whole, or not at all (`atomic.rs`; for object stores, the
//! multipart upload's completion is the commit).
//!
//! A new backend is a new `Source`, a new way to commit, and a new kind of `Location` here;
//! no format changes.

pub(crate) mod atomic;
mod commit;
pub(crate) mod dir;
pub(crate) mod local;
pub(crate) mod memory;
mod options;
mod previous;
#[cfg(feature = "object-store")]
pub(crate) mod remote;
mod reserve;
mod url;
pub(crate) mod window;

use std::fmt;
use std::io::{self, Seek, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use self::dir::{create_dir, is_directory};
pub use self::options::ObjectStoreOptions;
pub use self::url::ObjectUrl;
use crate::tensor::Backing;

/// Where a checkpoint is: a file, an object behind a URL, or bytes in memory. Errors name it.
///
/// A path whose text starts with a scheme ckpt knows (`s3://`, `gs://`, `az://`, `http://`,
/// `https://`, `memory://`) is a URL; `file://` URLs are local files.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::storage::Location;
/// use std::path::Path;
///
/// assert!(Location::from(Path::new("s3://bucket/model.ckpt")).url().is_some());
/// assert_eq!(Location::from(Path::new("file:///tmp/m.ckpt")).path(), Some(Path::new("/tmp/m.ckpt")));
/// assert_eq!(Location::from(Path::new("m.ckpt")).path(), Some(Path::new("m.ckpt")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Location {
    /// A file on a local file system.
    Path(PathBuf),
    /// An object in an object store (with the `object-store` feature).
    Url(ObjectUrl),
    /// Bytes in memory, under a name for messages (`<memory>`).
    Memory(String),
}

impl Location {
    /// The file's path, for a local file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::Path(path) => Some(path),
            Location::Url(_) | Location::Memory(_) => None,
        }
    }

    /// The object's URL, for an object in a store.
    pub fn url(&self) -> Option<&ObjectUrl> {
        match self {
            Location::Url(url) => Some(url),
            Location::Path(_) | Location::Memory(_) => None,
        }
    }

    /// The object named `name` next to this one: the shards beside a sharded checkpoint's
    /// index. `None` for bytes in memory, which have no neighbours.
    pub(crate) fn sibling(&self, name: &str) -> Option<Location> {
        match self {
            Location::Path(path) => {
                let dir = path.parent().unwrap_or(Path::new(""));
                Some(Location::Path(dir.join(name)))
            }
            Location::Url(url) => Some(Location::Url(url.sibling(name))),
            Location::Memory(_) => None,
        }
    }

    /// The last component of the name: `model.safetensors.index.json`.
    pub(crate) fn file_name(&self) -> Option<&str> {
        match self {
            Location::Path(path) => path.file_name()?.to_str(),
            Location::Url(url) => url.file_name(),
            Location::Memory(name) => Some(name),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Path(path) => write!(f, "{}", path.display()),
            Location::Url(url) => write!(f, "{url}"),
            Location::Memory(name) => f.write_str(name),
        }
    }
}

impl From<&Path> for Location {
    /// A local file, or the object behind a URL if the path's text starts with a scheme ckpt
    /// knows.
    fn from(path: &Path) -> Self {
        match url::parse(path) {
            url::Parsed::Path(path) => Location::Path(path),
            url::Parsed::Url(url) => Location::Url(url),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::from(path.as_path())
    }
}

/// What a directory holds (see `dir::listing`), each list sorted by name: here, below both
/// `dir` and the object stores that list for it.
pub(crate) struct Listing {
    /// Its files (objects directly under the prefix), with their sizes in bytes.
    pub(crate) files: Vec<(String, u64)>,
    /// Its sub-directories (the next segments of longer names under the prefix).
    pub(crate) dirs: Vec<String>,
}

/// Bytes a source lends: a backing, and the range of it they occupy.
pub type Lent = (Arc<dyn Backing>, Range<usize>);

/// An object of fixed length that formats read by byte ranges.
///
/// Formats ask for tensor data through the crate's `shared`: a source that holds the whole object in memory
/// (a memory map, a buffer) lends it without a copy; any other reads the range.
pub trait Source: Send + Sync {
    /// Where the bytes are, for messages.
    fn location(&self) -> &Location;

    /// The length in bytes.
    fn len(&self) -> u64;

    /// Whether the object is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`; an error of kind
    /// `UnexpectedEof` if that runs past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// The whole object as bytes tensors may borrow for as long as they live, when the source
    /// holds it so (a memory map, a buffer); `None` when ranges must be read.
    fn backing(&self) -> Option<Arc<dyn Backing>> {
        None
    }

    /// The bytes of each of `ranges`, in order, lent or read. A remote source
    /// fetches them several at a time; the default reads them one by one.
    fn read_ranges(&self, ranges: &[Range<u64>]) -> io::Result<Vec<Lent>> {
        ranges.iter().map(|r| shared(self, r.clone())).collect()
    }

    /// Brings the whole object into memory, if it is not there already, so that
    /// [`backing`](Source::backing) lends it from then on: for a load that reads everything,
    /// which a remote source then fetches with several ranged GETs in flight rather than one
    /// range at a time. Local sources hold their object already: the default does nothing.
    fn fetch_whole(&self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes at `range` of `source` as a backing and the range of it they occupy: lent in place
/// when the source holds the object in memory, read otherwise.
pub(crate) fn shared<S: Source + ?Sized>(source: &S, range: Range<u64>) -> io::Result<Lent> {
    let len = source.len();
    if range.start > range.end || range.end > len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "bytes {}..{} lie beyond the end ({len} bytes)",
                range.start, range.end
            ),
        ));
    }
    if let Some(backing) = source.backing() {
        // In range of an in-memory object, so the bounds fit in `usize`.
        return Ok((backing, range.start as usize..range.end as usize));
    }
    let size = usize::try_from(range.end - range.start)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "range larger than memory"))?;
    let mut bytes = vec![0; size];
    source.read_at(range.start, &mut bytes)?;
    Ok((Arc::new(bytes), 0..size))
}

/// The bytes at `range` of `source`, copied out: for headers and other small records.
pub(crate) fn read_range(source: &dyn Source, range: Range<u64>) -> io::Result<Vec<u8>> {
    let (backing, range) = shared(source, range)?;
    Ok(backing.bytes()[range].to_vec())
}

/// Where formats write: anything that can be written and sought, such as a temporary file on
/// its way to being committed, or a `Cursor<Vec<u8>>`.
pub trait Sink: Write + Seek {}

impl<T: Write + Seek + ?Sized> Sink for T {}

/// Opens the object at `location` for reading: a local file memory-mapped (or, without `mmap`,
/// read whole), once; an object behind a URL by its length, to be read by ranges (with the
/// `object-store` feature); bytes in memory cannot be opened by name.
pub(crate) fn open(
    location: &Location,
    mmap: bool,
    remote: &ObjectStoreOptions,
) -> io::Result<Arc<dyn Source>> {
    match location {
        Location::Path(path) => Ok(Arc::new(local::open(path, mmap)?)),
        #[cfg(feature = "object-store")]
        Location::Url(url) => Ok(Arc::new(remote::open(url, remote)?)),
        #[cfg(not(feature = "object-store"))]
        Location::Url(url) => {
            let _ = remote;
            Err(without_object_store(url))
        }
        Location::Memory(name) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} is bytes in memory, which have no neighbours to open"),
        )),
    }
}

/// The error for a URL in a build without the `object-store` feature.
#[cfg(not(feature = "object-store"))]
pub(crate) fn without_object_store(url: &ObjectUrl) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{}:// URLs need ckpt's `object-store` feature (ckpt = {{ features = \"object-store\" }})",
            url.scheme()
        ),
    )
}
