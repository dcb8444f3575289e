//! [`Error`]: everything that can go wrong reading or writing a checkpoint file.

use std::fmt;
use std::io;

use crate::device::{Device, DeviceError};
use crate::format::pytorch::PtError;
use crate::format::{Corruption, FormatError, FormatErrorKind};
use crate::keymap::KeyMapError;
use crate::loading::{Difference, Lines, LoadError};
use crate::storage::Location;
use crate::value::ValueError;

/// An error of a file operation. Every message starts with the file and, where one is known,
/// names the tensor's key.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::Error;
///
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("damaged.ckpt");
/// std::fs::write(&path, b"\x89CKPT\r\n\x1a but cut off")?;
/// let err = ckpt::load(&path).unwrap_err();
/// assert!(matches!(err, Error::Corrupt { .. }));
/// assert_eq!(err.location().path(), Some(path.as_path()));
/// assert!(err.to_string().contains("truncated or incomplete file"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused a read or write.
    #[error("{location}: {source}")]
    Io {
        /// The file.
        location: Location,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file is damaged or not what it claims to be.
    #[error("{location}: {}{problem}", KeyPrefix(key.as_deref()))]
    Corrupt {
        /// The file.
        location: Location,
        /// The tensor or value concerned, if any.
        key: Option<String>,
        /// What is wrong (boxed: it is large and errors are rare).
        problem: Box<Corruption>,
    },
    /// The file was written by a newer ckpt whose format this version cannot read.
    #[error(
        "{location}: written in {format} format {major}.{minor}, newer than the {supported}.x \
         this version reads; upgrade ckpt"
    )]
    UnsupportedVersion {
        /// The file.
        location: Location,
        /// The format's name.
        format: &'static str,
        /// The file's major version.
        major: u16,
        /// The file's minor version.
        minor: u16,
        /// The major version this build reads.
        supported: u16,
    },
    /// A tensor must go to a CUDA device, and CUDA (or that device) is not available.
    #[error(
        "{location}: tensor \"{key}\" was saved on {saved} and would load onto {target}, {}",
        CudaAdvice { target: *target, reason, chosen: *chosen }
    )]
    CudaUnavailable {
        /// The file.
        location: Location,
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
    #[error("{location}: tensor \"{key}\": {source}")]
    Device {
        /// The file.
        location: Location,
        /// The tensor's key.
        key: String,
        /// What the device said.
        #[source]
        source: DeviceError,
    },
    /// The tensors do not fit the model.
    #[error("{location}: {source}")]
    Load {
        /// The file.
        location: Location,
        /// Every mismatch.
        #[source]
        source: Box<LoadError>,
    },
    /// A value could not be read as the type asked for.
    #[error("{location}: {source}")]
    Value {
        /// The file.
        location: Location,
        /// What serde said.
        #[source]
        source: ValueError,
    },
    /// A PyTorch file could not be read or written: damaged, truncated, or holding something
    /// the restricted unpickler refuses (code, a pickled module).
    #[error("{location}: {source}")]
    PyTorch {
        /// The file.
        location: Location,
        /// What went wrong, with the zip record and key where known.
        #[source]
        source: PtError,
    },
    /// A key map could not be applied: two keys landed on one.
    #[error("{location}: {source}")]
    KeyMap {
        /// The file.
        location: Location,
        /// Which keys collided.
        #[source]
        source: KeyMapError,
    },
    /// A whole model's file does not fit the type it is loaded as.
    #[error(
        "{location}: the file holds a `{saved}` whose layout differs from `{loading}`:{}",
        Lines(differences)
    )]
    ModelMismatch {
        /// The file.
        location: Location,
        /// The type name recorded in the file.
        saved: String,
        /// The type it was loaded as.
        loading: String,
        /// Every difference, key by key.
        differences: Vec<Difference>,
    },
    /// The value cannot be written in the chosen format.
    #[error("{location}: {}{problem}", KeyPrefix(key.as_deref()))]
    Unsupported {
        /// The file.
        location: Location,
        /// The value concerned, if any.
        key: Option<String>,
        /// Why.
        problem: String,
    },
    /// A format outside ckpt failed, for a cause of its own.
    #[error("{location}: {}{source}", KeyPrefix(key.as_deref()))]
    Format {
        /// The file.
        location: Location,
        /// The format's name.
        format: &'static str,
        /// The tensor or value concerned, if any.
        key: Option<String>,
        /// What the format said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn io(location: &Location, source: io::Error) -> Self {
        Error::Io {
            location: location.clone(),
            source,
        }
    }

    pub(crate) fn corrupt(location: &Location, key: Option<&str>, problem: Corruption) -> Self {
        Error::Corrupt {
            location: location.clone(),
            key: key.map(str::to_owned),
            problem: Box::new(problem),
        }
    }

    /// The file (or other location) the error is about.
    pub fn location(&self) -> &Location {
        match self {
            Error::Io { location, .. }
            | Error::Corrupt { location, .. }
            | Error::UnsupportedVersion { location, .. }
            | Error::CudaUnavailable { location, .. }
            | Error::Device { location, .. }
            | Error::Load { location, .. }
            | Error::Value { location, .. }
            | Error::ModelMismatch { location, .. }
            | Error::PyTorch { location, .. }
            | Error::KeyMap { location, .. }
            | Error::Unsupported { location, .. }
            | Error::Format { location, .. } => location,
        }
    }
}

impl From<FormatError> for Error {
    /// The variant of the cause, naming the format's file and key.
    fn from(error: FormatError) -> Self {
        let (location, format, key, kind) = error.into_parts();
        match kind {
            FormatErrorKind::Io(source) => Error::Io { location, source },
            FormatErrorKind::Corrupt(problem) => Error::Corrupt {
                location,
                key,
                problem: Box::new(problem),
            },
            FormatErrorKind::UnsupportedVersion {
                format,
                major,
                minor,
                supported,
            } => Error::UnsupportedVersion {
                location,
                format,
                major,
                minor,
                supported,
            },
            FormatErrorKind::Unsupported(problem) => Error::Unsupported {
                location,
                key,
                problem,
            },
            FormatErrorKind::Device(source) => Error::Device {
                location,
                key: key.unwrap_or_default(),
                source,
            },
            FormatErrorKind::Other(source) => match source.downcast::<PtError>() {
                Ok(source) => Error::PyTorch {
                    location,
                    source: *source,
                },
                Err(source) => Error::Format {
                    location,
                    format,
                    key,
                    source,
                },
            },
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
