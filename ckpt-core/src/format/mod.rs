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
    /// PyTorch's `torch.save` format, zip or legacy (`.pt`, `.pth`, `.bin`), read through a
    /// restricted unpickler that runs no code.
    PyTorch,
}

impl Format {
    /// The format of a file, from its first bytes.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&native::MAGIC) {
            Some(Format::Ckpt)
        } else if safetensors::sniff(bytes) {
            Some(Format::SafeTensors)
        } else if bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) {
            // A zip archive (torch.save since 1.6) or a pickle (the legacy format).
            Some(Format::PyTorch)
        } else {
            None
        }
    }

    /// The format a file name asks for: `.ckpt`, `.safetensors`, `.pt`/`.pth`/`.bin`; `None` for
    /// others.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "ckpt" => Some(Format::Ckpt),
            "safetensors" => Some(Format::SafeTensors),
            "pt" | "pth" | "bin" => Some(Format::PyTorch),
            _ => None,
        }
    }

    /// A short lower-case name: `"ckpt"`, `"safetensors"`, `"pytorch"`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Ckpt => "ckpt",
            Format::SafeTensors => "safetensors",
            Format::PyTorch => "pytorch",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
