//! [`Error`]: everything that can go wrong reading or writing a checkpoint file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::device::{Device, DeviceError};
use crate::load::LoadError;
use crate::tensor::TensorError;
use crate::value::ValueError;

/// An error of a file operation. Every message starts with the file and, where one is known,
/// names the tensor's key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused a read or write.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file is damaged or not what it claims to be.
    #[error("{}: {}{problem}", path.display(), KeyPrefix(key.as_deref()))]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The tensor or value concerned, if any.
        key: Option<String>,
        /// What is wrong (boxed: it is large and errors are rare).
        problem: Box<Corruption>,
    },
    /// The file was written by a newer ckpt whose format this version cannot read.
    #[error(
        "{}: written in ckpt format {major}.{minor}, newer than the {supported}.x this version \
         reads; upgrade ckpt",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The file's major version.
        major: u16,
        /// The file's minor version.
        minor: u16,
        /// The major version this build reads.
        supported: u16,
    },
    /// A tensor must go to a CUDA device, and CUDA (or that device) is not available.
    #[error(
        "{}: tensor \"{key}\" was saved on {saved} and would load onto {target}, {}",
        path.display(),
        CudaAdvice { target: *target, reason, chosen: *chosen }
    )]
    CudaUnavailable {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        key: String,
        /// The device it was saved on.
        saved: Device,
        /// The device `map_location` chose.
        target: Device,
        /// Why the device cannot be used: no driver, no such device, a build without the
        /// `cuda` feature.
        reason: String,
        /// Whether a `map_location` given by the caller chose `target` (otherwise it is the
        /// device the tensor was saved on).
        chosen: bool,
    },
    /// A GPU failed while tensors were copied to or from it (out of memory, a lost device).
    #[error("{}: tensor \"{key}\": {source}", path.display())]
    Device {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        key: String,
        /// What the device said.
        #[source]
        source: DeviceError,
    },
    /// The tensors do not fit the model.
    #[error("{}: {source}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Every mismatch.
        #[source]
        source: Box<LoadError>,
    },
    /// A value could not be read as the type asked for.
    #[error("{}: {source}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// What serde said.
        #[source]
        source: ValueError,
    },
    /// A PyTorch file could not be read or written: damaged, truncated, or holding something
    /// the restricted unpickler refuses (code, a pickled module).
    #[error("{}: {source}", path.display())]
    PyTorch {
        /// The file.
        path: PathBuf,
        /// What went wrong, with the zip record and key where known.
        #[source]
        source: crate::format::pytorch::PtError,
    },
    /// A key map could not be applied: two keys landed on one.
    #[error("{}: {source}", path.display())]
    KeyMap {
        /// The file.
        path: PathBuf,
        /// Which keys collided.
        #[source]
        source: crate::keymap::KeyMapError,
    },
    /// A whole model's file does not fit the type it is loaded as.
    #[error(
        "{}: the file holds a `{saved}` whose layout differs from `{loading}`:{}",
        path.display(),
        crate::whole::Lines(differences)
    )]
    ModelMismatch {
        /// The file.
        path: PathBuf,
        /// The type name recorded in the file.
        saved: String,
        /// The type it was loaded as.
        loading: String,
        /// Every difference, key by key.
        differences: Vec<crate::whole::Difference>,
    },
    /// The value cannot be written in the chosen format.
    #[error("{}: {}{problem}", path.display(), KeyPrefix(key.as_deref()))]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The value concerned, if any.
        key: Option<String>,
        /// Why.
        problem: String,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, key: Option<&str>, problem: Corruption) -> Self {
        Error::Corrupt {
            path: path.to_owned(),
            key: key.map(str::to_owned),
            problem: Box::new(problem),
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::Corrupt { path, .. }
            | Error::UnsupportedVersion { path, .. }
            | Error::CudaUnavailable { path, .. }
            | Error::Device { path, .. }
            | Error::Load { path, .. }
            | Error::Value { path, .. }
            | Error::ModelMismatch { path, .. }
            | Error::PyTorch { path, .. }
            | Error::KeyMap { path, .. }
            | Error::Unsupported { path, .. } => path,
        }
    }
}

/// The end of [`Error::CudaUnavailable`]: why, and what to do.
struct CudaAdvice<'a> {
    target: Device,
    reason: &'a str,
    chosen: bool,
}

impl fmt::Display for CudaAdvice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.chosen {
            write!(
                f,
                "as map_location asked, but {} cannot be used: {}",
                self.target, self.reason
            )
        } else {
            write!(
                f,
                "but {} cannot be used: {}; pass map_location, e.g. \
                 LoadOptions::new().map_location(Device::Cpu)",
                self.target, self.reason
            )
        }
    }
}

/// `tensor "key": `, or nothing.
struct KeyPrefix<'k>(Option<&'k str>);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, "\"{key}\": "),
            None => Ok(()),
        }
    }
}

/// What is wrong with a damaged or foreign file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The file is in no format ckpt reads.
    #[error("not a checkpoint (ckpt, PyTorch or safetensors): it starts with {found:02x?}")]
    BadMagic {
        /// The first bytes.
        found: Vec<u8>,
    },
    /// The file ends before what its header describes.
    #[error("truncated or incomplete file: {len} bytes, but {needed} are needed")]
    Truncated {
        /// The file's length.
        len: u64,
        /// The length the file must have at least.
        needed: u64,
    },
    /// The header does not end where the file does.
    #[error("header at {offset}..{end} does not end the file ({len} bytes)")]
    HeaderRange {
        /// The header's offset.
        offset: u64,
        /// The header's end.
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// A checksum does not match the bytes.
    #[error(
        "checksum mismatch: stored {expected:016x}, computed {actual:016x}; the file is damaged"
    )]
    Checksum {
        /// The stored checksum.
        expected: u64,
        /// The checksum of the bytes read.
        actual: u64,
    },
    /// The header is not valid CBOR of the expected shape.
    #[error("invalid header: {0}")]
    Header(String),
    /// A sharded checkpoint's index does not agree with its shards.
    #[error("sharded index: {0}")]
    Index(String),
    /// The header nests deeper than the reader allows.
    #[error("header nests deeper than {0} levels")]
    TooDeep(usize),
    /// A tensor record is inconsistent.
    #[error("{0}")]
    Tensor(#[from] TensorError),
    /// A tensor's bytes lie outside the data section.
    #[error("tensor data at {offset}..+{len} lies outside the data section (64..{end})")]
    OutOfRange {
        /// The data's offset.
        offset: u64,
        /// The data's length.
        len: u64,
        /// The end of the data section.
        end: u64,
    },
    /// A tensor's data is not aligned to 64 bytes.
    #[error("tensor data at offset {offset} is not aligned to 64 bytes")]
    Misaligned {
        /// The data's offset.
        offset: u64,
    },
    /// Two tensors' bytes overlap.
    #[error("tensor data at {offset}..+{len} overlaps the data of \"{other}\"")]
    Overlap {
        /// The data's offset.
        offset: u64,
        /// The data's length.
        len: u64,
        /// The key of the other tensor.
        other: String,
    },
    /// A tensor reference points at no tensor record.
    #[error("reference to tensor record {index}, but the header has {count}")]
    BadReference {
        /// The reference.
        index: u64,
        /// How many records there are.
        count: usize,
    },
    /// A name the reader does not know: a dtype or a device.
    #[error("unknown {what} {name:?}")]
    Unknown {
        /// `"dtype"` or `"device"`.
        what: &'static str,
        /// The name found.
        name: String,
    },
}
