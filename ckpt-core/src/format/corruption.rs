//! [`Corruption`]: what is wrong with a damaged or foreign file, in any format.

use crate::tensor::TensorError;

/// What is wrong with a damaged or foreign file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The file is in no format ckpt reads.
    #[error("not a checkpoint in any format ckpt reads ({formats}): it starts with {found:02x?}")]
    BadMagic {
        /// The first bytes.
        found: Vec<u8>,
        /// The formats tried, as `"ckpt, safetensors, pytorch"`.
        formats: String,
    },
    /// The file ends before what its header describes.
    #[error("truncated or incomplete file: {len} bytes, but {what} needs {needed}")]
    Truncated {
        /// The file's length.
        len: u64,
        /// The length the file must have at least.
        needed: u64,
        /// What needs them: `"the header"`, `"the prefix"`, `"tensor data"`.
        what: &'static str,
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
    /// The file describes more than a file of its size can hold: a limit that keeps hostile
    /// files from exhausting memory.
    #[error("limit exceeded: {what}")]
    Limit {
        /// Which limit, and its value.
        what: String,
    },
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
