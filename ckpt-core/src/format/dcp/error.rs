//! [`DcpError`]: what is wrong with a PyTorch Distributed Checkpoint. The file (`.metadata`, a
//! `.distcp`) and the key are named by the [`FormatError`](crate::format::FormatError) that
//! carries it.

use crate::format::pytorch::PtError;

/// Why a DCP checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DcpError {
    /// The `.metadata` pickle ends early.
    #[error("truncated or incomplete file: {0}")]
    Truncated(String),
    /// The `.metadata` pickle is malformed.
    #[error("invalid .metadata pickle at byte {offset}: {message}")]
    Pickle {
        /// Where in the pickle.
        offset: usize,
        /// What was wrong.
        message: String,
    },
    /// An opcode that Python's pickler never writes for DCP metadata.
    #[error("unsupported pickle opcode {opcode:#04x} ({name}) at byte {offset} of .metadata")]
    Opcode {
        /// The opcode byte.
        opcode: u8,
        /// Its name, if it is a pickle opcode at all.
        name: &'static str,
        /// Where in the pickle.
        offset: usize,
    },
    /// A global that DCP metadata never names; nothing was called.
    #[error(
        "the .metadata pickle names the global {name}, which is not one of DCP's metadata \
         classes; nothing was called"
    )]
    Global {
        /// `module.name`.
        name: String,
    },
    /// A limit that keeps a hostile checkpoint from exhausting memory.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The metadata is well-formed pickle but not what DCP writes, or contradicts itself.
    #[error("invalid DCP metadata: {0}")]
    Invalid(String),
    /// An item's bytes disagree with what the metadata says of them.
    #[error("{0}")]
    Item(String),
    /// An item could not be read as the `torch.save` archive it must be.
    #[error("item at bytes {start}..{end}: {source}")]
    Archive {
        /// Where the item starts in its file.
        start: u64,
        /// Where it ends.
        end: u64,
        /// What the `.pt` reader said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The checkpoint uses a DCP feature ckpt does not read or write.
    #[error("{0} is not supported")]
    Unsupported(String),
}

impl DcpError {
    /// The `.pt` reader's limit error, as this module's.
    pub(crate) fn limit(e: PtError) -> Self {
        match e.kind() {
            crate::format::pytorch::PtErrorKind::Limit { what } => DcpError::Limit(what.clone()),
            _ => DcpError::Limit(e.to_string()),
        }
    }
}

impl From<DcpError> for crate::format::FormatErrorKind {
    fn from(e: DcpError) -> Self {
        crate::format::FormatErrorKind::Other(Box::new(e))
    }
}
