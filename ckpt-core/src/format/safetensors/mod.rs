//! safetensors files, and sharded checkpoints (`model.safetensors.index.json` + shards) as
//! Hugging Face writes them. The header is parsed and laid out by the `safetensors` crate, so
//! files are exactly the crate's; the bytes are read and written here, through the storage
//! seam, so that reads are ranged and writes stream.

mod read;
pub(crate) mod sharded;
mod table;
mod write;

use std::sync::Arc;

use safetensors::Dtype;

use super::{Format, FormatError, Opened};
use crate::dtype::DType;
use crate::storage::{Sink, Source};
use crate::value::Value;

/// safetensors (`.safetensors`): a flat map of tensors and string metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct SafeTensors;

/// The format's name.
pub(crate) const NAME: &str = "safetensors";

/// The key under which a file's `__metadata__` strings appear in the loaded value.
pub(crate) const METADATA: &str = "__metadata__";

/// The longest header the `safetensors` crate reads or writes.
const MAX_HEADER: u64 = 100_000_000;

impl Format for SafeTensors {
    fn name(&self) -> &'static str {
        NAME
    }

    fn extensions(&self) -> &'static [&'static str] {
        &["safetensors"]
    }

    /// A little-endian header length within the crate's limit, then a JSON object: whether or
    /// not the file is long enough, so that a truncated file is reported as such.
    fn detect(&self, head: &[u8], file_len: u64) -> bool {
        let Some(len) = head.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)) else {
            return false;
        };
        let opens = match head.get(8) {
            Some(&byte) => byte == b'{',
            // Cut right after the length: nothing says it is not safetensors.
            None => file_len == 8,
        };
        opens && (2..=MAX_HEADER).contains(&len)
    }

    fn open(&self, source: Arc<dyn Source>) -> Result<Box<dyn Opened>, FormatError> {
        Ok(Box::new(read::open(source)?))
    }

    fn write(&self, value: &Value<'_>, sink: &mut dyn Sink) -> Result<(), FormatError> {
        write::write(value, sink)
    }
}

fn dtype_from(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::F64 => DType::F64,
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        Dtype::U16 => DType::U16,
        Dtype::U32 => DType::U32,
        Dtype::U64 => DType::U64,
        Dtype::C64 => DType::C64,
        Dtype::F8_E4M3 => DType::F8E4M3,
        Dtype::F8_E5M2 => DType::F8E5M2,
        Dtype::F8_E4M3FNUZ => DType::F8E4M3Fnuz,
        Dtype::F8_E5M2FNUZ => DType::F8E5M2Fnuz,
        Dtype::F8_E8M0 => DType::F8E8M0,
        _ => return None,
    })
}

/// safetensors' name for `dtype`, if it has one: not for `C32` and `C128`.
fn dtype_to(dtype: DType) -> Option<Dtype> {
    Some(match dtype {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
        DType::U16 => Dtype::U16,
        DType::U32 => Dtype::U32,
        DType::U64 => Dtype::U64,
        DType::C64 => Dtype::C64,
        DType::F8E4M3 => Dtype::F8_E4M3,
        DType::F8E5M2 => Dtype::F8_E5M2,
        DType::F8E4M3Fnuz => Dtype::F8_E4M3FNUZ,
        DType::F8E5M2Fnuz => Dtype::F8_E5M2FNUZ,
        DType::F8E8M0 => Dtype::F8_E8M0,
        DType::C32 | DType::C128 => return None,
    })
}
