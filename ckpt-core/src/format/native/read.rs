//! Reading: every length, offset and checksum is checked before a byte of tensor data is used.

use std::sync::Arc;

use indexmap::IndexMap;
use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, ParallelIterator};
use xxhash_rust::xxh3::Xxh3;

use super::header::{Header, Node, NodeKey, Prefix, TensorRecord};
use super::{ALIGN, MAGIC, MAJOR, MAX_DEPTH, NAME, PREFIX_LEN, cbor};
use crate::device::Device;
use crate::dtype::{DType, TorchDType};
use crate::format::{Checksum, Corruption, FormatError, FormatErrorKind, TensorData, TensorInfo};
use crate::state::KeyPath;
use crate::storage::{self, Source};
use crate::tensor::{Backing, Tensor, TensorError, check_size};
use crate::value::{Complex64, Key, Map, TensorCow, Value};

/// A file whose structure has been checked, tensor data not yet read.
pub(crate) struct Opened {
    source: Arc<dyn Source>,
    header: Header,
    /// The first key path under which each tensor record appears.
    keys: Vec<String>,
    /// Each record's dtype, shape and device, parsed.
    parsed: Vec<(DType, Vec<usize>, Device)>,
}

/// Checks the prefix, the header and every tensor record of `source`.
pub(crate) fn open(source: Arc<dyn Source>) -> Result<Opened, FormatError> {
    let location = source.location().clone();
    let error = |kind: FormatErrorKind| FormatError::new(&location, NAME, kind);
    let corrupt = |key: Option<&str>, problem: Corruption| {
        let e = error(problem.into());
        match key {
            Some(key) => e.at_key(key),
            None => e,
        }
    };
    let len = source.len();
    let mut prefix = [0u8; PREFIX_LEN];
    let head_len = len.min(PREFIX_LEN as u64) as usize;
    source
        .read_at(0, &mut prefix[..head_len])
        .map_err(|e| error(e.into()))?;
    if head_len < PREFIX_LEN {
        if head_len >= MAGIC.len() && prefix[..MAGIC.len()] != MAGIC {
            return Err(corrupt(None, bad_magic(&prefix[..head_len])));
        }
        return Err(corrupt(
            None,
            Corruption::Truncated {
                len,
                needed: PREFIX_LEN as u64,
                what: "the prefix",
            },
        ));
    }
    if prefix[..MAGIC.len()] != MAGIC {
        return Err(corrupt(None, bad_magic(&prefix)));
    }
    let reserved_zero = prefix[40..].iter().all(|&b| b == 0);
    let prefix = Prefix::decode(&prefix);
    if prefix.major > MAJOR {
        return Err(error(FormatErrorKind::UnsupportedVersion {
            format: NAME,
            major: prefix.major,
            minor: prefix.minor,
            supported: MAJOR,
        }));
    }
    let header_end = prefix
        .header_offset
        .checked_add(prefix.header_len)
        .filter(|_| prefix.header_offset >= PREFIX_LEN as u64);
    let header_bytes = match header_end {
        Some(end) if end > len => {
            return Err(corrupt(
                None,
                Corruption::Truncated {
                    len,
                    needed: end,
                    what: "the header",
                },
            ));
        }
        Some(end) if end == len => {
            storage::read_range(&*source, prefix.header_offset..end).map_err(|e| error(e.into()))?
        }
        _ => {
            return Err(corrupt(
                None,
                Corruption::HeaderRange {
                    offset: prefix.header_offset,
                    end: header_end.unwrap_or(u64::MAX),
                    len,
                },
            ));
        }
    };
    let actual = prefix.checksum(&header_bytes);
    if actual != prefix.header_xxh3 {
        return Err(corrupt(
            Some("<header>"),
            Corruption::Checksum {
                expected: prefix.header_xxh3,
                actual,
            },
        ));
    }
    if prefix.major == 0 || prefix.flags != 0 || !reserved_zero {
        return Err(corrupt(
            None,
            Corruption::Header(format!(
                "format {}.{} with flags {:#x} and reserved bytes {}: not written by ckpt",
                prefix.major,
                prefix.minor,
                prefix.flags,
                if reserved_zero { "zero" } else { "set" }
            )),
        ));
    }
    // What the header may build is bounded before it is built: the tree and its records cost
    // memory in proportion to their items, which may not outgrow the file.
    let items = cbor::count_items(&header_bytes, MAX_DEPTH * 2).map_err(|p| corrupt(None, p))?;
    let budget = super::item_budget(len);
    if items > budget {
        return Err(corrupt(
            None,
            Corruption::Limit {
                what: format!(
                    "the header has {items} items, more than the {budget} a file of {len} bytes \
                     may hold"
                ),
            },
        ));
    }
    let header: Header =
        ciborium::de::from_reader_with_recursion_limit(&header_bytes[..], MAX_DEPTH * 2).map_err(
            |e| match e {
                ciborium::de::Error::RecursionLimitExceeded => {
                    corrupt(None, Corruption::TooDeep(MAX_DEPTH))
                }
                other => corrupt(None, Corruption::Header(other.to_string())),
            },
        )?;

    let mut keys = vec![None; header.tensors.len()];
    name_records(&header.root, &mut KeyPath::new(), &mut keys)
        .map_err(|(key, problem)| corrupt(Some(&key), problem))?;
    let keys: Vec<String> = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| k.unwrap_or_else(|| format!("<unreferenced tensor {i}>")))
        .collect();
    let parsed = header
        .tensors
        .iter()
        .zip(&keys)
        .map(|(record, key)| {
            check_record(record, prefix.header_offset).map_err(|p| corrupt(Some(key), p))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_overlaps(&header.tensors, &keys).map_err(|(key, p)| corrupt(Some(key), p))?;
    Ok(Opened {
        source,
        header,
        keys,
        parsed,
    })
}

fn bad_magic(bytes: &[u8]) -> Corruption {
    Corruption::BadMagic {
        found: bytes.iter().take(MAGIC.len()).copied().collect(),
        formats: NAME.to_owned(),
    }
}

/// Records the first key path of every tensor reference, checking each points at a record.
fn name_records(
    node: &Node,
    path: &mut KeyPath,
    keys: &mut [Option<String>],
) -> Result<(), (String, Corruption)> {
    let mut child = |path: &mut KeyPath, segment: &dyn std::fmt::Display, node: &Node| {
        path.push(segment);
        let result = name_records(node, path, keys);
        path.pop();
        result
    };
    match node {
        Node::Tensor(index) => {
            let count = keys.len();
            let slot = usize::try_from(*index)
                .ok()
                .and_then(|i| keys.get_mut(i))
                .ok_or_else(|| {
                    (
                        path.as_str().to_owned(),
                        Corruption::BadReference {
                            index: *index,
                            count,
                        },
                    )
                })?;
            slot.get_or_insert_with(|| path.as_str().to_owned());
        }
        Node::List(items) | Node::Set(items) => {
            for (i, item) in items.iter().enumerate() {
                child(path, &i, item)?;
            }
        }
        Node::Map(entries) | Node::Counter(entries) | Node::VersionedMap(entries, _) => {
            for (k, v) in entries {
                match k {
                    NodeKey::Str(s) => child(path, s, v)?,
                    NodeKey::Int(i) => child(path, i, v)?,
                }
            }
        }
        Node::DType(name) if TorchDType::from_name(name).is_none() => {
            return Err((
                path.as_str().to_owned(),
                Corruption::Header(format!("unknown torch dtype {name:?}")),
            ));
        }
        Node::None
        | Node::Bool(_)
        | Node::Int(_)
        | Node::Float(_)
        | Node::Str(_)
        | Node::Bytes(_)
        | Node::ByteArray(_)
        | Node::Complex(..)
        | Node::DType(_) => {}
    }
    Ok(())
}

/// Checks one record against itself and the data section `PREFIX_LEN..data_end`.
fn check_record(
    record: &TensorRecord,
    data_end: u64,
) -> Result<(DType, Vec<usize>, Device), Corruption> {
    let dtype: DType = record.dtype.parse().map_err(|_| Corruption::Unknown {
        what: "dtype",
        name: record.dtype.clone(),
    })?;
    let device: Device = record.device.parse().map_err(|_| Corruption::Unknown {
        what: "device",
        name: record.device.clone(),
    })?;
    let shape = record
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| TensorError::SizeOverflow {
            dtype,
            shape: Vec::new(),
        })?;
    let expected = check_size(dtype, &shape)? as u64;
    if record.len != expected {
        return Err(TensorError::ByteLength {
            dtype,
            shape,
            expected: expected as usize,
            actual: usize::try_from(record.len).unwrap_or(usize::MAX),
        }
        .into());
    }
    if !record.offset.is_multiple_of(ALIGN as u64) {
        return Err(Corruption::Misaligned {
            offset: record.offset,
        });
    }
    let in_range = record.offset >= PREFIX_LEN as u64
        && record
            .offset
            .checked_add(record.len)
            .is_some_and(|end| end <= data_end);
    if !in_range {
        return Err(Corruption::OutOfRange {
            offset: record.offset,
            len: record.len,
            end: data_end,
        });
    }
    Ok((dtype, shape, device))
}

fn check_overlaps<'k>(
    records: &[TensorRecord],
    keys: &'k [String],
) -> Result<(), (&'k str, Corruption)> {
    let mut order: Vec<usize> = (0..records.len()).filter(|&i| records[i].len > 0).collect();
    order.sort_by_key(|&i| records[i].offset);
    for pair in order.windows(2) {
        let (a, b) = (&records[pair[0]], &records[pair[1]]);
        // Offsets and lengths were range-checked, so this cannot overflow.
        if b.offset < a.offset + a.len {
            return Err((
                &keys[pair[1]],
                Corruption::Overlap {
                    offset: b.offset,
                    len: b.len,
                    other: keys[pair[0]].clone(),
                },
            ));
        }
    }
    Ok(())
}

impl Opened {
    /// Every record with its first key and parsed fields, in file order of first reference.
    fn records(&self) -> impl Iterator<Item = (&TensorRecord, &(DType, Vec<usize>, Device), &str)> {
        self.header
            .tensors
            .iter()
            .zip(&self.parsed)
            .zip(&self.keys)
            .map(|((record, parsed), key)| (record, parsed, key.as_str()))
    }

    fn error(&self, kind: FormatErrorKind) -> FormatError {
        FormatError::new(self.source.location(), NAME, kind)
    }

    /// The bytes of a record, range-checked in `open`: borrowed from a mapped file, read
    /// otherwise.
    fn data(
        &self,
        record: &TensorRecord,
    ) -> Result<(Arc<dyn Backing>, std::ops::Range<usize>), FormatError> {
        storage::shared(&*self.source, record.offset..record.offset + record.len)
            .map_err(|e| self.error(e.into()))
    }

    /// Checks one tensor's checksum, chunk by chunk; with `release`, lets each chunk's pages go
    /// once hashed.
    fn check(&self, record: &TensorRecord, key: &str, release: bool) -> Result<(), FormatError> {
        let (backing, range) = self.data(record)?;
        let bytes = &backing.bytes()[range];
        let mut hasher = Xxh3::new();
        for chunk in bytes.chunks(CHUNK) {
            backing.prefetch(chunk);
            hasher.update(chunk);
            if release {
                backing.release(chunk);
            }
        }
        let actual = hasher.digest();
        if actual == record.xxh3 {
            return Ok(());
        }
        Err(self
            .error(
                Corruption::Checksum {
                    expected: record.xxh3,
                    actual,
                }
                .into(),
            )
            .at_key(key))
    }
}

impl crate::format::Opened for Opened {
    fn header(&self) -> crate::format::Header {
        let tensors = self
            .records()
            .map(|(record, (dtype, shape, device), key)| {
                // Shapes and lengths were checked against each other in `open`.
                TensorInfo {
                    key: key.to_owned(),
                    dtype: *dtype,
                    shape: shape.clone(),
                    device: *device,
                    nbytes: record.len,
                }
            })
            .collect();
        let mut values = Vec::new();
        plain_values(&self.header.root, &mut KeyPath::new(), &mut values);
        crate::format::Header {
            format: NAME,
            tensors,
            values,
        }
    }

    /// Checks every tensor's checksum on the threads of the current rayon pool, the largest
    /// tensors first so that no thread is left with a large one at the end. A tensor's xxh3 is
    /// one sequential hash, so each tensor is hashed by one thread; of several damaged tensors,
    /// the first in the file is reported, whatever the number of threads.
    fn verify(&self, release: bool) -> Result<(), FormatError> {
        let records: Vec<(&TensorRecord, &str)> = self
            .records()
            .map(|(record, _, key)| (record, key))
            .collect();
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(records[i].0.len));
        let mut results: Vec<(usize, Result<(), FormatError>)> = order
            .into_par_iter()
            .with_max_len(1)
            .map(|i| {
                let (record, key) = records[i];
                (i, self.check(record, key, release))
            })
            .collect();
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().try_for_each(|(_, result)| result)
    }

    /// Every key the tree holds a tensor under, in the tree's order, with its record's range
    /// and xxh3.
    fn tensor_data(&self) -> Option<Vec<TensorData>> {
        let mut data = Vec::with_capacity(self.header.tensors.len());
        tensor_keys(&self.header.root, &mut KeyPath::new(), &mut |key, index| {
            // References were checked in `open`; every one names a record.
            let index = index as usize;
            let (Some(record), Some((dtype, shape, _))) =
                (self.header.tensors.get(index), self.parsed.get(index))
            else {
                return;
            };
            let range = record.offset..record.offset + record.len;
            data.push(
                TensorData::new(key, *dtype, shape.clone(), range)
                    .with_checksum(Checksum::Xxh3(record.xxh3)),
            );
        });
        Some(data)
    }

    /// The saved value, every tensor reading the file in place.
    fn value(&self) -> Result<Value<'static>, FormatError> {
        let tensors = self
            .records()
            .map(|(record, (dtype, shape, _), key)| {
                let (backing, range) = self.data(record)?;
                Tensor::mapped(backing, range, *dtype, shape)
                    .map_err(|e| self.error(Corruption::Tensor(e).into()).at_key(key))
            })
            .collect::<Result<Vec<Tensor>, _>>()?;
        Ok(build(&self.header.root, &tensors))
    }
}

/// Every plain value below `node` with its flattened key, in order.
fn plain_values(node: &Node, path: &mut KeyPath, out: &mut Vec<(String, Value<'static>)>) {
    let mut child = |path: &mut KeyPath, segment: &dyn std::fmt::Display, node: &Node| {
        path.push(segment);
        plain_values(node, path, out);
        path.pop();
    };
    match node {
        Node::List(items) | Node::Set(items) => {
            for (i, item) in items.iter().enumerate() {
                child(path, &i, item);
            }
        }
        Node::Map(entries) | Node::Counter(entries) | Node::VersionedMap(entries, _) => {
            for (k, v) in entries {
                match k {
                    NodeKey::Str(s) => child(path, s, v),
                    NodeKey::Int(i) => child(path, i, v),
                }
            }
        }
        Node::Tensor(_) => {}
        leaf => out.push((path.as_str().to_owned(), build(leaf, &[]))),
    }
}

/// Calls `f` with the key of every tensor reference below `node`, in order, and its record.
fn tensor_keys(node: &Node, path: &mut KeyPath, f: &mut dyn FnMut(&str, u64)) {
    let mut child = |path: &mut KeyPath, segment: &dyn std::fmt::Display, node: &Node| {
        path.push(segment);
        tensor_keys(node, path, f);
        path.pop();
    };
    match node {
        Node::List(items) => {
            for (i, item) in items.iter().enumerate() {
                child(path, &i, item);
            }
        }
        Node::Map(entries) | Node::VersionedMap(entries, _) => {
            for (k, v) in entries {
                match k {
                    NodeKey::Str(s) => child(path, s, v),
                    NodeKey::Int(i) => child(path, i, v),
                }
            }
        }
        Node::Tensor(index) => f(path.as_str(), *index),
        _ => {}
    }
}

/// Chunk size for hashing, small enough to release pages as we go: each thread holds at most
/// one chunk of the file in memory.
const CHUNK: usize = 1 << 20;

fn build(node: &Node, tensors: &[Tensor]) -> Value<'static> {
    match node {
        Node::None => Value::None,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::Int(*i),
        Node::Float(x) => Value::Float(*x),
        Node::Str(s) => Value::String(s.clone()),
        Node::List(items) => Value::List(items.iter().map(|n| build(n, tensors)).collect()),
        Node::Set(items) => Value::Set(items.iter().map(|n| build(n, tensors)).collect()),
        Node::Map(entries) => Value::Map(build_entries(entries, tensors).into()),
        Node::VersionedMap(entries, versions) => {
            let mut map = Map::from(build_entries(entries, tensors));
            map.set_metadata(Some(versions.iter().cloned().collect()));
            Value::Map(map)
        }
        Node::Counter(entries) => Value::Counter(build_entries(entries, tensors)),
        Node::Bytes(b) => Value::Bytes(b.0.clone()),
        Node::ByteArray(b) => Value::ByteArray(b.0.clone()),
        Node::Complex(re, im) => Value::Complex(Complex64::new(*re, *im)),
        // Names were checked in `open`.
        Node::DType(name) => TorchDType::from_name(name).map_or(Value::None, Value::DType),
        // References were checked in `open`; every record has a tensor.
        Node::Tensor(index) => match tensors.get(*index as usize) {
            Some(tensor) => Value::Tensor(TensorCow::Owned(tensor.clone())),
            None => Value::None,
        },
    }
}

fn build_entries(entries: &[(NodeKey, Node)], tensors: &[Tensor]) -> IndexMap<Key, Value<'static>> {
    entries
        .iter()
        .map(|(k, v)| {
            let key = match k {
                NodeKey::Str(s) => Key::Str(s.clone()),
                NodeKey::Int(i) => Key::Int(*i),
            };
            (key, build(v, tensors))
        })
        .collect()
}
