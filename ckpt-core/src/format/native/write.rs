//! Writing: one sequential pass over the tensor data, hashed on the other threads meanwhile.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, SeekFrom};

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use indexmap::IndexMap;
use rayon::iter::{IntoParallelRefIterator, ParallelIterator};

use super::header::{Bytes, Header, Node, NodeKey, Prefix, TensorRecord};
use super::{ALIGN, NAME, PREFIX_LEN};
use crate::device::DeviceError;
use crate::format::{FormatError, FormatErrorKind};
use crate::storage::Sink;
use crate::tensor::{StorageId, TensorView};
use crate::value::{Key, Value};

/// Why a write stopped.
#[derive(Debug)]
enum WriteError {
    Io(io::Error),
    /// A GPU failed while the tensor at `key` was copied from it.
    Device {
        key: String,
        source: DeviceError,
    },
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// Below this many bytes of tensor data, hashing on another thread costs more than it saves.
const PARALLEL_HASH_MIN: usize = 4 << 20;

/// Writes `value` to `out`, which must be empty and positioned at its start.
pub(super) fn write(value: &Value<'_>, out: &mut dyn Sink) -> Result<(), FormatError> {
    write_value(value, out).map_err(|e| match e {
        WriteError::Io(e) => FormatError::writing(NAME, e),
        WriteError::Device { key, source } => {
            FormatError::writing(NAME, FormatErrorKind::Device(source)).at_key(key)
        }
    })
}

fn write_value(value: &Value<'_>, out: &mut dyn Sink) -> Result<(), WriteError> {
    let mut encoder = Encoder::default();
    let root = encoder.node(value);
    // Host data is borrowed where it can be; GPU and candle data (`None`) is streamed while
    // writing, so that only one tensor's bytes are read at a time.
    let bytes: Vec<Option<Cow<'_, [u8]>>> = encoder
        .tensors
        .iter()
        .map(|t| t.lends_bytes().then(|| t.to_le_bytes()).transpose())
        .collect::<Result<_, _>>()
        .map_err(|source| WriteError::Device {
            key: String::new(),
            source,
        })?;
    let mut offsets = Vec::with_capacity(bytes.len());
    let mut end = PREFIX_LEN as u64;
    for t in &encoder.tensors {
        let offset = end.next_multiple_of(ALIGN as u64);
        offsets.push(offset);
        end = offset + t.nbytes() as u64;
    }

    let writer = out;
    writer.write_all(&[0u8; PREFIX_LEN])?;
    // A tensor's xxh3 is one sequential hash: the tensors are hashed side by side on the
    // current rayon pool's threads while this one writes.
    let hash_host = || {
        bytes
            .par_iter()
            .map(|b| b.as_deref().map(xxh3_64))
            .collect::<Vec<_>>()
    };
    let total: usize = bytes.iter().flatten().map(|b| b.len()).sum();
    let (host_hashes, streamed_hashes) = if total < PARALLEL_HASH_MIN {
        let streamed = write_data(writer, value, &encoder.tensors, &bytes, &offsets)?;
        (hash_host(), streamed)
    } else {
        let mut hashes = Vec::new();
        let written = rayon::in_place_scope(|scope| {
            scope.spawn(|_| hashes = hash_host());
            write_data(writer, value, &encoder.tensors, &bytes, &offsets)
        });
        (hashes, written?)
    };
    let hashes: Vec<u64> = host_hashes
        .into_iter()
        .zip(streamed_hashes)
        .map(|(host, streamed)| host.or(streamed).unwrap_or_default())
        .collect();

    let header = Header {
        producer: concat!("ckpt ", env!("CARGO_PKG_VERSION")).to_owned(),
        root,
        tensors: encoder
            .tensors
            .iter()
            .zip(&offsets)
            .zip(&hashes)
            .map(|((t, &offset), &xxh3)| TensorRecord {
                dtype: t.dtype().as_str().to_owned(),
                shape: t.shape().iter().map(|&d| d as u64).collect(),
                device: t.device().to_string(),
                offset,
                len: t.nbytes() as u64,
                xxh3,
            })
            .collect(),
    };
    let mut encoded = Vec::new();
    ciborium::into_writer(&header, &mut encoded).map_err(io::Error::other)?;
    writer.write_all(&encoded)?;
    let prefix = Prefix::current(end, &encoded);
    writer.seek(SeekFrom::Start(0))?;
    writer.write_all(&prefix.encode())?;
    Ok(writer.flush()?)
}

/// Writes every tensor's data at its offset: `bytes` where given, else streamed from the
/// device (the GPU copies the next chunk while this one is written) and hashed on the way,
/// returning those hashes. `value` holds the tensors, to name the one a failing GPU held.
fn write_data(
    writer: &mut dyn Sink,
    value: &Value<'_>,
    tensors: &[TensorView<'_>],
    bytes: &[Option<Cow<'_, [u8]>>],
    offsets: &[u64],
) -> Result<Vec<Option<u64>>, WriteError> {
    const ZEROS: [u8; ALIGN] = [0; ALIGN];
    let mut at = PREFIX_LEN as u64;
    let mut streamed = Vec::with_capacity(tensors.len());
    for ((t, b), &offset) in tensors.iter().zip(bytes).zip(offsets) {
        // `offset - at` < ALIGN by construction of the offsets.
        writer.write_all(&ZEROS[..(offset - at) as usize])?;
        match b {
            Some(b) => {
                writer.write_all(b)?;
                streamed.push(None);
            }
            None => {
                let mut hasher = Xxh3::new();
                let mut written = Ok(());
                t.stream_le_bytes(&mut |chunk| {
                    if written.is_ok() {
                        hasher.update(chunk);
                        written = writer.write_all(chunk);
                    }
                })
                .map_err(|source| WriteError::Device {
                    key: value.key_of(t).unwrap_or_default(),
                    source,
                })?;
                written?;
                streamed.push(Some(hasher.digest()));
            }
        }
        at = offset + t.nbytes() as u64;
    }
    Ok(streamed)
}

/// Turns a value into header nodes, collecting each distinct tensor once.
#[derive(Default)]
struct Encoder<'v> {
    tensors: Vec<TensorView<'v>>,
    seen: HashMap<StorageId, u64>,
}

impl<'v> Encoder<'v> {
    fn node(&mut self, value: &'v Value<'_>) -> Node {
        match value {
            Value::None => Node::None,
            Value::Bool(b) => Node::Bool(*b),
            Value::Int(i) => Node::Int(*i),
            Value::Float(x) => Node::Float(*x),
            Value::String(s) => Node::Str(s.clone()),
            Value::List(items) => Node::List(items.iter().map(|v| self.node(v)).collect()),
            Value::Set(items) => Node::Set(items.iter().map(|v| self.node(v)).collect()),
            Value::Map(map) => match map.metadata() {
                None => Node::Map(self.entries(map)),
                Some(metadata) => Node::VersionedMap(
                    self.entries(map),
                    metadata.iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                ),
            },
            Value::Counter(map) => Node::Counter(self.entries(map)),
            Value::Bytes(b) => Node::Bytes(Bytes(b.clone())),
            Value::ByteArray(b) => Node::ByteArray(Bytes(b.clone())),
            Value::Complex(z) => Node::Complex(z.re, z.im),
            Value::DType(d) => Node::DType(d.name().to_owned()),
            Value::Tensor(t) => Node::Tensor(self.tensor(t.view())),
            // Refused before writing starts; `None` keeps this total.
            Value::Defect(_) => Node::None,
        }
    }

    fn entries(&mut self, map: &'v IndexMap<Key, Value<'_>>) -> Vec<(NodeKey, Node)> {
        map.iter()
            .map(|(k, v)| {
                let key = match k {
                    Key::Str(s) => NodeKey::Str(s.clone()),
                    Key::Int(i) => NodeKey::Int(*i),
                };
                (key, self.node(v))
            })
            .collect()
    }

    fn tensor(&mut self, view: TensorView<'v>) -> u64 {
        let id = view.storage_id();
        if let Some(&index) = id.as_ref().and_then(|id| self.seen.get(id)) {
            return index;
        }
        let index = self.tensors.len() as u64;
        self.tensors.push(view);
        if let Some(id) = id {
            self.seen.insert(id, index);
        }
        index
    }
}
