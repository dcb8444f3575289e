//! PyTorch Distributed Checkpoint ([`Dcp`]): the directories `torch.distributed.checkpoint`
//! saves, `.metadata` and one `__{rank}_{n}.distcp` data file or more, read into one process
//! and written from one rank or several.
//!
//! A data file is items back to back, each a whole `torch.save` archive: a chunk of a tensor,
//! or a value that is not a tensor. `.metadata` is a pickle of DCP's dataclasses saying which
//! chunks make each tensor and where every item lies. ckpt reads it with an unpickler that
//! knows only those classes and calls nothing, reads each item with its `.pt` reader (CRC-32s
//! checked, which PyTorch does not do), and checks what PyTorch leaves unchecked when loading:
//! that each tensor's chunks tile it exactly, that each item holds the dtype and shape the
//! metadata gives it, and that items neither overlap nor run past their file.
//!
//! ```
//! # use ckpt_core as ckpt;
//! use ckpt::{Tensor, dict};
//!
//! # let dir = tempfile::tempdir()?;
//! let path = dir.path().join("step-100");
//! let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! ckpt::dcp::save(dict! { "model" => dict! { "w" => &w }, "step" => 100 }, &path)?;
//!
//! let checkpoint = ckpt::load(&path)?; // a directory holding .metadata
//! assert_eq!(checkpoint.format().name(), "dcp");
//! assert_eq!(checkpoint["model"]["w"].as_tensor().unwrap(), w.view());
//! assert_eq!(checkpoint["step"].as_i64(), Some(100));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod metadata;
mod plan;
mod read;
#[cfg(test)]
mod tests;
mod unpickle;
mod write;

use std::sync::Arc;

pub use self::error::DcpError;
pub use self::plan::RankPlan;
pub(crate) use self::plan::{dedup, plan};
pub(crate) use self::read::DcpOpened;
pub use self::write::RankWrite;
pub(crate) use self::write::{commit, write_rank};
use super::{Format, FormatError, FormatErrorKind, Opened};
use crate::storage::{self, Location, ObjectStoreOptions, Sink, Source};
use crate::value::Value;

/// PyTorch Distributed Checkpoint: a directory of `.metadata` and `.distcp` data files. A load
/// of a directory, or of its `.metadata`, detects it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dcp;

/// The format's name.
pub(crate) const NAME: &str = "dcp";

/// The name of the file that describes the checkpoint, written last.
pub(crate) const METADATA: &str = ".metadata";

/// Where a pickle of DCP's `Metadata` names its module: within the first 64 bytes for every
/// protocol (after the frame header of protocol 4 and later).
const SIGNATURE: &[u8] = b"torch.distributed.checkpoint.metadata";

impl Format for Dcp {
    fn name(&self) -> &'static str {
        NAME
    }

    /// None: a DCP checkpoint is a directory.
    fn extensions(&self) -> &'static [&'static str] {
        &[]
    }

    /// A pickle whose first global is from `torch.distributed.checkpoint.metadata`.
    fn detect(&self, head: &[u8], _: u64) -> bool {
        head.first() == Some(&super::pytorch::opcode::PROTO)
            && head.windows(SIGNATURE.len()).any(|w| w == SIGNATURE)
    }

    fn checksums(&self) -> Option<&'static str> {
        Some("CRC-32 of every zip record of every item")
    }

    /// Opens `.metadata` and the data files beside it, memory-mapped.
    fn open(&self, source: Arc<dyn Source>) -> Result<Box<dyn Opened>, FormatError> {
        Ok(Box::new(open(
            source,
            true,
            &ObjectStoreOptions::default(),
        )?))
    }

    /// Refused: a DCP checkpoint is a directory, not one file; see
    /// [`dcp::save`](crate::dcp::save).
    fn write(&self, _: &Value<'_>, _: &mut dyn Sink) -> Result<(), FormatError> {
        Err(FormatError::writing(
            NAME,
            FormatErrorKind::Unsupported(
                "a DCP checkpoint is a directory, not one file: write it with \
                 ckpt::dcp::save"
                    .to_owned(),
            ),
        ))
    }
}

/// Opens the DCP checkpoint whose `.metadata` is `source`, its data files as `mmap` and
/// `remote` say.
pub(crate) fn open(
    source: Arc<dyn Source>,
    mmap: bool,
    remote: &ObjectStoreOptions,
) -> Result<DcpOpened, FormatError> {
    read::open(source, &|location| storage::open(location, mmap, remote))
}

/// The `.metadata` of the checkpoint at `location`, if `location` is a directory (a local
/// one, or a URL ending in `/`) that holds one, or names the `.metadata` itself.
pub(crate) fn metadata_of(location: &Location) -> Option<Location> {
    if location.file_name() == Some(METADATA) {
        return Some(location.clone());
    }
    storage::is_directory(location).then(|| location.child(METADATA))
}
