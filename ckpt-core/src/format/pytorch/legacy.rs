//! The format `torch.save` wrote before PyTorch 1.6 (and still writes with
//! `_use_new_zipfile_serialization=False`): five pickles back to back — a magic number, the
//! protocol version, system information, the data, the list of storage keys — then each storage
//! as an 8-byte element count followed by its raw bytes.

use std::collections::HashMap;
use std::ops::Range;

use super::budget::Budget;
use super::check_storage_len;
use super::error::{PtError, PtErrorKind, truncated};
use super::unpickle::{Obj, Pickle, unpickle};

/// `0x1950a86a20f9469cfc6c`, little-endian, as `LONG1` stores it.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// A legacy checkpoint's data pickle, where each of its storages' bytes are in the file (by the
/// pickle's storage order), and whether they are big-endian.
pub(crate) struct Legacy {
    pub(crate) pickle: Pickle,
    pub(crate) storages: Vec<Range<usize>>,
    pub(crate) big_endian: bool,
}

/// Parses a legacy checkpoint held in `data`, checking every storage's length, charging what it
/// builds to `budget`.
pub(crate) fn parse(data: &[u8], budget: &mut Budget) -> Result<Legacy, PtError> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Pickle, PtError> {
        let rest = data.get(pos..).unwrap_or_default();
        let pickle = unpickle(rest, budget).map_err(|e| e.in_entry(what))?;
        pos += pickle.len;
        Ok(pickle)
    };
    let magic = next("magic number")?;
    if !matches!(magic.root(), Obj::BigInt(bytes) if bytes[..] == MAGIC) {
        return Err(PtErrorKind::NotPyTorch {
            reason: "a pickle without PyTorch's magic number".to_owned(),
        }
        .into());
    }
    let protocol = next("protocol version")?;
    if !matches!(protocol.root(), Obj::Int(PROTOCOL_VERSION)) {
        return Err(PtError::from(PtErrorKind::NotPyTorch {
            reason: format!("unknown legacy protocol version {:?}", protocol.root()),
        })
        .in_entry("protocol version"));
    }
    let sys_info = next("sys_info")?;
    let big_endian = !little_endian(&sys_info);
    let pickle = next("data pickle")?;
    let keys = next("storage keys")?;
    let Obj::List(key_ixs) = keys.root() else {
        return Err(PtError::from(PtErrorKind::Pickle {
            offset: 0,
            message: "the storage key list is not a list".to_owned(),
        })
        .in_entry("storage keys"));
    };

    let index: HashMap<&str, usize> = pickle
        .storages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key.as_str(), i))
        .collect();
    let mut found: Vec<Option<Range<usize>>> = vec![None; pickle.storages.len()];
    for &ix in key_ixs {
        let Obj::Str(key) = keys.obj(ix) else {
            return Err(PtError::from(PtErrorKind::Pickle {
                offset: 0,
                message: "a storage key is not a string".to_owned(),
            })
            .in_entry("storage keys"));
        };
        let entry = format!("storage {key}");
        let Some(&i) = index.get(key.as_str()) else {
            return Err(PtError::from(PtErrorKind::Pickle {
                offset: 0,
                message: "listed but never used by the data pickle".to_owned(),
            })
            .in_entry(&entry));
        };
        let (Some(storage), Some(slot)) = (pickle.storages.get(i), found.get_mut(i)) else {
            continue;
        };
        let count_bytes = take(data, &mut pos, 8, &entry)?;
        let mut count = [0u8; 8];
        count.copy_from_slice(count_bytes);
        let count = if big_endian {
            i64::from_be_bytes(count)
        } else {
            i64::from_le_bytes(count)
        };
        if u64::try_from(count).ok() != Some(storage.numel) {
            return Err(PtError::from(PtErrorKind::Tensor {
                key: key.clone(),
                message: format!(
                    "the file gives {count} elements, the pickle {}",
                    storage.numel
                ),
            })
            .in_entry(&entry));
        }
        let item = storage.dtype.size_in_bytes();
        let len = usize::try_from(storage.numel)
            .ok()
            .and_then(|n| n.checked_mul(item))
            .ok_or_else(|| {
                truncated(format!("{} elements cannot be in this file", storage.numel))
                    .in_entry(&entry)
            })?;
        let start = pos;
        let bytes = take(data, &mut pos, len, &entry)?;
        check_storage_len(storage, bytes.len() as u64).map_err(|e| e.in_entry(&entry))?;
        *slot = Some(start..pos);
    }
    let mut storages = Vec::with_capacity(found.len());
    for (storage, range) in pickle.storages.iter().zip(found) {
        let Some(range) = range else {
            return Err(
                truncated("a storage the data pickle uses is not in the file")
                    .in_entry(&format!("storage {}", storage.key)),
            );
        };
        storages.push(range);
    }
    Ok(Legacy {
        pickle,
        storages,
        big_endian,
    })
}

fn little_endian(sys_info: &Pickle) -> bool {
    let Obj::Dict(_, pairs) = sys_info.root() else {
        return true;
    };
    pairs
        .iter()
        .find(|&&(k, _)| matches!(sys_info.obj(k), Obj::Str(s) if s == "little_endian"))
        .is_none_or(|&(_, v)| !matches!(sys_info.obj(v), Obj::Bool(false)))
}

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize, entry: &str) -> Result<&'a [u8], PtError> {
    let bytes = pos
        .checked_add(n)
        .and_then(|end| data.get(*pos..end))
        .ok_or_else(|| {
            truncated(format!(
                "needs {n} bytes at offset {pos}, the file has {}",
                data.len()
            ))
            .in_entry(entry)
        })?;
    *pos += n;
    Ok(bytes)
}
