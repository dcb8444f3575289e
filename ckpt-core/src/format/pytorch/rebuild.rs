//! Turns an unpickled object graph into a [`Value`]: tensors are cut out of their storages
//! (offset and strides applied, C-contiguous), and tensors that share a storage view come back
//! sharing their data.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use indexmap::IndexMap;

use super::budget::Budget;
use super::error::{PtError, PtErrorKind};
use super::unpickle::{DictKind, Global, Ix, Obj, Pickle, StorageRef, TensorSpec, kind};
use crate::dtype::{DType, DTypeKind};
use crate::format::TensorInfo;
use crate::state::{KeyPath, Metadata};
use crate::tensor::{Backing, Tensor, check_size};
use crate::value::{Complex64, Key, Map, TensorCow, Value};

/// A storage's bytes, little-endian, and the backing they borrow from when they do: then
/// contiguous views read them in place instead of being copied.
pub(crate) struct Storage<'s> {
    pub(crate) bytes: Cow<'s, [u8]>,
    pub(crate) backing: Option<Arc<dyn Backing>>,
}

/// Nesting deeper than this is refused: real checkpoints nest a handful of levels, and the
/// conversion recurses.
pub(crate) const MAX_DEPTH: usize = 200;

/// What one tensor costs besides its shape and any data copied for it.
const TENSOR_COST: usize = 128;

/// Converts `pickle`, whose storages hold `storages` (little-endian, lengths already checked
/// against each storage's element count). What is built is charged to `budget`: a pickle may
/// refer to one object many times, but the values and the tensor bytes copied out of their
/// storages may not outgrow the file.
pub(crate) fn to_value(
    pickle: &Pickle,
    storages: &[Storage<'_>],
    budget: Budget,
) -> Result<Value<'static>, PtError> {
    let mut cx = Convert {
        pickle,
        storages,
        by_object: HashMap::new(),
        by_view: HashMap::new(),
        budget,
    };
    cx.value(pickle.root, 0)
}

/// What one value costs besides its heap data.
const VALUE_COST: usize = size_of::<Value<'static>>();
/// What one list item or map entry costs besides its value and its key's string: the slack of a
/// vector that doubles, and for a map the key, its hash and its index, doubled too.
const ITEM_COST: usize = size_of::<Value<'static>>();
const ENTRY_COST: usize = 2 * (size_of::<Key>() + 8) + size_of::<Value<'static>>() + 16;

/// A view of a storage: storage, offset, shape, strides, and the neg and conj bits.
type ViewKey = (usize, i64, Vec<i64>, Vec<i64>, (bool, bool));

struct Convert<'p, 's> {
    pickle: &'p Pickle,
    storages: &'p [Storage<'s>],
    by_object: HashMap<Ix, Tensor>,
    /// Tensors by the view of a storage they read, with their neg and conj bits.
    by_view: HashMap<ViewKey, Tensor>,
    budget: Budget,
}

impl Convert<'_, '_> {
    fn value(&mut self, ix: Ix, depth: usize) -> Result<Value<'static>, PtError> {
        if depth > MAX_DEPTH {
            return Err(limit(format!(
                "nesting deeper than {MAX_DEPTH} levels (or a container that holds itself)"
            )));
        }
        self.budget.charge(VALUE_COST, "the values built")?;
        Ok(match self.pickle.obj(ix) {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::Float(x) => Value::Float(*x),
            Obj::Complex(re, im) => Value::Complex(Complex64::new(*re, *im)),
            Obj::Str(s) => Value::String(self.copy_str(s)?),
            Obj::Bytes(bytes) => Value::Bytes(self.copy_bytes(bytes)?),
            Obj::ByteArray(bytes) => Value::ByteArray(self.copy_bytes(bytes)?),
            Obj::BytesIo => Value::Bytes(Vec::new()),
            Obj::BigInt(bytes) => {
                return Err(unsupported(format!(
                    "an integer of {} bytes, beyond 64 bits",
                    bytes.len()
                )));
            }
            Obj::Global(Global::DType(dtype)) => Value::DType(*dtype),
            Obj::Global(Global::Unrepresentable(what)) => {
                return Err(unsupported((*what).to_owned()));
            }
            Obj::Global(g) => return Err(unsupported(format!("the global {g:?} as a value"))),
            Obj::Storage(_) => {
                return Err(unsupported("a storage outside a tensor".to_owned()));
            }
            Obj::List(items) | Obj::Tuple(items) => Value::List(self.items(items, depth)?),
            Obj::Set(items) => Value::Set(self.items(items, depth)?),
            Obj::Dict(DictKind::Counter, pairs) => Value::Counter(self.entries(pairs, depth)?),
            Obj::Dict(_, pairs) => {
                let mut map = Map::from(self.entries(pairs, depth)?);
                map.set_metadata(self.metadata(ix)?);
                Value::Map(map)
            }
            Obj::Tensor(spec) => Value::Tensor(TensorCow::Owned(self.tensor(ix, spec)?)),
        })
    }

    fn items(&mut self, items: &[Ix], depth: usize) -> Result<Vec<Value<'static>>, PtError> {
        self.budget
            .charge(items.len().saturating_mul(ITEM_COST), "the values built")?;
        items
            .iter()
            .enumerate()
            .map(|(i, &item)| {
                self.value(item, depth + 1)
                    .map_err(|e| nested(e, depth, &i))
            })
            .collect()
    }

    fn entries(
        &mut self,
        pairs: &[(Ix, Ix)],
        depth: usize,
    ) -> Result<IndexMap<Key, Value<'static>>, PtError> {
        let mut map = IndexMap::with_capacity(pairs.len());
        for &(k, v) in pairs {
            self.budget.charge(ENTRY_COST, "the values built")?;
            let key = match self.pickle.obj(k) {
                Obj::Str(s) => Key::Str(self.copy_str(s)?),
                Obj::Int(i) => Key::Int(*i),
                other => {
                    return Err(unsupported(format!("a dict key that is {}", kind(other))));
                }
            };
            let value = self
                .value(v, depth + 1)
                .map_err(|e| nested(e, depth, &key))?;
            map.insert(key, value);
        }
        Ok(map)
    }

    /// The module versions of the dict at `ix`, from the `_metadata` attribute PyTorch gives a
    /// state dict: `{prefix: {"version": n}}`. Only a dict of them is kept, and only entries
    /// with string prefixes; an entry whose version is not an integer reads as having none.
    /// Anything else is not kept rather than refused: `torch.load` reads such a file, and only
    /// a module that looks at its version would fail on it.
    fn metadata(&mut self, ix: Ix) -> Result<Option<Metadata>, PtError> {
        let Some(&at) = self.pickle.metadata.get(&ix) else {
            return Ok(None);
        };
        let Obj::Dict(_, modules) = self.pickle.obj(at) else {
            return Ok(None);
        };
        let mut metadata = Metadata::new();
        for &(prefix, entry) in modules {
            self.budget.charge(ENTRY_COST, "the values built")?;
            let Obj::Str(prefix) = self.pickle.obj(prefix) else {
                continue;
            };
            let version = match self.pickle.obj(entry) {
                Obj::Dict(_, fields) => fields.iter().find_map(|&(k, v)| {
                    match (self.pickle.obj(k), self.pickle.obj(v)) {
                        (Obj::Str(name), Obj::Int(version)) if name == "version" => Some(*version),
                        _ => None,
                    }
                }),
                _ => None,
            };
            let prefix = self.copy_str(prefix)?;
            metadata.insert(prefix, version);
        }
        Ok(Some(metadata))
    }

    /// Bytes copied out of the pickle, paid for as strings are.
    fn copy_bytes(&mut self, bytes: &[u8]) -> Result<Vec<u8>, PtError> {
        self.budget.charge(bytes.len(), "the bytes built")?;
        Ok(bytes.to_vec())
    }

    /// A string copied out of the pickle, paid for from the same budget as tensor data: a long
    /// string fetched from the memo many times must not multiply the file's size.
    fn copy_str(&mut self, s: &str) -> Result<String, PtError> {
        self.budget.charge(s.len(), "the strings built")?;
        Ok(s.to_owned())
    }

    fn tensor(&mut self, ix: Ix, spec: &TensorSpec) -> Result<Tensor, PtError> {
        if let Some(t) = self.by_object.get(&ix) {
            return Ok(t.clone());
        }
        let view_key = (
            spec.storage,
            spec.offset,
            spec.shape.clone(),
            spec.stride.clone(),
            (spec.neg, spec.conj),
        );
        if let Some(t) = self.by_view.get(&view_key) {
            return Ok(t.clone());
        }
        let storage = self.pickle.storages.get(spec.storage);
        let bytes = self.storages.get(spec.storage);
        let (Some(storage), Some(bytes)) = (storage, bytes) else {
            return Err(unsupported(
                "a tensor whose storage was never loaded".to_owned(),
            ));
        };
        let (shape, mut data) = cut_view(storage, &bytes.bytes, spec).map_err(|message| {
            PtError::from(PtErrorKind::Tensor {
                key: storage.key.clone(),
                message,
            })
        })?;
        // The conj and neg bits are resolved here, as `resolve_conj()` and `resolve_neg()`
        // would: the stored values are the raw ones, the tensor's are these.
        if spec.neg || spec.conj {
            let mut owned = data.into_owned();
            apply_bits(storage.dtype, spec.neg, spec.conj, &mut owned).map_err(|message| {
                PtError::from(PtErrorKind::Tensor {
                    key: storage.key.clone(),
                    message,
                })
            })?;
            data = Cow::Owned(owned);
        }
        let copied = match &data {
            Cow::Owned(bytes) => bytes.len(),
            Cow::Borrowed(_) => 0,
        };
        self.budget.charge(
            TENSOR_COST + shape.len() * size_of::<usize>() + copied,
            "the tensors built",
        )?;
        let in_place = match (&bytes.backing, &data) {
            (Some(backing), Cow::Borrowed(slice)) => range_in(backing.bytes(), slice)
                .map(|range| Tensor::mapped(Arc::clone(backing), range, storage.dtype, &shape)),
            _ => None,
        };
        let tensor = in_place
            .unwrap_or_else(|| Tensor::from_le_bytes(storage.dtype, &shape, &data))
            .map_err(|e| {
                PtError::from(PtErrorKind::Tensor {
                    key: storage.key.clone(),
                    message: e.to_string(),
                })
            })?;
        self.by_object.insert(ix, tensor.clone());
        self.by_view.insert(view_key, tensor.clone());
        Ok(tensor)
    }
}

/// Negates (`neg`) and conjugates (`conj`) the little-endian elements of `dtype` in `bytes`.
/// Floats negate by their sign bit, as IEEE negation does (NaNs and zeros included), except
/// that the fnuz 8-bit floats keep their one zero and their one NaN; integers wrap, as PyTorch's
/// do; a complex number is two floats, its imaginary part negated by `conj`.
fn apply_bits(dtype: DType, neg: bool, conj: bool, bytes: &mut [u8]) -> Result<(), String> {
    let flip = |part: &mut [u8]| {
        if let Some(top) = part.last_mut() {
            *top ^= 0x80;
        }
    };
    let item = dtype.size_in_bytes();
    match dtype.kind() {
        DTypeKind::Complex => {
            for element in bytes.chunks_exact_mut(item) {
                let (re, im) = element.split_at_mut(item / 2);
                if neg {
                    flip(re);
                }
                if neg != conj {
                    flip(im);
                }
            }
            return Ok(());
        }
        _ if conj => {
            return Err(format!(
                "a conj bit on a {dtype} tensor, which is not complex"
            ));
        }
        _ if !neg => {}
        DTypeKind::Float if matches!(dtype, DType::F8E4M3Fnuz | DType::F8E5M2Fnuz) => {
            for byte in bytes.iter_mut() {
                if *byte & 0x7f != 0 {
                    *byte ^= 0x80;
                }
            }
        }
        DTypeKind::Float if dtype == DType::F8E8M0 => {
            return Err("a neg bit on an F8_E8M0 tensor, which has no sign".to_owned());
        }
        DTypeKind::Float => bytes.chunks_exact_mut(item).for_each(flip),
        DTypeKind::Int => {
            for element in bytes.chunks_exact_mut(item) {
                // Two's complement negation, little-endian: invert, then add one.
                let mut carry = true;
                for byte in element {
                    let (sum, overflow) = (!*byte).overflowing_add(u8::from(carry));
                    *byte = sum;
                    carry = overflow;
                }
            }
        }
        _ => return Err(format!("a neg bit on a {dtype} tensor")),
    }
    Ok(())
}

/// Where `part` lies within `whole`, if it is a sub-slice of it.
fn range_in(whole: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let base = whole.as_ptr() as usize;
    let start = (part.as_ptr() as usize).checked_sub(base)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// The shape, strides and offset of a view, after checking that its size fits in memory and
/// that every element it reads lies inside the storage.
fn check_view(
    storage: &StorageRef,
    spec: &TensorSpec,
) -> Result<(Vec<usize>, Vec<usize>, usize, usize), String> {
    let dtype: DType = storage.dtype;
    if spec.shape.len() != spec.stride.len() {
        return Err(format!(
            "size {:?} and stride {:?} have different lengths",
            spec.shape, spec.stride
        ));
    }
    let nonneg = |x: i64, what: &str| {
        usize::try_from(x).map_err(|_| format!("negative or oversized {what} {x}"))
    };
    let shape: Vec<usize> = spec
        .shape
        .iter()
        .map(|&d| nonneg(d, "size"))
        .collect::<Result<_, _>>()?;
    let stride: Vec<usize> = spec
        .stride
        .iter()
        .map(|&s| nonneg(s, "stride"))
        .collect::<Result<_, _>>()?;
    let offset = nonneg(spec.offset, "storage offset")?;
    let overflow = || format!("size {shape:?} with stride {stride:?} overflows");
    check_size(dtype, &shape).map_err(|e| e.to_string())?;
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return Ok((shape, stride, offset, 0));
    }
    // The last element the view reads; every other one lies between it and `offset`.
    let last = shape
        .iter()
        .zip(&stride)
        .try_fold(offset, |acc, (&d, &s)| {
            acc.checked_add((d - 1).checked_mul(s)?)
        })
        .ok_or_else(overflow)?;
    let storage_numel = usize::try_from(storage.numel).unwrap_or(usize::MAX);
    if last >= storage_numel {
        return Err(format!(
            "a view with offset {offset}, size {shape:?} and stride {stride:?} reads element \
             {last}, past the end of its storage of {storage_numel} elements"
        ));
    }
    Ok((shape, stride, offset, numel))
}

/// The view's elements in C order, after checking that every one lies inside the storage.
fn cut_view<'b>(
    storage: &StorageRef,
    bytes: &'b [u8],
    spec: &TensorSpec,
) -> Result<(Vec<usize>, Cow<'b, [u8]>), String> {
    let (shape, stride, offset, numel) = check_view(storage, spec)?;
    if numel == 0 {
        return Ok((shape, Cow::Borrowed(&[])));
    }
    let item = storage.dtype.size_in_bytes();
    // `check_view` checked the size in bytes.
    let nbytes = numel * item;
    if nbytes > bytes.len() {
        return Err(format!(
            "a view of {nbytes} bytes is larger than its storage of {} bytes \
             (expanded tensors with zero strides are not supported)",
            bytes.len()
        ));
    }
    let in_storage = |start_elem: usize, n: usize| {
        let start = start_elem.checked_mul(item)?;
        bytes.get(start..start.checked_add(n.checked_mul(item)?)?)
    };
    let outside = || "the storage is shorter than its element count".to_owned();
    if is_contiguous(&shape, &stride) {
        let data = in_storage(offset, numel).ok_or_else(outside)?;
        return Ok((shape, Cow::Borrowed(data)));
    }
    let mut out = Vec::with_capacity(nbytes);
    let mut index = vec![0usize; shape.len()];
    // The innermost dimension is copied in runs; the others advance like an odometer.
    let (inner, inner_stride) = match (shape.last(), stride.last()) {
        (Some(&d), Some(&s)) => (d, s),
        _ => (1, 1),
    };
    let outer = shape.len().saturating_sub(1);
    loop {
        let base = index
            .iter()
            .zip(&stride)
            .take(outer)
            .fold(offset, |acc, (&i, &s)| acc + i * s);
        if inner_stride == 1 {
            out.extend_from_slice(in_storage(base, inner).ok_or_else(outside)?);
        } else {
            for j in 0..inner {
                out.extend_from_slice(in_storage(base + j * inner_stride, 1).ok_or_else(outside)?);
            }
        }
        // Advance the outer dimensions.
        let mut dim = outer;
        loop {
            if dim == 0 {
                return Ok((shape, Cow::Owned(out)));
            }
            dim -= 1;
            let (Some(i), Some(&d)) = (index.get_mut(dim), shape.get(dim)) else {
                return Ok((shape, Cow::Owned(out)));
            };
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
}

/// Whether `stride` is the C-contiguous layout of `shape` (dimensions of size 1 may have any
/// stride, as in PyTorch).
/// A view's shape, and the elements of its storage that hold it in C order.
pub(crate) type ElementRun = (Vec<usize>, Range<u64>);

/// Where the elements of the view `spec` lie in its storage when they lie there in C order,
/// one run: the shape and the element range; `None` for a view that is not contiguous or
/// carries a conj or neg bit (its values are not the stored bytes as they are). An error for
/// a view outside its storage, as [`cut_view`] finds it.
pub(crate) fn contiguous_elements(
    storage: &StorageRef,
    spec: &TensorSpec,
) -> Result<Option<ElementRun>, String> {
    let (shape, stride, offset, numel) = check_view(storage, spec)?;
    if spec.neg || spec.conj || !is_contiguous(&shape, &stride) {
        return Ok(None);
    }
    let (offset, numel) = (offset as u64, numel as u64);
    let end = offset
        .checked_add(numel)
        .filter(|&end| end <= storage.numel)
        .ok_or_else(|| "the storage is shorter than its element count".to_owned())?;
    Ok(Some((shape, offset..end)))
}

fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

/// Adds a key segment to an error from a child, unless the error is about depth itself (whose
/// key would be as deep as the nesting).
fn nested(e: PtError, depth: usize, segment: &dyn std::fmt::Display) -> PtError {
    if depth >= 16 {
        return e;
    }
    e.under_key(segment)
}

fn limit(what: String) -> PtError {
    PtErrorKind::Limit { what }.into()
}

fn unsupported(what: String) -> PtError {
    PtErrorKind::Unsupported { what }.into()
}

/// The storage's bytes in little-endian order: borrowed as they are, or copied and swapped
/// element by element for a file saved on a big-endian machine.
pub(crate) fn little_endian(bytes: &[u8], item: usize, big_endian: bool) -> Cow<'_, [u8]> {
    if !big_endian || item == 1 {
        return Cow::Borrowed(bytes);
    }
    let mut out = bytes.to_vec();
    for element in out.chunks_exact_mut(item) {
        element.reverse();
    }
    Cow::Owned(out)
}

/// What a pickle holds, from its structure: every tensor, every plain value with its key,
/// and for each storage the keys of the tensors that use it.
pub(crate) type Described = (
    Vec<TensorInfo>,
    Vec<(String, Value<'static>)>,
    Vec<Vec<String>>,
);

/// The tensors and plain values of `pickle` without reading any storage: what a header shows.
/// Tensors come once each, under their first key, with their shapes checked as a load would.
pub(crate) fn describe(pickle: &Pickle, budget: &mut Budget) -> Result<Described, PtError> {
    let mut cx = Describe {
        pickle,
        seen: std::collections::HashSet::new(),
        tensors: Vec::new(),
        values: Vec::new(),
        users: vec![Vec::new(); pickle.storages.len()],
        budget,
    };
    cx.walk(pickle.root, &mut KeyPath::new(), 0)?;
    Ok((cx.tensors, cx.values, cx.users))
}

struct Describe<'p, 'b> {
    pickle: &'p Pickle,
    seen: std::collections::HashSet<Ix>,
    tensors: Vec<TensorInfo>,
    values: Vec<(String, Value<'static>)>,
    /// The keys of the tensors of each storage, for messages about damaged storages.
    users: Vec<Vec<String>>,
    budget: &'b mut Budget,
}

/// What visiting one object costs: its place in the walk, and in the set of tensors seen.
const VISIT_COST: usize = 16;

impl Describe<'_, '_> {
    /// Records a plain value under the current key.
    fn value(&mut self, path: &KeyPath, value: Value<'static>, heap: usize) -> Result<(), PtError> {
        // Doubled: the vector of values doubles as it grows.
        let cost = 2 * size_of::<(String, Value<'static>)>() + path.as_str().len() + heap;
        self.budget.charge(cost, "the header's values")?;
        self.values.push((path.as_str().to_owned(), value));
        Ok(())
    }

    fn walk(&mut self, ix: Ix, path: &mut KeyPath, depth: usize) -> Result<(), PtError> {
        if depth > MAX_DEPTH {
            return Err(limit(format!(
                "nesting deeper than {MAX_DEPTH} levels (or a container that holds itself)"
            )));
        }
        self.budget
            .charge(VISIT_COST, "walking the pickle's objects")?;
        match self.pickle.obj(ix) {
            Obj::List(items) | Obj::Tuple(items) | Obj::Set(items) => {
                for (i, &item) in items.iter().enumerate() {
                    path.push(i);
                    self.walk(item, path, depth + 1)?;
                    path.pop();
                }
            }
            Obj::Dict(_, pairs) => {
                for &(k, v) in pairs {
                    match self.pickle.obj(k) {
                        Obj::Str(s) => path.push(s),
                        Obj::Int(i) => path.push(i),
                        other => {
                            return Err(unsupported(format!("a dict key that is {}", kind(other))));
                        }
                    }
                    self.walk(v, path, depth + 1)?;
                    path.pop();
                }
            }
            Obj::Tensor(spec) => {
                if let Some(users) = self.users.get_mut(spec.storage) {
                    let cost = size_of::<String>() + path.as_str().len();
                    self.budget.charge(cost, "the header's tensors")?;
                    users.push(path.as_str().to_owned());
                }
                if self.seen.insert(ix) {
                    let storage = self.pickle.storages.get(spec.storage).ok_or_else(|| {
                        unsupported("a tensor whose storage was never loaded".to_owned())
                    })?;
                    let (shape, ..) = check_view(storage, spec).map_err(|message| {
                        PtError::from(PtErrorKind::Tensor {
                            key: storage.key.clone(),
                            message,
                        })
                        .under_key(&path.as_str())
                    })?;
                    let cost = size_of::<TensorInfo>() + path.as_str().len() + 8 * shape.len();
                    self.budget.charge(cost, "the header's tensors")?;
                    let info =
                        TensorInfo::new(path.as_str(), storage.dtype, shape).map_err(|e| {
                            PtError::from(PtErrorKind::Tensor {
                                key: storage.key.clone(),
                                message: e.to_string(),
                            })
                            .under_key(&path.as_str())
                        })?;
                    self.tensors.push(info);
                }
            }
            Obj::None => self.value(path, Value::None, 0)?,
            Obj::Bool(b) => self.value(path, Value::Bool(*b), 0)?,
            Obj::Int(i) => self.value(path, Value::Int(*i), 0)?,
            Obj::Float(x) => self.value(path, Value::Float(*x), 0)?,
            Obj::Str(s) => self.value(path, Value::String(s.to_string()), s.len())?,
            Obj::Complex(re, im) => {
                self.value(path, Value::Complex(Complex64::new(*re, *im)), 0)?;
            }
            Obj::Bytes(b) => self.value(path, Value::Bytes(b.clone()), b.len())?,
            Obj::ByteArray(b) => self.value(path, Value::ByteArray(b.clone()), b.len())?,
            Obj::BytesIo => self.value(path, Value::Bytes(Vec::new()), 0)?,
            Obj::Global(Global::DType(dtype)) => self.value(path, Value::DType(*dtype), 0)?,
            other => return Err(unsupported(format!("{} as a value", kind(other)))),
        }
        Ok(())
    }
}
