//! Reading: every length, offset and checksum is checked before a byte of tensor data is used.

use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;
use xxhash_rust::xxh3::Xxh3;

use super::header::{Header, Node, NodeKey, Prefix, TensorRecord};
use super::{ALIGN, MAGIC, MAJOR, MAX_DEPTH, PREFIX_LEN};
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Corruption, Error};
use crate::file::Placement;
use crate::location::MapLocation;
use crate::module::KeyPath;
use crate::tensor::{Backing, Tensor, TensorError, check_size};
use crate::value::{Key, TensorCow, Value};

/// A file whose structure has been checked, tensor data not yet read.
pub(crate) struct Opened {
    backing: Arc<dyn Backing>,
    header: Header,
    /// The first key path under which each tensor record appears.
    keys: Vec<String>,
    /// Each record's dtype, shape and device, parsed.
    parsed: Vec<(DType, Vec<usize>, Device)>,
}

/// One tensor of an opened file.
pub(crate) struct Entry<'o> {
    pub(crate) key: &'o str,
    pub(crate) dtype: DType,
    pub(crate) shape: &'o [usize],
    pub(crate) device: Device,
    pub(crate) bytes: &'o [u8],
}

/// Checks the prefix, the header and every tensor record of `backing`'s bytes.
pub(crate) fn open(path: &Path, backing: Arc<dyn Backing>) -> Result<Opened, Error> {
    let corrupt = |key: Option<&str>, problem| Error::corrupt(path, key, problem);
    let bytes = backing.bytes();
    let len = bytes.len() as u64;
    let Some(prefix) = bytes.first_chunk::<PREFIX_LEN>() else {
        if bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt(None, bad_magic(bytes)));
        }
        return Err(corrupt(
            None,
            Corruption::Truncated {
                len,
                needed: PREFIX_LEN as u64,
            },
        ));
    };
    if prefix[..MAGIC.len()] != MAGIC {
        return Err(corrupt(None, bad_magic(bytes)));
    }
    let reserved_zero = prefix[40..].iter().all(|&b| b == 0);
    let prefix = Prefix::decode(prefix);
    if prefix.major > MAJOR {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            major: prefix.major,
            minor: prefix.minor,
            supported: MAJOR,
        });
    }
    let header_end = prefix
        .header_offset
        .checked_add(prefix.header_len)
        .filter(|_| prefix.header_offset >= PREFIX_LEN as u64);
    let header_bytes = match header_end {
        Some(end) if end > len => {
            return Err(corrupt(None, Corruption::Truncated { len, needed: end }));
        }
        Some(end) if end == len => &bytes[prefix.header_offset as usize..],
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
    let actual = prefix.checksum(header_bytes);
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
    let header: Header =
        ciborium::de::from_reader_with_recursion_limit(header_bytes, MAX_DEPTH * 2).map_err(
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
        backing,
        header,
        keys,
        parsed,
    })
}

fn bad_magic(bytes: &[u8]) -> Corruption {
    Corruption::BadMagic {
        found: bytes.iter().take(MAGIC.len()).copied().collect(),
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
        Node::List(items) => {
            for (i, item) in items.iter().enumerate() {
                child(path, &i, item)?;
            }
        }
        Node::Map(entries) => {
            for (k, v) in entries {
                match k {
                    NodeKey::Str(s) => child(path, s, v)?,
                    NodeKey::Int(i) => child(path, i, v)?,
                }
            }
        }
        Node::None | Node::Bool(_) | Node::Int(_) | Node::Float(_) | Node::Str(_) => {}
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
    if record.offset % ALIGN as u64 != 0 {
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
    /// Every tensor record, in file order of first reference.
    pub(crate) fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        let bytes = self.backing.bytes();
        self.header
            .tensors
            .iter()
            .zip(&self.parsed)
            .zip(&self.keys)
            .map(move |((record, (dtype, shape, device)), key)| Entry {
                key,
                dtype: *dtype,
                shape,
                device: *device,
                // Range-checked in `open`.
                bytes: &bytes[record.offset as usize..(record.offset + record.len) as usize],
            })
    }

    /// The size of the tensor data.
    pub(crate) fn data_len(&self) -> u64 {
        self.header.tensors.iter().map(|r| r.len).sum()
    }

    /// Checks every tensor's checksum, on up to four threads; with `release`, lets each chunk's
    /// pages go once hashed, keeping resident memory small.
    pub(crate) fn verify(&self, path: &Path, release: bool) -> Result<(), Error> {
        let backing = &*self.backing;
        let entries: Vec<(Entry<'_>, u64)> = self
            .entries()
            .zip(self.header.tensors.iter().map(|r| r.xxh3))
            .collect();
        let total: usize = entries.iter().map(|(e, _)| e.bytes.len()).sum();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(1 + total / (8 << 20));
        let check = |(entry, expected): &(Entry<'_>, u64)| {
            let mut hasher = Xxh3::new();
            for chunk in entry.bytes.chunks(CHUNK) {
                backing.prefetch(chunk);
                hasher.update(chunk);
                if release {
                    backing.release(chunk);
                }
            }
            let actual = hasher.digest();
            if actual == *expected {
                Ok(())
            } else {
                Err(Error::corrupt(
                    path,
                    Some(entry.key),
                    Corruption::Checksum {
                        expected: *expected,
                        actual,
                    },
                ))
            }
        };
        if threads <= 1 {
            return entries.iter().try_for_each(check);
        }
        // Deal tensors round-robin by size so the threads get similar shares.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(entries[i].0.bytes.len()));
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let mine: Vec<usize> = order.iter().copied().skip(t).step_by(threads).collect();
                    let (entries, check) = (&entries, &check);
                    scope.spawn(move || mine.iter().try_for_each(|&i| check(&entries[i])))
                })
                .collect();
            let mut first = Ok(());
            for worker in workers {
                let result = worker.join().unwrap_or_else(|_| {
                    Err(Error::io(
                        path,
                        std::io::Error::other("a checksum thread panicked"),
                    ))
                });
                if first.is_ok() {
                    first = result;
                }
            }
            first
        })
    }

    /// The saved value, with every tensor reading the file in place, placed by `map_location`
    /// (or, with [`Placement::Check`], only checked against it).
    pub(crate) fn value(
        &self,
        path: &Path,
        map_location: &MapLocation,
        placement: Placement,
    ) -> Result<Value<'static>, Error> {
        let mut tensors: Vec<Option<Tensor>> = vec![None; self.header.tensors.len()];
        for (index, ((record, (dtype, shape, saved)), key)) in self
            .header
            .tensors
            .iter()
            .zip(&self.parsed)
            .zip(&self.keys)
            .enumerate()
        {
            let target = map_location.resolve(key, *saved);
            let error =
                |e| crate::file::placement_error(path, key, *saved, target, map_location, e);
            crate::device::check(target).map_err(error)?;
            let range = record.offset as usize..(record.offset + record.len) as usize;
            let tensor = Tensor::mapped(Arc::clone(&self.backing), range, *dtype, shape)
                .map_err(|e| Error::corrupt(path, Some(key), e.into()))?;
            // Onto a GPU straight from the mapped file, through the staging buffers.
            tensors[index] = Some(match placement {
                Placement::Move => tensor.to(target).map_err(error)?,
                Placement::Check => tensor,
            });
        }
        Ok(build(&self.header.root, &tensors))
    }
}

/// Chunk size for hashing and copying, small enough to release pages as we go.
pub(crate) const CHUNK: usize = 4 << 20;

fn build(node: &Node, tensors: &[Option<Tensor>]) -> Value<'static> {
    match node {
        Node::None => Value::None,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::Int(*i),
        Node::Float(x) => Value::Float(*x),
        Node::Str(s) => Value::String(s.clone()),
        Node::List(items) => Value::List(items.iter().map(|n| build(n, tensors)).collect()),
        Node::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        NodeKey::Str(s) => Key::Str(s.clone()),
                        NodeKey::Int(i) => Key::Int(*i),
                    };
                    (key, build(v, tensors))
                })
                .collect::<IndexMap<_, _>>(),
        ),
        // References were checked in `open`; every record has a tensor.
        Node::Tensor(index) => match tensors.get(*index as usize).cloned().flatten() {
            Some(tensor) => Value::Tensor(TensorCow::Owned(tensor)),
            None => Value::None,
        },
    }
}
