//! Surgery on saved `.ckpt` files: rewriting their CBOR header, checksums fixed up.

use std::path::Path;

/// A saved file taken apart: the prefix fields, the header as generic CBOR, the data.
pub struct Surgery {
    pub bytes: Vec<u8>,
    pub header: ciborium::Value,
    pub header_offset: usize,
}

impl Surgery {
    pub fn open(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let header_offset = u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize;
        let header = ciborium::from_reader(&bytes[header_offset..]).unwrap();
        Surgery {
            bytes,
            header,
            header_offset,
        }
    }

    /// The header's map entry `name`.
    pub fn field(&mut self, name: &str) -> &mut ciborium::Value {
        let ciborium::Value::Map(entries) = &mut self.header else {
            panic!("header is not a map")
        };
        &mut entries
            .iter_mut()
            .find(|(k, _)| k.as_text() == Some(name))
            .unwrap()
            .1
    }

    /// Tensor record `index`'s field `name`.
    pub fn record(&mut self, index: usize, name: &str) -> &mut ciborium::Value {
        let ciborium::Value::Array(records) = self.field("tensors") else {
            panic!("tensors is not an array")
        };
        let ciborium::Value::Map(fields) = &mut records[index] else {
            panic!("record is not a map")
        };
        &mut fields
            .iter_mut()
            .find(|(k, _)| k.as_text() == Some(name))
            .unwrap()
            .1
    }

    /// Writes the file back with a re-encoded header and consistent prefix checksums.
    pub fn write(&self, path: &Path) {
        let mut header = Vec::new();
        ciborium::into_writer(&self.header, &mut header).unwrap();
        let mut out = self.bytes[..self.header_offset].to_vec();
        out[24..32].copy_from_slice(&(header.len() as u64).to_le_bytes());
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(&out[8..32]);
        hasher.update(&header);
        out[32..40].copy_from_slice(&hasher.digest().to_le_bytes());
        out.extend_from_slice(&header);
        std::fs::write(path, out).unwrap();
    }
}
