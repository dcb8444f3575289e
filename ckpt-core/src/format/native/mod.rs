//! ckpt's own format: a fixed prefix, 64-byte-aligned tensor data, then a CBOR header.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  89 'C' 'K' 'P' 'T' 0d 0a 1a
//! 8       2     major version, u16 little-endian (a reader refuses a newer major)
//! 10      2     minor version, u16 (additions a reader of the same major may ignore)
//! 12      4     flags, u32, zero
//! 16      8     header offset, u64
//! 24      8     header length, u64: the header ends the file
//! 32      8     checksum: xxh3-64 of bytes 8..32 then the header
//! 40      24    zero
//! 64      ...   tensor data: C-contiguous little-endian, each at a multiple of 64
//! ...     ...   header: CBOR of `Header`: the value tree, with each tensor a reference to a
//!               record {dtype, shape, device, offset, length, xxh3-64 checksum}
//! ```
//!
//! Data comes before the header so that saving is one sequential pass, hashing on a second
//! thread while the first writes; the prefix is written last. A memory map of the file gives
//! aligned, zero-copy views of every tensor.

mod cbor;
mod header;
mod read;
mod write;

use std::sync::Arc;

use super::{Format, FormatError, Opened};
use crate::storage::{Sink, Source};
use crate::value::Value;

/// ckpt's own format (`.ckpt`): checksummed, aligned for zero-copy loads, any value tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Native;

/// The format's name.
pub(crate) const NAME: &str = "ckpt";

impl Format for Native {
    fn name(&self) -> &'static str {
        NAME
    }

    fn extensions(&self) -> &'static [&'static str] {
        &["ckpt"]
    }

    fn detect(&self, head: &[u8], _: u64) -> bool {
        head.starts_with(&MAGIC)
    }

    fn checksums(&self) -> Option<&'static str> {
        Some("xxh3-64 of the header and of every tensor")
    }

    fn open(&self, source: Arc<dyn Source>) -> Result<Box<dyn Opened>, FormatError> {
        Ok(Box::new(read::open(source)?))
    }

    fn write(&self, value: &Value<'_>, sink: &mut dyn Sink) -> Result<(), FormatError> {
        write::write(value, sink)
    }
}

/// The first bytes of every ckpt file: not ASCII, then CR LF and ^Z, which text-mode transfers
/// mangle, as in PNG.
pub(crate) const MAGIC: [u8; 8] = *b"\x89CKPT\r\n\x1a";
/// The format's major version: readers refuse a newer one.
pub(crate) const MAJOR: u16 = 1;
/// The format's minor version. 1 added the value kinds of `.pt` files beyond JSON's (bytes,
/// bytearrays, complex numbers, sets, counters, dtypes), which a reader of 1.0 refuses by name;
/// 2 the module versions of a state dict (PyTorch's `_metadata`).
pub(crate) const MINOR: u16 = 2;
/// Length of the fixed prefix; tensor data starts here.
pub(crate) const PREFIX_LEN: usize = 64;
/// Alignment of each tensor's data.
pub(crate) const ALIGN: usize = 64;
/// How deep the header's value tree may nest.
pub(crate) const MAX_DEPTH: usize = 128;

/// How many items (values, keys, records' fields) a header may have in a file of `len` bytes:
/// decoding costs at most about 200 bytes of memory per item (its node, the value built from
/// it, a map entry), and a file may make ckpt spend at most 6 × its size plus 32 MiB on them.
pub(crate) fn item_budget(len: u64) -> u64 {
    const BYTES_PER_ITEM: u64 = 200;
    len.saturating_mul(6).saturating_add(32 << 20) / BYTES_PER_ITEM
}
