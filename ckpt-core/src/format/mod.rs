//! File formats: ckpt's own, PyTorch's and safetensors; detected from the bytes on load, chosen
//! by extension on save. [`pytorch`] reads and writes `.pt` files directly.

use std::fmt;
use std::path::Path;

pub(crate) mod native;
pub mod pytorch;
pub(crate) mod safetensors;

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// ckpt's own: checksummed, aligned for zero-copy loads, any value tree (`.ckpt`).
    Ckpt,
    /// safetensors: a flat map of tensors and string metadata (`.safetensors`).
    SafeTensors,
}

impl Format {
    /// The format of a file, from its first bytes.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&native::MAGIC) {
            Some(Format::Ckpt)
        } else if safetensors::sniff(bytes) {
            Some(Format::SafeTensors)
        } else {
            None
        }
    }

    /// The format a file name asks for: `.ckpt`, `.safetensors`; `None` for others.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "ckpt" => Some(Format::Ckpt),
            "safetensors" => Some(Format::SafeTensors),
            _ => None,
        }
    }

    /// A short lower-case name: `"ckpt"`, `"safetensors"`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Ckpt => "ckpt",
            Format::SafeTensors => "safetensors",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
