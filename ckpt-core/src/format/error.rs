//! [`FormatError`]: the one error convention of every format: where (the file, the key where
//! known), which format, and why.

use std::fmt;
use std::io;

use super::Corruption;
use crate::device::DeviceError;
use crate::storage::Location;

/// Why a format could not read or write a file: the file, the format, the key of the tensor or
/// value concerned where known, and the cause. Converts into [`ckpt::Error`](crate::Error),
/// which every entry point returns.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{}", self.0.location, KeyPrefix(self.0.key.as_deref()), self.0.kind)]
pub struct FormatError(Box<Inner>);

/// Boxed so that a `Result<_, FormatError>` stays small.
#[derive(Debug)]
struct Inner {
    location: Location,
    format: &'static str,
    key: Option<String>,
    kind: FormatErrorKind,
}

/// What went wrong; [`FormatError`] adds where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatErrorKind {
    /// Reading or writing the bytes failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file is damaged, truncated, or not what it claims to be.
    #[error("{0}")]
    Corrupt(#[from] Corruption),
    /// The file was written by a newer version of the format than this one reads.
    #[error(
        "written in {format} format {major}.{minor}, newer than the {supported}.x this version \
         reads; upgrade ckpt"
    )]
    UnsupportedVersion {
        /// The format's name.
        format: &'static str,
        /// The file's major version.
        major: u16,
        /// The file's minor version.
        minor: u16,
        /// The major version this build reads.
        supported: u16,
    },
    /// The value cannot be written in this format.
    #[error("{0}")]
    Unsupported(String),
    /// A GPU failed while a tensor was copied from it for writing.
    #[error("{0}")]
    Device(#[from] DeviceError),
    /// A cause of the format's own, such as a `.pt` file's
    /// [`PtError`](super::pytorch::PtError).
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl FormatError {
    /// An error of `format` about the file at `location`.
    pub fn new(
        location: &Location,
        format: &'static str,
        kind: impl Into<FormatErrorKind>,
    ) -> Self {
        FormatError(Box::new(Inner {
            location: location.clone(),
            format,
            key: None,
            kind: kind.into(),
        }))
    }

    /// An error of a writer, which writes to a sink it knows no name of: the caller names the
    /// file with [`in_file`](FormatError::in_file).
    pub fn writing(format: &'static str, kind: impl Into<FormatErrorKind>) -> Self {
        FormatError::new(&Location::Memory("<output>".to_owned()), format, kind)
    }

    /// The same error, about the file at `location`.
    #[must_use]
    pub fn in_file(mut self, location: &Location) -> Self {
        self.0.location = location.clone();
        self
    }

    /// Names the tensor or value concerned.
    #[must_use]
    pub fn at_key(mut self, key: impl Into<String>) -> Self {
        self.0.key = Some(key.into());
        self
    }

    /// The file.
    pub fn location(&self) -> &Location {
        &self.0.location
    }

    /// The format's name.
    pub fn format(&self) -> &'static str {
        self.0.format
    }

    /// The key of the tensor or value concerned, if known.
    pub fn key(&self) -> Option<&str> {
        self.0.key.as_deref()
    }

    /// What went wrong.
    pub fn kind(&self) -> &FormatErrorKind {
        &self.0.kind
    }

    /// The parts: the file, the format, the key and the cause.
    pub fn into_parts(self) -> (Location, &'static str, Option<String>, FormatErrorKind) {
        let inner = *self.0;
        (inner.location, inner.format, inner.key, inner.kind)
    }
}

/// `"key": `, or nothing.
pub(crate) struct KeyPrefix<'k>(pub(crate) Option<&'k str>);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, "\"{key}\": "),
            None => Ok(()),
        }
    }
}
