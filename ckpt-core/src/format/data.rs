//! [`TensorData`]: where a tensor's bytes lie in a file, for loads that fetch only some.

use std::ops::Range;

use xxhash_rust::xxh3::xxh3_64;

use super::Corruption;
use crate::dtype::DType;

/// Where one tensor's data lies in a file stored whole (little-endian, C-contiguous), and the
/// checksum that guards it: what [`Opened::tensor_data`](super::Opened::tensor_data) lists,
/// so that a load into a model from an object store fetches the ranges it needs, several at
/// once, and checks each.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TensorData {
    /// The flattened key the value holds the tensor under.
    pub key: String,
    /// The element type.
    pub dtype: DType,
    /// The shape.
    pub shape: Vec<usize>,
    /// The bytes of the source holding the data.
    pub range: Range<u64>,
    /// The checksum of those bytes, if the format keeps one.
    pub checksum: Option<Checksum>,
}

impl TensorData {
    /// A tensor under `key` whose data is `range`, without a checksum.
    pub fn new(key: impl Into<String>, dtype: DType, shape: Vec<usize>, range: Range<u64>) -> Self {
        TensorData {
            key: key.into(),
            dtype,
            shape,
            range,
            checksum: None,
        }
    }

    /// The same, its bytes guarded by `checksum`.
    #[must_use]
    pub fn with_checksum(mut self, checksum: Checksum) -> Self {
        self.checksum = Some(checksum);
        self
    }
}

/// A checksum of a tensor's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checksum {
    /// xxh3-64, as ckpt's format keeps.
    Xxh3(u64),
}

impl Checksum {
    /// Checks `bytes` against the checksum.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::format::{Checksum, Corruption};
    ///
    /// let sum = Checksum::Xxh3(xxhash_rust::xxh3::xxh3_64(b"data"));
    /// assert!(sum.check(b"data").is_ok());
    /// assert!(matches!(sum.check(b"date"), Err(Corruption::Checksum { .. })));
    /// ```
    pub fn check(&self, bytes: &[u8]) -> Result<(), Corruption> {
        match *self {
            Checksum::Xxh3(expected) => {
                let actual = xxh3_64(bytes);
                if actual == expected {
                    Ok(())
                } else {
                    Err(Corruption::Checksum { expected, actual })
                }
            }
        }
    }
}
