//! File formats behind one trait: [`Format`] reads a [`Source`] into an [`Opened`] file and
//! writes a [`Value`] into a [`Sink`]. ckpt's own ([`Native`]), safetensors ([`SafeTensors`])
//! and PyTorch's ([`PyTorch`]) each live in a folder of their own, and the [`Registry`] lists
//! them: it detects a file's format from its first bytes on load and picks one by extension on
//! save, and the command-line tool takes its `--format` choices from it.
//!
//! Adding a format is a folder implementing `Format` and a line in [`Registry::builtin`]; a
//! format outside ckpt is a type implementing `Format`, added to a load's registry with
//! [`Registry::with`] or given to a save with
//! [`SaveOptions::format`](crate::SaveOptions::format).
//!
//! ```
//! # use ckpt_core as ckpt;
//! use ckpt::format::{PyTorch, Registry};
//!
//! let registry = Registry::builtin();
//! let names: Vec<&str> = registry.formats().map(|f| f.name()).collect();
//! assert_eq!(names, ["ckpt", "safetensors", "dcp", "pytorch"]);
//! assert_eq!(registry.by_extension("model.pth".as_ref()).map(|f| f.name()), Some("pytorch"));
//! assert_eq!(registry.detect(b"PK\x03\x04....", 8).map(|f| f.name()), Some("pytorch"));
//! # let _ = PyTorch;
//! ```

mod corruption;
mod data;
pub mod dcp;
mod error;
mod header;
pub(crate) mod native;
pub mod pytorch;
mod registry;
pub(crate) mod safetensors;

use std::fmt;
use std::sync::Arc;

pub use self::corruption::Corruption;
pub use self::data::{Checksum, TensorData};
pub use self::dcp::Dcp;
pub use self::error::{FormatError, FormatErrorKind};
pub use self::header::{Header, TensorInfo};
pub use self::native::Native;
pub use self::pytorch::PyTorch;
pub use self::registry::Registry;
pub use self::safetensors::SafeTensors;
use crate::storage::{Sink, Source};
use crate::value::Value;

/// How many bytes of a file [`Format::detect`] is shown, at most.
pub const DETECT_LEN: usize = 64;

/// A file format: how a [`Source`]'s bytes become a checkpoint, and a [`Value`] becomes bytes.
pub trait Format: Send + Sync {
    /// A short lower-case name: `"ckpt"`, `"safetensors"`, `"pytorch"`.
    fn name(&self) -> &'static str;

    /// The file name extensions a save picks this format for, without the dot; the first is
    /// the usual one.
    fn extensions(&self) -> &'static [&'static str];

    /// Whether a file starting with `head` (its first [`DETECT_LEN`] bytes, or all of them if
    /// it is shorter) and `len` bytes long is in this format.
    fn detect(&self, head: &[u8], len: u64) -> bool;

    /// What the format checks the data with, for messages (`"xxh3-64 of every tensor"`), or
    /// `None` if it carries no checksums.
    fn checksums(&self) -> Option<&'static str> {
        None
    }

    /// Checks the structure of `source` and reads what describes its contents, without reading
    /// tensor data.
    fn open(&self, source: Arc<dyn Source>) -> Result<Box<dyn Opened>, FormatError>;

    /// Writes `value` into `sink`, which is empty and positioned at its start.
    fn write(&self, value: &Value<'_>, sink: &mut dyn Sink) -> Result<(), FormatError>;
}

impl fmt::Debug for dyn Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Format({})", self.name())
    }
}

/// A file whose structure a [`Format`] has checked, its tensor data not yet read.
pub trait Opened: Send + Sync {
    /// The tensors (key, dtype, shape, the device saved from) and plain values, from the
    /// structure alone: no tensor data is read or checked.
    fn header(&self) -> Header;

    /// Checks every checksum the format carries against the data; with `release`, lets the
    /// pages of the data go once checked, keeping resident memory small. Formats without
    /// checksums have nothing to check.
    fn verify(&self, release: bool) -> Result<(), FormatError> {
        let _ = release;
        Ok(())
    }

    /// The saved value, its tensors in host memory, reading the source in place where it
    /// allows (a memory-mapped file).
    fn value(&self) -> Result<Value<'static>, FormatError>;

    /// Where each tensor's data lies in the source, for formats that store every tensor whole
    /// (little-endian, C-contiguous, one range each), as ckpt's format and safetensors do; a
    /// `.pt` file's tensors are views into storages, so PyTorch's format has none. One entry
    /// per key that [`value`](Opened::value) holds a tensor under (a tied tensor under each
    /// of its keys), in the value's order, with the checksum the format keeps.
    ///
    /// A load into a model from an object store fetches only the ranges the model needs,
    /// several at once, and checks them; `None` (the default) has it fetch the whole file.
    fn tensor_data(&self) -> Option<Vec<TensorData>> {
        None
    }
}
