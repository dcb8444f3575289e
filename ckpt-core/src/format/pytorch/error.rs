//! [`PtError`]: what went wrong reading or writing a `.pt` file, and where in it.

use std::fmt;

/// Why a `.pt` file could not be read or written, with the entry (a zip record such as
/// `archive/data/3`, or a part of a legacy file) and the key (`optimizer.state.0.exp_avg`)
/// where they are known. The file is named by the [`FormatError`](crate::format::FormatError)
/// that carries it.
#[derive(Debug, thiserror::Error)]
#[error("{}{}", Location { entry: self.0.entry.as_deref(), tensors: &self.0.tensors, key: self.0.key.as_deref() }, self.0.kind)]
pub struct PtError(Box<Inner>);

/// Boxed so that a `Result<_, PtError>` stays small.
#[derive(Debug)]
struct Inner {
    entry: Option<String>,
    /// The keys of the tensors whose storage `entry` is, when it is one.
    tensors: Vec<String>,
    key: Option<String>,
    kind: PtErrorKind,
}

/// What went wrong; [`PtError`] adds where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PtErrorKind {
    /// The data ends before the format says it should.
    #[error("truncated or incomplete file: {what}")]
    Truncated {
        /// What was being read when the data ran out.
        what: String,
    },
    /// Neither a zip archive nor a legacy PyTorch file.
    #[error("not a PyTorch file: {reason}")]
    NotPyTorch {
        /// What was found instead.
        reason: String,
    },
    /// The zip structure is unreadable, which is what a cut-off archive looks like.
    #[error("truncated or incomplete file: the zip archive cannot be read ({message})")]
    Zip {
        /// What the zip reader said.
        message: String,
    },
    /// A required record is absent.
    #[error("missing record {name}")]
    MissingRecord {
        /// The record's full name in the archive.
        name: String,
    },
    /// Two records of the archive have one name, so which one is read would be arbitrary.
    #[error("two records are named {name:?}; an archive torch.save writes names each once")]
    DuplicateRecord {
        /// The name.
        name: String,
    },
    /// A record's CRC-32 does not match its data: the file is damaged.
    #[error(
        "CRC-32 mismatch: the data is damaged (stored {expected:#010x}, computed {actual:#010x})"
    )]
    Crc {
        /// The checksum the archive records.
        expected: u32,
        /// The checksum of the data as found.
        actual: u32,
    },
    /// A record is compressed; PyTorch writes every record stored.
    #[error("compressed with {method}; only stored (uncompressed) records are supported")]
    Compressed {
        /// The compression method.
        method: String,
    },
    /// The `byteorder` record holds neither `little` nor `big`.
    #[error("unknown byte order {found:?}: expected \"little\" or \"big\"")]
    ByteOrder {
        /// What the record holds.
        found: String,
    },
    /// A global that the `weights_only` allow-list refuses; nothing was called.
    #[error(
        "Unsupported global: GLOBAL {name} was not an allowed global by default{}",
        hint_for(name)
    )]
    UnsupportedGlobal {
        /// `module.name` as the pickle spells it.
        name: String,
    },
    /// An opcode this restricted unpickler does not implement.
    #[error("unsupported pickle opcode {opcode:#04x} ({name}) at byte {offset}")]
    UnsupportedOpcode {
        /// The opcode byte.
        opcode: u8,
        /// Its name, if it is a pickle opcode at all.
        name: &'static str,
        /// Where in the pickle.
        offset: usize,
    },
    /// The pickle is malformed.
    #[error("invalid pickle at byte {offset}: {message}")]
    Pickle {
        /// Where in the pickle.
        offset: usize,
        /// What was wrong.
        message: String,
    },
    /// A limit that keeps hostile files from exhausting memory or the stack.
    #[error("limit exceeded: {what}")]
    Limit {
        /// Which limit, and its value.
        what: String,
    },
    /// A storage record's size disagrees with the element count the pickle gives it.
    #[error(
        "storage {key} of {numel} {dtype} elements needs {expected} bytes, the file holds {actual}"
    )]
    StorageLength {
        /// The storage key.
        key: String,
        /// The element type.
        dtype: crate::DType,
        /// Element count from the pickle.
        numel: u64,
        /// `numel` × item size.
        expected: u64,
        /// The bytes present.
        actual: u64,
    },
    /// A tensor's shape, strides and offset do not describe data inside its storage.
    #[error("invalid tensor on storage {key}: {message}")]
    Tensor {
        /// The storage key.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// The value holds something a `.pt` file cannot.
    #[error("{what} is not supported")]
    Unsupported {
        /// What it was.
        what: String,
    },
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A GPU failed while a tensor was copied from it for writing.
    #[error("{0}")]
    Device(#[from] crate::device::DeviceError),
}

fn hint_for(name: &str) -> &'static str {
    if name.starts_with("torch.nn.") || name.starts_with("__main__.") {
        ": the file holds a whole pickled model (torch.save(model)); \
         save model.state_dict() instead and load that"
    } else {
        ""
    }
}

struct Location<'p> {
    entry: Option<&'p str>,
    tensors: &'p [String],
    key: Option<&'p str>,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(entry) = self.entry {
            write!(f, "{entry}")?;
            if let Some((first, rest)) = self.tensors.split_first() {
                write!(f, " (storage of `{first}`")?;
                for key in rest {
                    write!(f, ", `{key}`")?;
                }
                f.write_str(")")?;
            }
            f.write_str(": ")?;
        }
        if let Some(key) = self.key {
            write!(f, "at key {key:?}: ")?;
        }
        Ok(())
    }
}

impl PtError {
    /// What went wrong.
    pub fn kind(&self) -> &PtErrorKind {
        &self.0.kind
    }

    /// The zip record or part of the file where it went wrong, if known.
    pub fn entry(&self) -> Option<&str> {
        self.0.entry.as_deref()
    }

    /// Whether the data ended early: a cut-off download or an interrupted write.
    pub fn is_truncated(&self) -> bool {
        matches!(
            self.0.kind,
            PtErrorKind::Truncated { .. } | PtErrorKind::Zip { .. }
        )
    }

    /// The keys of the tensors that use the storage [`entry`](PtError::entry) is, when it is
    /// one (a damaged `archive/data/9`): what the damage reaches.
    pub fn tensor_keys(&self) -> &[String] {
        &self.0.tensors
    }

    /// The flattened key of the value where it went wrong (`model.fc.weight`), if known.
    pub fn key(&self) -> Option<&str> {
        self.0.key.as_deref()
    }

    /// Prepends a key segment, as the error travels out of nested dicts and lists.
    pub(crate) fn under_key(mut self, segment: &dyn fmt::Display) -> Self {
        self.0.key = Some(match self.0.key.take() {
            Some(inner) => format!("{segment}.{inner}"),
            None => segment.to_string(),
        });
        self
    }

    /// Names the entry, unless a more precise one is already named.
    pub(crate) fn in_entry(mut self, entry: &str) -> Self {
        if self.0.entry.is_none() {
            self.0.entry = Some(entry.to_owned());
        }
        self
    }

    /// Names the tensors whose storage the entry is.
    pub(crate) fn of_tensors(mut self, keys: &[String]) -> Self {
        self.0.tensors = keys.to_vec();
        self
    }
}

impl From<PtErrorKind> for PtError {
    fn from(kind: PtErrorKind) -> Self {
        PtError(Box::new(Inner {
            entry: None,
            tensors: Vec::new(),
            key: None,
            kind,
        }))
    }
}

impl From<std::io::Error> for PtError {
    fn from(e: std::io::Error) -> Self {
        PtErrorKind::Io(e).into()
    }
}

impl PtError {
    /// This error as a [`FormatError`](crate::format::FormatError) about the file at
    /// `location`.
    pub(crate) fn in_file(self, location: &crate::storage::Location) -> crate::format::FormatError {
        crate::format::FormatError::new(location, super::NAME, self)
    }
}

impl From<PtError> for crate::format::FormatErrorKind {
    fn from(e: PtError) -> Self {
        crate::format::FormatErrorKind::Other(Box::new(e))
    }
}

pub(crate) fn truncated(what: impl Into<String>) -> PtError {
    PtErrorKind::Truncated { what: what.into() }.into()
}
