//! Turns an unpickled object graph into a [`Value`]: tensors are cut out of their storages
//! (offset and strides applied, C-contiguous), and tensors that share a storage view come back
//! sharing their data.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;

use super::error::{PtError, PtErrorKind};
use super::unpickle::{Ix, Obj, Pickle, StorageRef, TensorSpec};
use crate::tensor::Backing;
use crate::{DType, Key, Tensor, TensorCow, Value};

/// Nesting deeper than this is refused: real checkpoints nest a handful of levels, and the
/// conversion recurses.
pub(crate) const MAX_DEPTH: usize = 200;

/// Converts `pickle`, whose storages hold `storages` (little-endian, lengths already checked
/// against each storage's element count). `input_len` bounds the work: a pickle may refer to one
/// object many times, but the values and tensor bytes built may not exceed a small multiple of
/// the file.
pub(crate) fn to_value(
    pickle: &Pickle,
    storages: &[Cow<'_, [u8]>],
    input_len: usize,
    backing: Option<&Arc<dyn Backing>>,
) -> Result<Value<'static>, PtError> {
    let mut cx = Convert {
        pickle,
        storages,
        backing,
        by_object: HashMap::new(),
        by_view: HashMap::new(),
        nodes_left: input_len.saturating_mul(2).saturating_add(1024),
        bytes_left: input_len.saturating_mul(2).saturating_add(1 << 20),
    };
    cx.value(pickle.root, 0)
}

struct Convert<'p, 's> {
    pickle: &'p Pickle,
    storages: &'p [Cow<'s, [u8]>],
    /// The bytes the storages were borrowed from, when they can be shared: then contiguous
    /// views read them in place instead of being copied.
    backing: Option<&'p Arc<dyn Backing>>,
    by_object: HashMap<Ix, Tensor>,
    by_view: HashMap<(usize, i64, Vec<i64>, Vec<i64>), Tensor>,
    nodes_left: usize,
    bytes_left: usize,
}

impl Convert<'_, '_> {
    fn value(&mut self, ix: Ix, depth: usize) -> Result<Value<'static>, PtError> {
        if depth > MAX_DEPTH {
            return Err(limit(format!(
                "nesting deeper than {MAX_DEPTH} levels (or a container that holds itself)"
            )));
        }
        self.nodes_left = self.nodes_left.checked_sub(1).ok_or_else(|| {
            limit("the pickle refers to shared objects more often than its size allows".to_owned())
        })?;
        Ok(match self.pickle.obj(ix) {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::Float(x) => Value::Float(*x),
            Obj::Str(s) => Value::String(self.copy_str(s)?),
            Obj::BigInt(bytes) => {
                return Err(unsupported(format!(
                    "an integer of {} bytes, beyond 64 bits",
                    bytes.len()
                )));
            }
            Obj::Bytes(bytes) => {
                return Err(unsupported(format!(
                    "a bytes object of {} bytes",
                    bytes.len()
                )));
            }
            Obj::Global(g) => return Err(unsupported(format!("the global {g:?} as a value"))),
            Obj::Storage(_) => {
                return Err(unsupported("a storage outside a tensor".to_owned()));
            }
            Obj::List(items) | Obj::Tuple(items) => Value::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, &item)| {
                        self.value(item, depth + 1)
                            .map_err(|e| nested(e, depth, &i))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Obj::Dict(pairs) => {
                let mut map = IndexMap::with_capacity(pairs.len());
                for &(k, v) in pairs {
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
                Value::Map(map)
            }
            Obj::Tensor(spec) => Value::Tensor(TensorCow::Owned(self.tensor(ix, spec)?)),
        })
    }

    /// A string copied out of the pickle, paid for from the same budget as tensor data: a long
    /// string fetched from the memo many times must not multiply the file's size.
    fn copy_str(&mut self, s: &str) -> Result<String, PtError> {
        self.bytes_left = self.bytes_left.checked_sub(s.len()).ok_or_else(|| {
            limit(
                "the strings and tensors built add up to more than twice the file size".to_owned(),
            )
        })?;
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
        let (shape, data) = cut_view(storage, bytes, spec).map_err(|message| {
            PtError::from(PtErrorKind::Tensor {
                key: storage.key.clone(),
                message,
            })
        })?;
        self.bytes_left = self.bytes_left.checked_sub(data.len()).ok_or_else(|| {
            limit(
                "the strings and tensors built add up to more than twice the file size".to_owned(),
            )
        })?;
        let in_place = match (self.backing, &data) {
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

/// Where `part` lies within `whole`, if it is a sub-slice of it.
fn range_in(whole: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let base = whole.as_ptr() as usize;
    let start = (part.as_ptr() as usize).checked_sub(base)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// The view's elements in C order, after checking that every one lies inside the storage.
fn cut_view<'b>(
    storage: &StorageRef,
    bytes: &'b [u8],
    spec: &TensorSpec,
) -> Result<(Vec<usize>, Cow<'b, [u8]>), String> {
    let dtype: DType = storage.dtype;
    let item = dtype.size_in_bytes();
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
    let numel = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(overflow)?;
    if numel == 0 {
        return Ok((shape, Cow::Borrowed(&[])));
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
    let nbytes = numel.checked_mul(item).ok_or_else(overflow)?;
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

fn kind(obj: &Obj) -> &'static str {
    match obj {
        Obj::None => "None",
        Obj::Bool(_) => "a bool",
        Obj::Int(_) | Obj::BigInt(_) => "an int",
        Obj::Float(_) => "a float",
        Obj::Str(_) => "a string",
        Obj::Bytes(_) => "bytes",
        Obj::List(_) => "a list",
        Obj::Tuple(_) => "a tuple",
        Obj::Dict(_) => "a dict",
        Obj::Global(_) => "a global",
        Obj::Storage(_) => "a storage",
        Obj::Tensor(_) => "a tensor",
    }
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
