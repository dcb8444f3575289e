//! The CBOR header and the fixed prefix.

use serde::{Deserialize, Serialize};

use super::{MAGIC, MAJOR, MINOR, PREFIX_LEN};

/// Everything but the tensor bytes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    /// Who wrote the file, for diagnostics: `"ckpt 0.1.0"`.
    pub(crate) producer: String,
    /// The saved value, tensors replaced by indices into `tensors`.
    pub(crate) root: Node,
    /// One record per stored tensor; tied tensors share one.
    pub(crate) tensors: Vec<TensorRecord>,
}

/// A node of the value tree.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Map(Vec<(NodeKey, Node)>),
    /// Index into `Header::tensors`.
    Tensor(u64),
    // Since minor version 1: the rest of what a `.pt` file may hold.
    Bytes(Bytes),
    ByteArray(Bytes),
    Complex(f64, f64),
    Set(Vec<Node>),
    Counter(Vec<(NodeKey, Node)>),
    /// A `torch.dtype` by its name in the `torch` module: `"float32"`.
    DType(String),
    // Since minor version 2.
    /// A map that carries the version of each module (a state dict's `_metadata`): its
    /// entries, then each prefix and version.
    VersionedMap(Vec<(NodeKey, Node)>, Vec<(String, Option<i64>)>),
}

/// Bytes as one CBOR byte string, rather than serde's default of an array of numbers (one
/// header item per byte).
#[derive(Debug)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// A map key.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum NodeKey {
    Str(String),
    Int(i64),
}

/// Where one tensor's bytes are and what they hold.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TensorRecord {
    /// safetensors' dtype name: `"F32"`.
    pub(crate) dtype: String,
    pub(crate) shape: Vec<u64>,
    /// The device it was saved from: `"cpu"`, `"cuda:1"`.
    pub(crate) device: String,
    /// Offset of the data from the start of the file, a multiple of 64.
    pub(crate) offset: u64,
    /// Length of the data in bytes: element count × item size.
    pub(crate) len: u64,
    /// xxh3-64 of the data.
    pub(crate) xxh3: u64,
}

/// The fixed prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    pub(crate) major: u16,
    pub(crate) minor: u16,
    pub(crate) flags: u32,
    pub(crate) header_offset: u64,
    pub(crate) header_len: u64,
    pub(crate) header_xxh3: u64,
}

impl Prefix {
    /// The prefix of a file this version writes, its checksum computed over `header`.
    pub(crate) fn current(header_offset: u64, header: &[u8]) -> Self {
        let mut prefix = Prefix {
            major: MAJOR,
            minor: MINOR,
            flags: 0,
            header_offset,
            header_len: header.len() as u64,
            header_xxh3: 0,
        };
        prefix.header_xxh3 = prefix.checksum(header);
        prefix
    }

    pub(crate) fn encode(&self) -> [u8; PREFIX_LEN] {
        let mut out = [0u8; PREFIX_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&self.major.to_le_bytes());
        out[10..12].copy_from_slice(&self.minor.to_le_bytes());
        out[12..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.header_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.header_len.to_le_bytes());
        out[32..40].copy_from_slice(&self.header_xxh3.to_le_bytes());
        out
    }

    /// The checksum stored in the prefix: xxh3-64 over the prefix's own fields (versions,
    /// flags, header offset and length) and the header, so no flipped bit goes unnoticed.
    pub(crate) fn checksum(&self, header: &[u8]) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(&self.encode()[8..32]);
        hasher.update(header);
        hasher.digest()
    }

    /// Reads a prefix whose magic has been checked.
    pub(crate) fn decode(bytes: &[u8; PREFIX_LEN]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        Prefix {
            major: u16_at(8),
            minor: u16_at(10),
            flags: u32_at(12),
            header_offset: u64_at(16),
            header_len: u64_at(24),
            header_xxh3: u64_at(32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_round_trip() {
        let p = Prefix::current(4096, b"header");
        let bytes = p.encode();
        assert_eq!(&bytes[..8], &MAGIC);
        assert_eq!(Prefix::decode(&bytes), p);
        assert_eq!(p.checksum(b"header"), p.header_xxh3);
        assert_ne!(p.checksum(b"headex"), p.header_xxh3);
        assert!(bytes[40..].iter().all(|&b| b == 0));
    }
}
