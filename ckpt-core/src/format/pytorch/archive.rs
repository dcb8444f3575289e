//! The zip format `torch.save` writes since PyTorch 1.6: `<name>/data.pkl`, one stored record
//! per storage under `<name>/data/`, and small records such as `byteorder` and `version`.

use std::io::Cursor;
use std::sync::Arc;

use zip::{CompressionMethod, ZipArchive};

use super::error::{PtError, PtErrorKind, truncated};
use super::unpickle::unpickle;
use super::{ReadOptions, rebuild};
use crate::Value;
use crate::tensor::Backing;

type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// Reads a zip-format checkpoint held in `data`.
pub(crate) fn read(
    data: &[u8],
    options: &ReadOptions,
    backing: Option<&Arc<dyn Backing>>,
) -> Result<Value<'static>, PtError> {
    let mut archive = ZipArchive::new(Cursor::new(data)).map_err(zip_error)?;
    // Every record sits under one directory, named after the file when it was saved.
    let prefix = match archive.name_for_index(0).and_then(|n| n.split_once('/')) {
        Some((prefix, _)) => prefix.to_owned(),
        None => {
            return Err(PtErrorKind::NotPyTorch {
                reason: "a zip archive whose first record is not in a directory".to_owned(),
            }
            .into());
        }
    };
    let pkl_name = format!("{prefix}/data.pkl");
    let pkl = record(&mut archive, data, &pkl_name, options)?.ok_or_else(|| {
        PtError::from(PtErrorKind::MissingRecord {
            name: pkl_name.clone(),
        })
    })?;
    let order_name = format!("{prefix}/byteorder");
    // Files from before the record existed are little-endian, as PyTorch assumes.
    let big_endian = match record(&mut archive, data, &order_name, options)? {
        None | Some(b"little") => false,
        Some(b"big") => true,
        Some(other) => {
            let found = String::from_utf8_lossy(other).into_owned();
            return Err(PtError::from(PtErrorKind::ByteOrder { found }).in_entry(&order_name));
        }
    };
    let pickle = unpickle(pkl).map_err(|e| e.in_entry(&pkl_name))?;
    let mut storages = Vec::with_capacity(pickle.storages.len());
    for storage in &pickle.storages {
        let name = format!("{prefix}/data/{}", storage.key);
        let bytes = record(&mut archive, data, &name, options)?
            .ok_or_else(|| PtError::from(PtErrorKind::MissingRecord { name: name.clone() }))?;
        super::check_storage_len(storage, bytes.len()).map_err(|e| e.in_entry(&name))?;
        storages.push(rebuild::little_endian(
            bytes,
            storage.dtype.size_in_bytes(),
            big_endian,
        ));
    }
    rebuild::to_value(&pickle, &storages, data.len(), backing).map_err(|e| e.in_entry(&pkl_name))
}

/// The bytes of a record, borrowed from `data`, with its CRC-32 checked unless told otherwise.
fn record<'a>(
    archive: &mut Archive<'a>,
    data: &'a [u8],
    name: &str,
    options: &ReadOptions,
) -> Result<Option<&'a [u8]>, PtError> {
    let Some(index) = archive.index_for_name(name) else {
        return Ok(None);
    };
    let file = archive
        .by_index_raw(index)
        .map_err(|e| zip_error(e).in_entry(name))?;
    let in_entry = |kind: PtErrorKind| PtError::from(kind).in_entry(name);
    if file.encrypted() {
        return Err(in_entry(PtErrorKind::Compressed {
            method: "encryption".to_owned(),
        }));
    }
    if file.compression() != CompressionMethod::Stored {
        return Err(in_entry(PtErrorKind::Compressed {
            method: file.compression().to_string(),
        }));
    }
    if file.size() != file.compressed_size() {
        return Err(in_entry(PtErrorKind::Zip {
            message: format!(
                "a stored record of {} bytes claims {} bytes uncompressed",
                file.compressed_size(),
                file.size()
            ),
        }));
    }
    let start = usize::try_from(file.data_start()).unwrap_or(usize::MAX);
    let len = usize::try_from(file.compressed_size()).unwrap_or(usize::MAX);
    let bytes = start
        .checked_add(len)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| {
            truncated(format!(
                "the record's {len} bytes at offset {start} run past the end of the file ({} bytes)",
                data.len()
            ))
            .in_entry(name)
        })?;
    if options.verify_crc {
        let actual = crc32fast::hash(bytes);
        if actual != file.crc32() {
            return Err(in_entry(PtErrorKind::Crc {
                expected: file.crc32(),
                actual,
            }));
        }
    }
    Ok(Some(bytes))
}

fn zip_error(e: zip::result::ZipError) -> PtError {
    match e {
        zip::result::ZipError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            truncated(format!("the zip archive ends early ({io})"))
        }
        other => PtErrorKind::Zip {
            message: other.to_string(),
        }
        .into(),
    }
}
