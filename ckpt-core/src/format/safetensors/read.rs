//! Reading: the length and the header first (ranged), every tensor's offsets checked against
//! its shape and the file's length before any data is touched.

use std::sync::Arc;

use indexmap::IndexMap;

use super::table::Table;
use super::{MAX_HEADER, METADATA, NAME};
use crate::format::{Corruption, FormatError, FormatErrorKind, Header, TensorData, TensorInfo};
use crate::storage::{self, Source};
use crate::tensor::Tensor;
use crate::value::{Key, TensorCow, Value};

/// A file whose header has been read and checked.
pub(super) struct Opened {
    source: Arc<dyn Source>,
    /// Where the data section starts.
    data_start: u64,
    /// Every tensor in file order, and the metadata strings.
    table: Table,
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
    let table = Table::parse(&header).map_err(|(problem, key)| match key {
        Some(key) => corrupt(problem).at_key(&key),
        None => corrupt(problem),
    })?;
    drop(header);
    let end = data_start.saturating_add(table.data_len());
    if len < end {
        return Err(truncated(end, "the tensor data"));
    }
    if len > end {
        return Err(corrupt(Corruption::Header(format!(
            "{} bytes follow the last tensor's data",
            len - end
        ))));
    }
    Ok(Opened {
        source,
        data_start,
        table,
    })
}

impl crate::format::Opened for Opened {
    fn header(&self) -> Header {
        let tensors = self
            .table
            .iter()
            .map(|entry| TensorInfo {
                key: entry.name.to_owned(),
                dtype: entry.dtype,
                shape: entry.shape.to_vec(),
                device: crate::device::Device::Cpu,
                nbytes: entry.offsets.1 - entry.offsets.0,
            })
            .collect();
        let values = self
            .table
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
            self.table
                .iter()
                .map(|entry| {
                    let (start, stop) = entry.offsets;
                    let range = self.data_start + start..self.data_start + stop;
                    TensorData::new(
                        entry.name.to_owned(),
                        entry.dtype,
                        entry.shape.to_vec(),
                        range,
                    )
                })
                .collect(),
        )
    }

    /// A flat map of tensors in file order, reading the source in place, plus `__metadata__`
    /// as a map of strings when the file has one.
    fn value(&self) -> Result<Value<'static>, FormatError> {
        let mut map = IndexMap::with_capacity(self.table.len() + 1);
        for entry in self.table.iter() {
            let (name, (start, stop)) = (entry.name, entry.offsets);
            let range = self.data_start + start..self.data_start + stop;
            let error = |kind: FormatErrorKind| {
                FormatError::new(self.source.location(), NAME, kind).at_key(name)
            };
            let (backing, range) =
                storage::shared(&*self.source, range).map_err(|e| error(e.into()))?;
            let tensor = Tensor::mapped(backing, range, entry.dtype, entry.shape)
                .map_err(|e| error(Corruption::Tensor(e).into()))?;
            map.insert(
                Key::Str(name.to_owned()),
                Value::Tensor(TensorCow::Owned(tensor)),
            );
        }
        if let Some(strings) = &self.table.metadata {
            let entries: IndexMap<Key, Value<'static>> = strings
                .iter()
                .map(|(k, v)| (Key::Str(k.clone()), Value::String(v.clone())))
                .collect();
            map.insert(Key::Str(METADATA.to_owned()), Value::Map(entries.into()));
        }
        Ok(Value::Map(map.into()))
    }
}
