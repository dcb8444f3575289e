//! Helpers shared by the file tests: models, and surgery on saved files.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use ckpt::{StateDict, Tensor};
use ndarray::{Array1, Array2};

/// `nn.Linear`.
#[derive(StateDict, Debug, Clone, PartialEq)]
pub struct Linear {
    pub weight: Array2<f32>,
    pub bias: Array1<f32>,
}

impl Linear {
    pub fn new(out: usize, inp: usize, seed: f32) -> Self {
        Linear {
            weight: Array2::from_shape_fn((out, inp), |(i, j)| {
                ((seed + 1.0) * (i * inp + j + 1) as f32).sin()
            }),
            bias: Array1::from_shape_fn(out, |i| ((seed + 2.0) * (i + 1) as f32).cos()),
        }
    }

    pub fn forward(&self, x: &Array2<f32>) -> Array2<f32> {
        x.dot(&self.weight.t()) + &self.bias
    }
}

/// Linear + batch norm statistics + a mode flag: a small model with buffers.
#[derive(StateDict, Debug, Clone, PartialEq)]
pub struct Net {
    pub fc1: Linear,
    #[state(buffer)]
    pub running_mean: Tensor,
    #[state(buffer)]
    pub num_batches_tracked: Tensor,
    pub fc2: Linear,
    #[state(training)]
    pub training: bool,
}

impl Net {
    pub fn new(seed: f32) -> Self {
        Net {
            fc1: Linear::new(8, 4, seed),
            running_mean: Tensor::from(Array1::from_elem(8, seed)),
            num_batches_tracked: Tensor::scalar(seed as i64),
            fc2: Linear::new(3, 8, seed + 0.5),
            training: true,
        }
    }

    pub fn forward(&self, x: &Array2<f32>) -> Array2<f32> {
        let mean = self.running_mean.to_array::<f32, ndarray::Ix1>().unwrap();
        let h = (self.fc1.forward(x) - &mean).mapv(|v| v.max(0.0));
        self.fc2.forward(&h)
    }
}

/// Every key with its little-endian bytes.
pub fn bytes_of(model: &dyn StateDict) -> Vec<(String, Vec<u8>)> {
    model
        .state_dict()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_le_bytes().into_owned()))
        .collect()
}

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
