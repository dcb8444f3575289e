//! PyTorch `.pt` files: [`read`] what `torch.save` writes (the zip format of PyTorch 1.6 and
//! later, and the legacy format before it) and [`write()`] files that
//! `torch.load(path, weights_only=True)` reads.
//!
//! Reading is safe on untrusted files: the unpickler implements PyTorch's `weights_only=True`
//! allow-list and executes nothing, every length and tensor view is checked against the data
//! present, and zip records' CRC-32 checksums are verified (PyTorch does not), so a damaged file
//! is an error naming the damaged record rather than silently wrong weights.
//!
//! ```
//! use ckpt_core::format::pytorch;
//! use ckpt_core::{Tensor, dict};
//!
//! let weight = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
//! let checkpoint = dict! { "epoch" => 3, "model" => dict! { "fc.weight" => &weight } };
//!
//! let mut file = std::io::Cursor::new(Vec::new());
//! pytorch::write(&checkpoint, &mut file).unwrap();
//! let loaded = pytorch::read(file.get_ref()).unwrap();
//! assert_eq!(loaded, checkpoint);
//!
//! // A pickle that would run a shell command is refused, by name.
//! let hostile = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
//! let err = pytorch::read(hostile).unwrap_err();
//! assert!(err.to_string().contains("GLOBAL os.system was not an allowed global"));
//! ```

mod archive;
mod error;
mod legacy;
mod opcode;
mod pickle;
mod rebuild;
mod unpickle;
mod write;

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use self::error::truncated;
pub use self::error::{PtError, PtErrorKind};
use self::unpickle::StorageRef;
use crate::Value;
use crate::tensor::Backing;

/// How to read a `.pt` file.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReadOptions {
    verify_crc: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { verify_crc: true }
    }
}

impl ReadOptions {
    /// The defaults: CRC-32 checks on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to check each zip record's CRC-32 (default `true`). Turning it off saves one pass
    /// over the data for files you trust; damage then goes unnoticed, as in PyTorch.
    pub fn verify_crc(mut self, verify: bool) -> Self {
        self.verify_crc = verify;
        self
    }
}

/// Reads a checkpoint from the bytes of a `.pt` file, with CRC-32 checks.
///
/// Dicts become [`Value::Map`]s in their order, with string or integer keys; tuples and lists
/// become [`Value::List`]s; tensors are owned, C-contiguous and on the CPU, and tensors that
/// shared one storage view in PyTorch share their data. Whole pickled models, and any other
/// object outside PyTorch's `weights_only` allow-list, are refused.
pub fn read(bytes: &[u8]) -> Result<Value<'static>, PtError> {
    read_with(bytes, &ReadOptions::default())
}

/// [`read`] with options.
pub fn read_with(bytes: &[u8], options: &ReadOptions) -> Result<Value<'static>, PtError> {
    read_any(bytes, options, None)
}

/// [`read_with`] over bytes that tensors may share: contiguous views of the zip format's
/// storages (stored, aligned records, as PyTorch writes them) then read `backing` in place,
/// copy on write, instead of being copied out.
pub(crate) fn read_backing(
    backing: &Arc<dyn Backing>,
    options: &ReadOptions,
) -> Result<Value<'static>, PtError> {
    read_any(backing.bytes(), options, Some(backing))
}

fn read_any(
    bytes: &[u8],
    options: &ReadOptions,
    backing: Option<&Arc<dyn Backing>>,
) -> Result<Value<'static>, PtError> {
    const ZIP: &[u8] = b"PK\x03\x04";
    if bytes.starts_with(ZIP) {
        archive::read(bytes, options, backing)
    } else if bytes.first() == Some(&opcode::PROTO) {
        legacy::read(bytes)
    } else if bytes.is_empty() || ZIP.starts_with(bytes) {
        Err(truncated(format!(
            "the file has only {} bytes",
            bytes.len()
        )))
    } else if bytes.get(257..262) == Some(b"ustar") {
        Err(PtErrorKind::NotPyTorch {
            reason: "a tar archive (the format of PyTorch before 0.4), which ckpt does not read"
                .to_owned(),
        }
        .into())
    } else {
        Err(PtErrorKind::NotPyTorch {
            reason: format!(
                "starts with {:02x?}, neither a zip archive nor a pickle",
                bytes.get(..bytes.len().min(4)).unwrap_or_default()
            ),
        }
        .into())
    }
}

/// Reads a `.pt` file; errors name the file.
pub fn read_file(path: impl AsRef<Path>) -> Result<Value<'static>, PtError> {
    read_file_with(path, &ReadOptions::default())
}

/// [`read_file`] with options.
pub fn read_file_with(
    path: impl AsRef<Path>,
    options: &ReadOptions,
) -> Result<Value<'static>, PtError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| PtError::from(e).in_file(path))?;
    read_with(&bytes, options).map_err(|e| e.in_file(path))
}

/// Writes `value` as a `.pt` file in PyTorch's zip format, which `torch.load` reads with
/// `weights_only=True`.
///
/// Maps whose keys are all strings become `collections.OrderedDict`s (as a `state_dict()` is),
/// others plain dicts; lists become lists. Each storage is stored uncompressed and aligned to 64
/// bytes, and tensors that share their data (same memory, shape and strides) are written once
/// and load as one tensor. The output is deterministic: the same value gives the same bytes.
pub fn write<W: Write + Seek>(value: &Value<'_>, out: W) -> Result<(), PtError> {
    write::write(value, out)
}

/// [`write()`] to a new file at `path` (replacing any file there); errors name the file.
pub fn write_file(value: &Value<'_>, path: impl AsRef<Path>) -> Result<(), PtError> {
    let path = path.as_ref();
    let run = || -> Result<(), PtError> {
        let mut out = BufWriter::new(File::create(path)?);
        write::write(value, &mut out)?;
        out.flush()?;
        Ok(())
    };
    run().map_err(|e| e.in_file(path))
}

/// Checks a storage's bytes against the element count the pickle gives it.
fn check_storage_len(storage: &StorageRef, actual: usize) -> Result<(), PtError> {
    let item = storage.dtype.size_in_bytes() as u64;
    let expected = storage.numel.checked_mul(item);
    if expected == Some(actual as u64) {
        return Ok(());
    }
    Err(PtErrorKind::StorageLength {
        key: storage.key.clone(),
        dtype: storage.dtype,
        numel: storage.numel,
        expected: expected.unwrap_or(u64::MAX),
        actual: actual as u64,
    }
    .into())
}
