//! `.metadata`'s object model as ckpt reads and writes it: which keys there are, each tensor's
//! dtype, global size and chunks, and where each chunk's or value's item lies. Read from the
//! unpickled objects ([`decode`]), written as a protocol 2 pickle ([`encode`]) that
//! `torch.distributed.checkpoint.load` reads.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::error::DcpError;
use super::unpickle::{Class, Ix, Obj, Pickle};
use crate::dtype::{DType, TorchDType};
use crate::format::pytorch::budget::Budget;
use crate::format::pytorch::opcode as op;
use crate::value::Key;

/// The most dimensions a tensor may have, as for `.pt` files.
const MAX_DIMS: usize = 64;

/// What `.metadata` says of a checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Metadata {
    /// Every key, in the order of `state_dict_metadata`.
    pub(crate) entries: IndexMap<String, Entry>,
    /// How each flattened key nests (`model.0.weight` → `["model", "0.weight"]`), where the
    /// writer recorded it.
    pub(crate) planner_data: HashMap<String, Vec<Key>>,
    /// Where each item lies.
    pub(crate) storage: HashMap<ItemKey, StorageInfo>,
}

/// One key of the checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Entry {
    Tensor(TensorMeta),
    /// A value that is not a tensor, stored as a pickle of its own.
    Bytes,
}

/// A tensor: its dtype, global shape and the chunks that hold it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorMeta {
    pub(crate) dtype: DType,
    pub(crate) size: Vec<u64>,
    pub(crate) chunks: Vec<ChunkMeta>,
}

/// A chunk of a tensor: where it starts in the global tensor and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub(crate) offsets: Vec<u64>,
    pub(crate) sizes: Vec<u64>,
}

/// `MetadataIndex` as DCP hashes it: the key, and a chunk's offsets (none for a value).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ItemKey {
    pub(crate) fqn: String,
    pub(crate) offset: Option<Vec<u64>>,
}

/// `_StorageInfo`: the file an item is in, and its bytes there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StorageInfo {
    pub(crate) relative_path: String,
    pub(crate) offset: u64,
    pub(crate) length: u64,
}

/// Reads the unpickled objects as DCP's `Metadata`, charging copies to `budget`.
pub(crate) fn decode(pickle: &Pickle, budget: &mut Budget) -> Result<Metadata, DcpError> {
    let mut d = Decoder { pickle, budget };
    let fields = d.object(pickle.root, Class::Metadata, "the root")?;
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|&(_, v)| v);
    let sdm = field("state_dict_metadata")
        .ok_or_else(|| invalid("Metadata has no state_dict_metadata"))?;
    let mut entries = IndexMap::new();
    for (key, value) in d.dict(sdm, "state_dict_metadata")? {
        let key = d.string(key, "a state_dict_metadata key")?;
        let entry = d.entry(value, &key)?;
        if entries.insert(key.clone(), entry).is_some() {
            return Err(invalid(format!("state_dict_metadata lists {key:?} twice")));
        }
    }
    let mut planner_data = HashMap::new();
    if let Some(pd) = field("planner_data").filter(|&ix| !matches!(pickle.obj(ix), Obj::None)) {
        for (key, path) in d.dict(pd, "planner_data")? {
            let key = d.string(key, "a planner_data key")?;
            let path = d.path(path, &key)?;
            planner_data.insert(key, path);
        }
    }
    let sd = field("storage_data").ok_or_else(|| invalid("Metadata has no storage_data"))?;
    let mut storage = HashMap::new();
    for (index, info) in d.dict(sd, "storage_data")? {
        let index = d.item_key(index)?;
        let info = d.storage_info(info, &index.fqn)?;
        if storage.insert(index.clone(), info).is_some() {
            return Err(invalid(format!(
                "storage_data lists the item of {:?} at {:?} twice",
                index.fqn, index.offset
            )));
        }
    }
    Ok(Metadata {
        entries,
        planner_data,
        storage,
    })
}

fn invalid(message: impl Into<String>) -> DcpError {
    DcpError::Invalid(message.into())
}

struct Decoder<'p, 'b> {
    pickle: &'p Pickle,
    budget: &'b mut Budget,
}

impl Decoder<'_, '_> {
    /// The fields of an object of `class`, from its `BUILD` dict (none if it was not built).
    fn object(&self, ix: Ix, class: Class, what: &str) -> Result<Vec<(String, Ix)>, DcpError> {
        let state = match self.pickle.obj(ix) {
            Obj::Object(c, state) if *c == class => *state,
            other => {
                return Err(invalid(format!(
                    "{what} is {}, not a {class:?}",
                    describe(other)
                )));
            }
        };
        let Some(state) = state else {
            return Ok(Vec::new());
        };
        let Obj::Dict(pairs) = self.pickle.obj(state) else {
            return Err(invalid(format!(
                "{what}: a {class:?} whose state is not a dict"
            )));
        };
        pairs
            .iter()
            .map(|&(k, v)| match self.pickle.obj(k) {
                Obj::Str(name) => Ok((name.clone(), v)),
                _ => Err(invalid(format!(
                    "{what}: a {class:?} field named by a non-string"
                ))),
            })
            .collect()
    }

    fn dict(&self, ix: Ix, what: &str) -> Result<Vec<(Ix, Ix)>, DcpError> {
        match self.pickle.obj(ix) {
            Obj::Dict(pairs) => Ok(pairs.clone()),
            other => Err(invalid(format!(
                "{what} is {}, not a dict",
                describe(other)
            ))),
        }
    }

    /// A string, its copy charged: a string fetched from the memo many times is copied each.
    fn string(&mut self, ix: Ix, what: &str) -> Result<String, DcpError> {
        match self.pickle.obj(ix) {
            Obj::Str(s) => {
                self.budget
                    .charge(s.len() + 24, "the metadata's strings")
                    .map_err(DcpError::limit)?;
                Ok(s.clone())
            }
            other => Err(invalid(format!(
                "{what} is {}, not a string",
                describe(other)
            ))),
        }
    }

    fn int(&self, ix: Ix, what: &str) -> Result<u64, DcpError> {
        match self.pickle.obj(ix) {
            Obj::Int(i) => u64::try_from(*i).map_err(|_| invalid(format!("{what} is {i}"))),
            other => Err(invalid(format!(
                "{what} is {}, not an integer",
                describe(other)
            ))),
        }
    }

    /// A `torch.Size` (read as its tuple) of non-negative integers.
    fn size(&mut self, ix: Ix, what: &str) -> Result<Vec<u64>, DcpError> {
        let Obj::Tuple(items) = self.pickle.obj(ix) else {
            return Err(invalid(format!("{what} is not a torch.Size")));
        };
        if items.len() > MAX_DIMS {
            return Err(invalid(format!(
                "{what} has {} dimensions (at most {MAX_DIMS})",
                items.len()
            )));
        }
        self.budget
            .charge(8 * items.len() + 24, "the metadata's sizes")
            .map_err(DcpError::limit)?;
        items.iter().map(|&i| self.int(i, what)).collect()
    }

    fn entry(&mut self, ix: Ix, key: &str) -> Result<Entry, DcpError> {
        let at = |e: DcpError| keyed(e, key);
        if let Obj::Object(Class::BytesStorageMetadata, _) = self.pickle.obj(ix) {
            return Ok(Entry::Bytes);
        }
        let fields = self
            .object(ix, Class::TensorStorageMetadata, "the entry")
            .map_err(at)?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|&(_, v)| v)
                .ok_or_else(|| at(invalid(format!("TensorStorageMetadata has no {name}"))))
        };
        let dtype = self.properties(field("properties")?).map_err(at)?;
        let size = self.size(field("size")?, "its size").map_err(at)?;
        let Obj::List(items) = self.pickle.obj(field("chunks")?) else {
            return Err(at(invalid("its chunks are not a list")));
        };
        let mut chunks = Vec::with_capacity(items.len().min(1 << 16));
        for &chunk in items {
            let fields = self
                .object(chunk, Class::ChunkStorageMetadata, "a chunk")
                .map_err(at)?;
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|&(_, v)| v)
                    .ok_or_else(|| at(invalid(format!("a chunk has no {name}"))))
            };
            let offsets = self
                .size(get("offsets")?, "a chunk's offsets")
                .map_err(at)?;
            let sizes = self.size(get("sizes")?, "a chunk's sizes").map_err(at)?;
            chunks.push(ChunkMeta { offsets, sizes });
        }
        Ok(Entry::Tensor(TensorMeta {
            dtype,
            size,
            chunks,
        }))
    }

    /// `TensorProperties`' state: `(dtype, layout, requires_grad, memory_format, pin_memory[,
    /// strides])`, of which ckpt needs the dtype and checks that the layout is strided.
    fn properties(&self, ix: Ix) -> Result<DType, DcpError> {
        let state = match self.pickle.obj(ix) {
            Obj::Object(Class::TensorProperties, Some(state)) => *state,
            _ => return Err(invalid("its properties are not a built TensorProperties")),
        };
        let Obj::Tuple(fields) = self.pickle.obj(state) else {
            return Err(invalid("TensorProperties' state is not a tuple"));
        };
        if !(5..=6).contains(&fields.len()) {
            return Err(invalid(format!(
                "TensorProperties' state has {} fields, not 5 or 6",
                fields.len()
            )));
        }
        let Obj::DType(torch) = self.pickle.obj(fields[0]) else {
            return Err(invalid("TensorProperties' dtype is not a torch dtype"));
        };
        match self.pickle.obj(fields[1]) {
            Obj::Str(layout) if layout == "torch.strided" => {}
            Obj::Str(layout) => {
                return Err(DcpError::Unsupported(format!(
                    "a tensor of layout {layout}"
                )));
            }
            _ => return Err(invalid("TensorProperties' layout is not a layout")),
        }
        torch
            .dtype()
            .ok_or_else(|| DcpError::Unsupported(format!("a tensor of {torch}")))
    }

    /// A `planner_data` path: a tuple of strings and list indices.
    fn path(&mut self, ix: Ix, key: &str) -> Result<Vec<Key>, DcpError> {
        let Obj::Tuple(items) = self.pickle.obj(ix) else {
            return Err(keyed(invalid("its planner_data path is not a tuple"), key));
        };
        self.budget
            .charge(32 * items.len() + 24, "the metadata's paths")
            .map_err(DcpError::limit)?;
        items
            .iter()
            .map(|&part| match self.pickle.obj(part) {
                Obj::Str(s) => Ok(Key::Str(s.clone())),
                Obj::Int(i) => Ok(Key::Int(*i)),
                other => Err(keyed(
                    invalid(format!("a planner_data path holds {}", describe(other))),
                    key,
                )),
            })
            .collect()
    }

    fn item_key(&mut self, ix: Ix) -> Result<ItemKey, DcpError> {
        let fields = self.object(ix, Class::MetadataIndex, "a storage_data key")?;
        let mut fqn = None;
        let mut offset = None;
        for (name, value) in fields {
            match name.as_str() {
                "fqn" => fqn = Some(self.string(value, "a MetadataIndex fqn")?),
                "offset" if !matches!(self.pickle.obj(value), Obj::None) => {
                    offset = Some(self.size(value, "a MetadataIndex offset")?);
                }
                // A hint: the chunk's position in its list.
                _ => {}
            }
        }
        let fqn = fqn.ok_or_else(|| invalid("a MetadataIndex without fqn"))?;
        Ok(ItemKey { fqn, offset })
    }

    fn storage_info(&mut self, ix: Ix, key: &str) -> Result<StorageInfo, DcpError> {
        let at = |e: DcpError| keyed(e, key);
        let fields = self
            .object(ix, Class::StorageInfo, "a storage_data value")
            .map_err(at)?;
        let (mut path, mut offset, mut length) = (None, None, None);
        for (name, value) in fields {
            match name.as_str() {
                "relative_path" => path = Some(self.string(value, "relative_path").map_err(at)?),
                "offset" => offset = Some(self.int(value, "an item offset").map_err(at)?),
                "length" => length = Some(self.int(value, "an item length").map_err(at)?),
                "transform_descriptors" => match self.pickle.obj(value) {
                    Obj::None => {}
                    Obj::List(items) if items.is_empty() => {}
                    _ => {
                        return Err(at(DcpError::Unsupported(
                            "an item stored through transforms (transform_descriptors, such as \
                             stream.zstd)"
                                .to_owned(),
                        )));
                    }
                },
                _ => {}
            }
        }
        match (path, offset, length) {
            (Some(relative_path), Some(offset), Some(length)) => Ok(StorageInfo {
                relative_path,
                offset,
                length,
            }),
            _ => Err(at(invalid(
                "a _StorageInfo without relative_path, offset and length",
            ))),
        }
    }
}

/// The error about the entry `key`.
fn keyed(e: DcpError, key: &str) -> DcpError {
    match e {
        DcpError::Invalid(message) => DcpError::Invalid(format!("{key:?}: {message}")),
        other => other,
    }
}

/// What an object is, for messages.
fn describe(obj: &Obj) -> String {
    match obj {
        Obj::None => "None".to_owned(),
        Obj::Bool(b) => format!("the bool {b}"),
        Obj::Int(i) => format!("the int {i}"),
        Obj::Float(x) => format!("the float {x}"),
        Obj::Str(_) => "a string".to_owned(),
        Obj::Tuple(_) => "a tuple".to_owned(),
        Obj::List(_) => "a list".to_owned(),
        Obj::Dict(_) => "a dict".to_owned(),
        Obj::DType(_) => "a dtype".to_owned(),
        Obj::Global(_) => "a global".to_owned(),
        Obj::Object(class, _) => format!("a {class:?}"),
    }
}

/// `.metadata` for `metadata` as a protocol 2 pickle of the fewest globals PyTorch needs:
/// DCP's classes, `torch.Size`, the layout, the memory-format enum and the dtypes; the
/// checkpoint id is a string, so no `pathlib` global. Entries are written in order, every
/// item after the entries, sorted by key for a deterministic file.
pub(crate) fn encode(metadata: &Metadata) -> Vec<u8> {
    let mut p = Pickler::default();
    p.out.extend_from_slice(&[op::PROTO, 2]);
    p.object("torch.distributed.checkpoint.metadata", "Metadata");
    p.out.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);

    p.string("state_dict_metadata");
    p.out.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
    for (key, entry) in &metadata.entries {
        p.string(key);
        match entry {
            Entry::Bytes => p.object(MD, "BytesStorageMetadata"),
            Entry::Tensor(tensor) => p.tensor(tensor),
        }
    }
    p.out.push(op::SETITEMS);

    p.string("planner_data");
    p.out.push(op::EMPTY_DICT);
    if !metadata.planner_data.is_empty() {
        p.out.push(op::MARK);
        for key in metadata.entries.keys() {
            let Some(path) = metadata.planner_data.get(key) else {
                continue;
            };
            p.string(key);
            p.out.push(op::MARK);
            for part in path {
                match part {
                    Key::Str(s) => p.string(s),
                    Key::Int(i) => p.int(*i),
                }
            }
            p.out.push(op::TUPLE);
        }
        p.out.push(op::SETITEMS);
    }

    p.string("storage_data");
    p.out.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
    let mut items: Vec<_> = metadata.storage.iter().collect();
    items.sort_by(|(a, x), (b, y)| {
        (&x.relative_path, x.offset, a).cmp(&(&y.relative_path, y.offset, b))
    });
    for (index, info) in items {
        p.object(MD, "MetadataIndex");
        p.out.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
        p.string("fqn");
        p.string(&index.fqn);
        if let Some(offset) = &index.offset {
            p.string("offset");
            p.size(offset);
        }
        p.out.extend_from_slice(&[op::SETITEMS, op::BUILD]);
        p.object("torch.distributed.checkpoint.filesystem", "_StorageInfo");
        p.out.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
        p.string("relative_path");
        p.string(&info.relative_path);
        p.string("offset");
        p.uint(info.offset);
        p.string("length");
        p.uint(info.length);
        p.out.extend_from_slice(&[op::SETITEMS, op::BUILD]);
    }
    p.out.push(op::SETITEMS);

    p.string("storage_meta");
    p.out.push(op::NONE);
    p.string("version");
    p.string("1.0.0");
    p.out
        .extend_from_slice(&[op::SETITEMS, op::BUILD, op::STOP]);
    p.out
}

const MD: &str = "torch.distributed.checkpoint.metadata";

impl PartialOrd for ItemKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ItemKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.fqn, &self.offset).cmp(&(&other.fqn, &other.offset))
    }
}

/// Writes protocol 2 opcodes, each global once and then from the memo.
#[derive(Default)]
struct Pickler {
    out: Vec<u8>,
    globals: HashMap<String, u32>,
}

impl Pickler {
    fn global(&mut self, module: &str, name: &str) {
        let line = format!("{module}\n{name}\n");
        if let Some(&slot) = self.globals.get(&line) {
            self.out.push(op::LONG_BINGET);
            self.out.extend_from_slice(&slot.to_le_bytes());
            return;
        }
        let slot = self.globals.len() as u32;
        self.out.push(op::GLOBAL);
        self.out.extend_from_slice(line.as_bytes());
        self.out.push(op::LONG_BINPUT);
        self.out.extend_from_slice(&slot.to_le_bytes());
        self.globals.insert(line, slot);
    }

    /// `cls.__new__(cls)`, as pickle writes a dataclass: `GLOBAL EMPTY_TUPLE NEWOBJ`.
    fn object(&mut self, module: &str, name: &str) {
        self.global(module, name);
        self.out.extend_from_slice(&[op::EMPTY_TUPLE, op::NEWOBJ]);
    }

    fn tensor(&mut self, tensor: &TensorMeta) {
        self.object(MD, "TensorStorageMetadata");
        self.out.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
        self.string("properties");
        self.object(MD, "TensorProperties");
        // `(dtype, layout, requires_grad, memory_format, pin_memory, strides)`, BUILD calling
        // `__setstate__` with it. The strides are the global tensor's, C-contiguous: DCP
        // records them but reads none.
        self.out.push(op::MARK);
        self.global("torch", TorchDType::from(tensor.dtype).name());
        self.global("torch.serialization", "_get_layout");
        self.string("torch.strided");
        self.out
            .extend_from_slice(&[op::TUPLE1, op::REDUCE, op::NEWFALSE]);
        self.global(MD, "_MEM_FORMAT_ENCODING");
        self.int(0);
        self.out
            .extend_from_slice(&[op::TUPLE1, op::REDUCE, op::NEWFALSE, op::MARK]);
        let mut stride = 1u64;
        let mut strides = vec![0; tensor.size.len()];
        for (s, &d) in strides.iter_mut().zip(&tensor.size).rev() {
            *s = stride;
            stride = stride.saturating_mul(d);
        }
        for s in strides {
            self.uint(s);
        }
        self.out
            .extend_from_slice(&[op::TUPLE, op::TUPLE, op::BUILD]);
        self.string("size");
        self.size(&tensor.size);
        self.string("chunks");
        self.out.push(op::EMPTY_LIST);
        if !tensor.chunks.is_empty() {
            self.out.push(op::MARK);
            for chunk in &tensor.chunks {
                self.object(MD, "ChunkStorageMetadata");
                self.out.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
                self.string("offsets");
                self.size(&chunk.offsets);
                self.string("sizes");
                self.size(&chunk.sizes);
                self.out.extend_from_slice(&[op::SETITEMS, op::BUILD]);
            }
            self.out.push(op::APPENDS);
        }
        self.out.extend_from_slice(&[op::SETITEMS, op::BUILD]);
    }

    /// `torch.Size((d0, d1, …))`.
    fn size(&mut self, dims: &[u64]) {
        self.global("torch", "Size");
        self.out.push(op::MARK);
        for &d in dims {
            self.uint(d);
        }
        self.out
            .extend_from_slice(&[op::TUPLE, op::TUPLE1, op::REDUCE]);
    }

    fn uint(&mut self, i: u64) {
        // Sizes and offsets of real files fit in i64.
        self.int(i64::try_from(i).unwrap_or(i64::MAX));
    }

    fn int(&mut self, i: i64) {
        if let Ok(small) = u8::try_from(i) {
            self.out.extend_from_slice(&[op::BININT1, small]);
        } else if let Ok(medium) = u16::try_from(i) {
            self.out.push(op::BININT2);
            self.out.extend_from_slice(&medium.to_le_bytes());
        } else if let Ok(word) = i32::try_from(i) {
            self.out.push(op::BININT);
            self.out.extend_from_slice(&word.to_le_bytes());
        } else {
            self.out.extend_from_slice(&[op::LONG1, 8]);
            self.out.extend_from_slice(&i.to_le_bytes());
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push(op::BINUNICODE);
        // Keys and file names of real checkpoints are far below 4 GiB.
        self.out
            .extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
}
