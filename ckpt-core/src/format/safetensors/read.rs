//! Reading: the length and the header first (ranged), every tensor's offsets checked against
//! its shape and the file's length before any data is touched.

use std::collections::BTreeMap;
use std::sync::Arc;

use indexmap::IndexMap;
use safetensors::tensor::Metadata;

use super::{MAX_HEADER, METADATA, NAME, dtype_from};
use crate::dtype::DType;
use crate::format::{Corruption, FormatError, FormatErrorKind, Header, TensorData, TensorInfo};
use crate::storage::{self, Source};
use crate::tensor::{Tensor, check_size};
use crate::value::{Key, TensorCow, Value};

/// One tensor of the header: its key, dtype, shape and range within the data section.
type Record = (String, DType, Vec<usize>, (u64, u64));

/// A file whose header has been read and checked.
pub(super) struct Opened {
    source: Arc<dyn Source>,
    /// Where the data section starts.
    data_start: u64,
    /// Every tensor in file order.
    tensors: Vec<Record>,
    metadata: Option<BTreeMap<String, String>>,
}

pub(super) fn open(source: Arc<dyn Source>) -> Result<Opened, FormatError> {
    let location = source.location().clone();
    let error = |kind: FormatErrorKind| FormatError::new(&location, NAME, kind);
    let corrupt = |problem: Corruption| error(problem.into());
    let len = source.len();
    let truncated = |needed, what| corrupt(Corruption::Truncated { len, needed, what });
    if len < 8 {
        return Err(truncated(8, "the header's length"));
    }
    let mut n = [0u8; 8];
    source.read_at(0, &mut n).map_err(|e| error(e.into()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER {
        return Err(corrupt(Corruption::Header(format!(
            "a header of {n} bytes, more than safetensors' limit of {MAX_HEADER}"
        ))));
    }
    let data_start = 8 + n;
    if len < data_start {
        return Err(truncated(data_start, "the header"));
    }
    let header = storage::read_range(&*source, 8..data_start).map_err(|e| error(e.into()))?;
    let metadata: Metadata = serde_json::from_slice(&header)
        .map_err(|e| corrupt(Corruption::Header(format!("safetensors header: {e}"))))?;
    let data_len = metadata.data_len() as u64;
    let end = data_start.saturating_add(data_len);
    if len < end {
        return Err(truncated(end, "the tensor data"));
    }
    if len > end {
        return Err(corrupt(Corruption::Header(format!(
            "{} bytes follow the last tensor's data",
            len - end
        ))));
    }
    let mut infos: Vec<(String, &safetensors::tensor::TensorInfo)> =
        metadata.tensors().into_iter().collect();
    infos.sort_by(|(a, x), (b, y)| (x.data_offsets.0, a).cmp(&(y.data_offsets.0, b)));
    let tensors = infos
        .into_iter()
        .map(|(name, info)| {
            let at = |problem: Corruption| corrupt(problem).at_key(&name);
            let dtype = dtype_from(info.dtype).ok_or_else(|| {
                at(Corruption::Unknown {
                    what: "dtype",
                    name: format!("{:?}", info.dtype),
                })
            })?;
            // The crate checked the offsets against the shape, but not the shape itself.
            check_size(dtype, &info.shape).map_err(|e| at(e.into()))?;
            let (start, stop) = info.data_offsets;
            Ok((name, dtype, info.shape.clone(), (start as u64, stop as u64)))
        })
        .collect::<Result<_, FormatError>>()?;
    let metadata = metadata.metadata().as_ref().map(|strings| {
        strings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    Ok(Opened {
        source,
        data_start,
        tensors,
        metadata,
    })
}

impl crate::format::Opened for Opened {
    fn header(&self) -> Header {
        let tensors = self
            .tensors
            .iter()
            .map(|(key, dtype, shape, (start, stop))| TensorInfo {
                key: key.clone(),
                dtype: *dtype,
                shape: shape.clone(),
                device: crate::device::Device::Cpu,
                nbytes: stop - start,
            })
            .collect();
        let values = self
            .metadata
            .iter()
            .flatten()
            .map(|(k, v)| (format!("{METADATA}.{k}"), Value::String(v.clone())))
            .collect();
        Header {
            format: NAME,
            tensors,
            values,
        }
    }

    /// Every tensor in file order; safetensors keeps no checksums.
    fn tensor_data(&self) -> Option<Vec<TensorData>> {
        Some(
            self.tensors
                .iter()
                .map(|(name, dtype, shape, (start, stop))| {
                    let range = self.data_start + start..self.data_start + stop;
                    TensorData::new(name.clone(), *dtype, shape.clone(), range)
                })
                .collect(),
        )
    }

    /// A flat map of tensors in file order, reading the source in place, plus `__metadata__`
    /// as a map of strings when the file has one.
    fn value(&self) -> Result<Value<'static>, FormatError> {
        let mut map = IndexMap::with_capacity(self.tensors.len() + 1);
        for (name, dtype, shape, (start, stop)) in &self.tensors {
            let range = self.data_start + start..self.data_start + stop;
            let error = |kind: FormatErrorKind| {
                FormatError::new(self.source.location(), NAME, kind).at_key(name)
            };
            let (backing, range) =
                storage::shared(&*self.source, range).map_err(|e| error(e.into()))?;
            let tensor = Tensor::mapped(backing, range, *dtype, shape)
                .map_err(|e| error(Corruption::Tensor(e).into()))?;
            map.insert(
                Key::Str(name.clone()),
                Value::Tensor(TensorCow::Owned(tensor)),
            );
        }
        if let Some(strings) = &self.metadata {
            let entries: IndexMap<Key, Value<'static>> = strings
                .iter()
                .map(|(k, v)| (Key::Str(k.clone()), Value::String(v.clone())))
                .collect();
            map.insert(Key::Str(METADATA.to_owned()), Value::Map(entries));
        }
        Ok(Value::Map(map))
    }
}
