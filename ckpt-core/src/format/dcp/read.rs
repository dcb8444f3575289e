//! Opening a DCP checkpoint: `.metadata` read and checked against itself and the data files,
//! then the value consolidated into one process, every tensor assembled from its chunks, or
//! one rank's part of a tensor read from the bytes of the chunks it overlaps.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::ops::Range;
use std::sync::Arc;

use indexmap::IndexMap;

use super::error::DcpError;
use super::metadata::{self, Entry, ItemKey, Metadata, StorageInfo, TensorMeta};
use super::{NAME, unpickle};
use crate::dtype::DType;
use crate::format::pytorch::budget::Budget;
use crate::format::pytorch::{open_dcp_item, open_dcp_tensor};
use crate::format::{FormatError, FormatErrorKind, Header, Opened, TensorInfo};
use crate::shard::{Chunk, byte_ranges, check_tiling, copy_overlap};
use crate::state::KeyPath;
use crate::storage::window::Window;
use crate::storage::{self, Location, Source};
use crate::tensor::Tensor;
use crate::value::{Key, Value};

/// Opens the object `name` beside `.metadata`.
pub(crate) type OpenFile<'a> = &'a dyn Fn(&Location) -> io::Result<Arc<dyn Source>>;

/// A DCP checkpoint whose `.metadata` is read and checked, and whose data files are open.
pub(crate) struct DcpOpened {
    /// The `.metadata` object.
    location: Location,
    metadata: Metadata,
    /// The data files `storage_data` names, by name.
    files: BTreeMap<String, Arc<dyn Source>>,
    /// The chunks of each tensor, checked to tile it.
    chunks: IndexMap<String, Vec<Chunk>>,
    header: Header,
}

/// Reads `.metadata` from `source` and opens the data files it names with `open_file`.
///
/// Checked before any tensor data is read: the pickle names only DCP's classes; every tensor's
/// chunks lie inside it and tile it exactly (PyTorch checks this when saving, not loading);
/// every non-empty chunk and every value has an item; every item names a plain file beside
/// `.metadata`, lies inside it, is long enough for its chunk's data, and overlaps no other.
/// So what a load allocates is bounded by the bytes present.
pub(crate) fn open(
    source: Arc<dyn Source>,
    open_file: OpenFile<'_>,
) -> Result<DcpOpened, FormatError> {
    let location = source.location().clone();
    let error = |e: DcpError| FormatError::new(&location, NAME, e);
    let bytes = storage::read_range(&*source, 0..source.len())
        .map_err(|e| FormatError::new(&location, NAME, e))?;
    let mut budget = Budget::for_file(source.len());
    let pickle = unpickle::unpickle(&bytes, &mut budget).map_err(error)?;
    let metadata = metadata::decode(&pickle, &mut budget).map_err(error)?;
    drop(pickle);

    let mut chunks = IndexMap::new();
    let mut tensors = Vec::new();
    for (key, entry) in &metadata.entries {
        let at = |e: DcpError| error(e).at_key(key.clone());
        match entry {
            Entry::Tensor(tensor) => {
                let tensor_chunks = tensor_chunks(tensor).map_err(at)?;
                for chunk in tensor_chunks.iter().filter(|c| !c.is_empty()) {
                    let item = item_key(key, chunk);
                    let info = metadata.storage.get(&item).ok_or_else(|| {
                        at(DcpError::Invalid(format!(
                            "no storage_data entry for its chunk at offsets {:?}",
                            chunk.offsets()
                        )))
                    })?;
                    let needed = chunk.nbytes(tensor.dtype).map_err(|e| at(shard(e)))?;
                    if info.length < needed {
                        return Err(at(DcpError::Invalid(format!(
                            "the item of its chunk at offsets {:?} has {} bytes, fewer than the \
                             chunk's {needed} bytes of data",
                            chunk.offsets(),
                            info.length
                        ))));
                    }
                }
                let shape = usize_shape(&tensor.size).map_err(at)?;
                let info = TensorInfo::new(key.clone(), tensor.dtype, shape)
                    .map_err(|e| at(DcpError::Invalid(e.to_string())))?;
                tensors.push(info);
                chunks.insert(key.clone(), tensor_chunks);
            }
            Entry::Bytes => {
                let item = ItemKey {
                    fqn: key.clone(),
                    offset: None,
                };
                if !metadata.storage.contains_key(&item) {
                    return Err(at(DcpError::Invalid(
                        "no storage_data entry for this value".to_owned(),
                    )));
                }
            }
        }
    }
    let files = open_files(&location, &metadata, open_file)?;
    let mut opened = DcpOpened {
        location,
        metadata,
        files,
        chunks,
        header: Header::new(NAME, tensors, Vec::new()),
    };
    opened.header.values = opened.plain_values()?;
    Ok(opened)
}

/// The chunks of a tensor as the shard geometry checks them, and checked to tile it.
fn tensor_chunks(tensor: &TensorMeta) -> Result<Vec<Chunk>, DcpError> {
    let chunks = tensor
        .chunks
        .iter()
        .map(|c| Chunk::new(tensor.size.clone(), c.offsets.clone(), c.sizes.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(shard)?;
    check_tiling(&tensor.size, &chunks).map_err(shard)?;
    Ok(chunks)
}

fn shard(e: crate::shard::ShardError) -> DcpError {
    DcpError::Invalid(format!("its chunks do not make the tensor: {e}"))
}

fn usize_shape(size: &[u64]) -> Result<Vec<usize>, DcpError> {
    size.iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| DcpError::Invalid(format!("a size of {size:?} does not fit in memory")))
}

fn item_key(key: &str, chunk: &Chunk) -> ItemKey {
    ItemKey {
        fqn: key.to_owned(),
        offset: Some(chunk.offsets().to_vec()),
    }
}

/// Opens every file `storage_data` names, checking that each is a plain name beside
/// `.metadata` and that its items lie inside it without overlapping.
fn open_files(
    location: &Location,
    metadata: &Metadata,
    open_file: OpenFile<'_>,
) -> Result<BTreeMap<String, Arc<dyn Source>>, FormatError> {
    let mut by_file: BTreeMap<&str, Vec<(&ItemKey, &StorageInfo)>> = BTreeMap::new();
    for (index, info) in &metadata.storage {
        by_file
            .entry(info.relative_path.as_str())
            .or_default()
            .push((index, info));
    }
    let mut files = BTreeMap::new();
    for (name, mut items) in by_file {
        let at_key = |index: &ItemKey, e: DcpError| {
            FormatError::new(location, NAME, e).at_key(index.fqn.clone())
        };
        let file = location
            .sibling(name)
            .filter(|_| is_plain_name(name))
            .ok_or_else(|| {
                at_key(
                    items[0].0,
                    DcpError::Invalid(format!(
                        "its item is in {name:?}, which is not a file beside .metadata"
                    )),
                )
            })?;
        let source = open_file(&file).map_err(|e| FormatError::new(&file, NAME, e))?;
        let len = source.len();
        items.sort_by_key(|(index, info)| (info.offset, *index));
        let mut end_of_previous = 0;
        for (index, info) in items {
            let end = info
                .offset
                .checked_add(info.length)
                .filter(|&end| end <= len);
            let Some(end) = end else {
                return Err(FormatError::new(
                    &file,
                    NAME,
                    DcpError::Truncated(format!(
                        "an item at bytes {}..+{} of a file of {len} bytes",
                        info.offset, info.length
                    )),
                )
                .at_key(index.fqn.clone()));
            };
            if info.offset < end_of_previous {
                return Err(FormatError::new(
                    &file,
                    NAME,
                    DcpError::Invalid(format!(
                        "its item at bytes {}..{end} overlaps the one before it",
                        info.offset
                    )),
                )
                .at_key(index.fqn.clone()));
            }
            end_of_previous = end;
        }
        files.insert(name.to_owned(), source);
    }
    Ok(files)
}

/// An item's bytes as a source of their own, its file's location, and its range there.
type ItemWindow = (Arc<dyn Source>, Location, Range<u64>);

/// A file name without directories: `__0_0.distcp`, not `../x` or `/etc/x`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

impl DcpOpened {
    /// The item of `index`, as the `.pt` reader opens it.
    fn item(&self, index: &ItemKey) -> Result<(Box<dyn Opened>, Location), FormatError> {
        let (window, location, range) = self.window(index)?;
        let opened = open_dcp_item(window)
            .map_err(|e| archive_error(e, &location, &range).at_key(index.fqn.clone()))?;
        Ok((opened, location))
    }

    /// The bytes of the item of `index` as a source of their own, the file's location, and
    /// where in the file they lie.
    fn window(&self, index: &ItemKey) -> Result<ItemWindow, FormatError> {
        let info = self.metadata.storage.get(index).ok_or_else(|| {
            FormatError::new(
                &self.location,
                NAME,
                DcpError::Invalid("no storage_data entry".to_owned()),
            )
            .at_key(index.fqn.clone())
        })?;
        let file = &self.files[&info.relative_path];
        let location = file.location().clone();
        let range = info.offset..info.offset + info.length;
        let window = Window::new(Arc::clone(file), range.clone())
            .map_err(|e| FormatError::new(&location, NAME, e).at_key(index.fqn.clone()))?;
        Ok((Arc::new(window), location, range))
    }

    /// The value an item holds.
    fn item_value(&self, index: &ItemKey) -> Result<Value<'static>, FormatError> {
        let (opened, location) = self.item(index)?;
        let info = &self.metadata.storage[index];
        let range = info.offset..info.offset + info.length;
        opened
            .value()
            .map_err(|e| archive_error(e, &location, &range).at_key(index.fqn.clone()))
    }

    /// The plain values of every bytes entry, flattened under its key.
    fn plain_values(&self) -> Result<Vec<(String, Value<'static>)>, FormatError> {
        let mut values = Vec::new();
        for (key, entry) in &self.metadata.entries {
            if !matches!(entry, Entry::Bytes) {
                continue;
            }
            let value = self.item_value(&ItemKey {
                fqn: key.clone(),
                offset: None,
            })?;
            let mut path = KeyPath::new();
            path.push(key);
            value.walk(&mut path, &mut |k, leaf| {
                if !matches!(leaf, Value::Tensor(_)) {
                    values.push((k.to_owned(), leaf.clone()));
                }
            });
        }
        Ok(values)
    }

    /// The tensor `key`, assembled from its chunks: each item's tensor checked to have the
    /// metadata's dtype and the chunk's shape, and copied into its place.
    fn tensor(&self, key: &str, tensor: &TensorMeta) -> Result<Tensor, FormatError> {
        let whole = Chunk::whole(tensor.size.clone())
            .map_err(|e| FormatError::new(&self.location, NAME, shard(e)).at_key(key))?;
        self.read_chunk(key, tensor, &whole)
    }

    /// The part `target` of the tensor `key`, as a rank of another world size holds it: read
    /// from the items of the saved chunks that overlap it, and from no other.
    pub(crate) fn shard(&self, key: &str, target: &Chunk) -> Result<Tensor, FormatError> {
        let error = |e: DcpError| FormatError::new(&self.location, NAME, e).at_key(key);
        let Some(Entry::Tensor(tensor)) = self.metadata.entries.get(key) else {
            return Err(error(DcpError::Invalid(
                "no tensor of this key in the checkpoint".to_owned(),
            )));
        };
        if target.global_shape() != tensor.size {
            return Err(error(DcpError::Invalid(format!(
                "size mismatch: the checkpoint's tensor has shape {:?}, the chunk asked for is \
                 of a tensor of shape {:?}",
                tensor.size,
                target.global_shape()
            ))));
        }
        self.read_chunk(key, tensor, target)
    }

    /// `target` of the tensor `key`, from the items of the chunks it overlaps: of an item
    /// whose tensor lies in C order (as DCP and ckpt write them), only the byte ranges of the
    /// overlap, all fetched in one [`Source::read_ranges`]; of any other, the whole tensor.
    fn read_chunk(
        &self,
        key: &str,
        tensor: &TensorMeta,
        target: &Chunk,
    ) -> Result<Tensor, FormatError> {
        let at = |location: &Location, e: DcpError| {
            FormatError::new(location, NAME, e).at_key(key.to_owned())
        };
        let len = target
            .buffer_len(tensor.dtype)
            .map_err(|e| at(&self.location, shard(e)))?;
        let mut data = vec![0u8; len];
        for chunk in self.chunks[key].iter().filter(|c| !c.is_empty()) {
            match chunk.intersect(target) {
                Ok(Some(overlap)) if !overlap.is_empty() => {}
                Ok(_) => continue,
                Err(e) => return Err(at(&self.location, shard(e))),
            }
            let index = item_key(key, chunk);
            let (window, location, range) = self.window(&index)?;
            let (opened, stored) = open_dcp_tensor(window)
                .map_err(|e| archive_error(e, &location, &range).at_key(key.to_owned()))?;
            let mismatch = |dtype: DType, shape: &[usize]| {
                at(
                    &location,
                    DcpError::Item(format!(
                        "the item of its chunk at offsets {:?} holds a {dtype} tensor of shape \
                         {shape:?}, where the metadata says {} of shape {:?}",
                        chunk.offsets(),
                        tensor.dtype,
                        chunk.sizes()
                    )),
                )
            };
            let chunk_shape =
                |shape: &[usize]| -> Vec<u64> { shape.iter().map(|&d| d as u64).collect() };
            if let Some(stored) = stored {
                if stored.dtype != tensor.dtype || chunk_shape(&stored.shape) != chunk.sizes() {
                    return Err(mismatch(stored.dtype, &stored.shape));
                }
                // Only the bytes of the overlap, fetched together: a rank that needs some rows
                // of a stored chunk reads those rows, not the item.
                let file = &self.files[&self.metadata.storage[&index].relative_path];
                let base = range.start + stored.range.start;
                let ranges: Vec<Range<u64>> = byte_ranges(tensor.dtype, chunk, target)
                    .map_err(|e| at(&location, shard(e)))?
                    .into_iter()
                    .map(|r| base + r.start..base + r.end)
                    .collect();
                let lent = file
                    .read_ranges(&ranges)
                    .map_err(|e| FormatError::new(&location, NAME, e).at_key(key.to_owned()))?;
                let overlap = match chunk.intersect(target) {
                    Ok(Some(overlap)) => overlap,
                    Ok(None) => continue,
                    Err(e) => return Err(at(&self.location, shard(e))),
                };
                let copied = match lent.as_slice() {
                    [(backing, range)] => copy_overlap(
                        tensor.dtype,
                        &overlap,
                        &backing.bytes()[range.clone()],
                        target,
                        &mut data,
                    ),
                    pieces => {
                        let mut bytes =
                            Vec::with_capacity(pieces.iter().map(|(_, r)| r.end - r.start).sum());
                        for (backing, range) in pieces {
                            bytes.extend_from_slice(&backing.bytes()[range.clone()]);
                        }
                        copy_overlap(tensor.dtype, &overlap, &bytes, target, &mut data)
                    }
                };
                copied.map_err(|e| at(&location, shard(e)))?;
                // Pages of a mapped file go once copied, as they would after a read.
                for (backing, range) in &lent {
                    backing.release(&backing.bytes()[range.clone()]);
                }
                continue;
            }
            // Any other item (a view that is not contiguous, big-endian data) is read whole.
            let value = opened.value().map_err(|e| e.at_key(key.to_owned()))?;
            let Value::Tensor(part) = value else {
                return Err(at(
                    &location,
                    DcpError::Item(format!(
                        "the item of its chunk at offsets {:?} holds {}, not a tensor",
                        chunk.offsets(),
                        value.kind()
                    )),
                ));
            };
            let part = part.view();
            if part.dtype() != tensor.dtype || chunk_shape(part.shape()) != chunk.sizes() {
                return Err(mismatch(part.dtype(), part.shape()));
            }
            let bytes = part
                .to_le_bytes()
                .map_err(|e| at(&location, DcpError::Item(e.to_string())))?;
            copy_overlap(tensor.dtype, chunk, &bytes, target, &mut data)
                .map_err(|e| at(&location, shard(e)))?;
        }
        let shape = usize_shape(target.sizes()).map_err(|e| at(&self.location, e))?;
        Tensor::from_le_bytes(tensor.dtype, &shape, &data)
            .map_err(|e| at(&self.location, DcpError::Item(e.to_string())))
    }

    /// Every key's value, flat, in the order of `state_dict_metadata`.
    fn flat(&self) -> Result<Vec<(&str, Value<'static>)>, FormatError> {
        self.metadata
            .entries
            .iter()
            .map(|(key, entry)| {
                let value = match entry {
                    Entry::Tensor(tensor) => Value::from(self.tensor(key, tensor)?),
                    Entry::Bytes => self.item_value(&ItemKey {
                        fqn: key.clone(),
                        offset: None,
                    })?,
                };
                Ok((key.as_str(), value))
            })
            .collect()
    }
}

/// An error of the `.pt` reader about an item, as an error about the item's range of its
/// file.
fn archive_error(e: FormatError, location: &Location, range: &std::ops::Range<u64>) -> FormatError {
    let (_, _, key, kind) = e.into_parts();
    let cause: Box<dyn std::error::Error + Send + Sync> = match kind {
        FormatErrorKind::Other(cause) => cause,
        other => Box::new(other),
    };
    let error = FormatError::new(
        location,
        NAME,
        DcpError::Archive {
            start: range.start,
            end: range.end,
            source: cause,
        },
    );
    match key {
        Some(key) => error.at_key(key),
        None => error,
    }
}

impl Opened for DcpOpened {
    fn header(&self) -> Header {
        self.header.clone()
    }

    /// Checks the CRC-32 of every record of every item (PyTorch checks none).
    fn verify(&self, release: bool) -> Result<(), FormatError> {
        let mut items: Vec<_> = self.metadata.storage.keys().collect();
        items.sort();
        for index in items {
            let (opened, location) = self.item(index)?;
            let info = &self.metadata.storage[index];
            opened.verify(release).map_err(|e| {
                archive_error(e, &location, &(info.offset..info.offset + info.length))
                    .at_key(index.fqn.clone())
            })?;
        }
        Ok(())
    }

    /// The checkpoint in one process: tensors assembled whole, nested by `planner_data` as
    /// `dcp_to_torch_save` nests them (integer path parts make lists), or flat under their
    /// dotted keys where the writer recorded no nesting.
    fn value(&self) -> Result<Value<'static>, FormatError> {
        let flat = self.flat()?;
        nest(flat, &self.metadata.planner_data)
            .map_err(|e| FormatError::new(&self.location, NAME, e.1).at_key(e.0))
    }
}

/// The flat entries nested along their paths. A list grows to the highest index given, the
/// missing items `None` as `dcp_to_torch_save` leaves them; all lists together grow by at most
/// as many missing items as there are entries, so a hostile `planner_data` of huge indices
/// costs nothing.
fn nest(
    flat: Vec<(&str, Value<'static>)>,
    planner_data: &std::collections::HashMap<String, Vec<Key>>,
) -> Result<Value<'static>, (String, DcpError)> {
    let mut root = Value::map();
    let mut seen = HashSet::new();
    let mut padding_left = flat.len();
    for (key, value) in flat {
        let fallback = [Key::Str(key.to_owned())];
        let path = planner_data.get(key).map_or(&fallback[..], Vec::as_slice);
        let conflict = |what: &str| {
            (
                key.to_owned(),
                DcpError::Invalid(format!("its planner_data path {path:?} {what}")),
            )
        };
        if path.is_empty() || !seen.insert(path.to_vec()) {
            return Err(conflict("is empty or another key's"));
        }
        let mut node = &mut root;
        for (i, part) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let fresh = || match path.get(i + 1) {
                Some(Key::Int(_)) => Value::List(Vec::new()),
                _ if last => Value::None,
                _ => Value::map(),
            };
            node = match (node, part) {
                (Value::Map(map), Key::Str(s)) => {
                    map.entry(Key::Str(s.clone())).or_insert_with(fresh)
                }
                (Value::List(list), Key::Int(index)) => {
                    let index = usize::try_from(*index)
                        .ok()
                        .filter(|&i| i < list.len() + 1 + padding_left)
                        .ok_or_else(|| conflict("has a list index out of range"))?;
                    if list.len() <= index {
                        padding_left -= index - list.len();
                        list.resize(index + 1, Value::None);
                    }
                    if list[index].is_none() {
                        list[index] = fresh();
                    }
                    &mut list[index]
                }
                _ => return Err(conflict("runs through a value of another kind")),
            };
        }
        if !node.is_none() {
            return Err(conflict("is another key's"));
        }
        *node = value;
    }
    Ok(root)
}
