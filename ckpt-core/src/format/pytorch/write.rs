//! Writing the zip container around a pickle, record by record as PyTorch's
//! `PyTorchStreamWriter` lays it out: every record stored uncompressed and its data aligned to 64
//! bytes, so that readers can map storages straight from the file.

use std::io::{Seek, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::error::{PtError, PtErrorKind};
use super::pickle::pickle;
use crate::Value;

/// The directory every record sits in; readers accept any name.
const PREFIX: &str = "archive";
/// PyTorch's `kFieldAlignment`.
const ALIGNMENT: u16 = 64;
/// The zip format version `torch.save` writes; PyTorch 2.x reads 1 through 10.
const VERSION: &[u8] = b"3\n";

pub(crate) fn write<W: Write + Seek>(value: &Value<'_>, out: W) -> Result<(), PtError> {
    let pickled = pickle(value)?;
    let mut zip = ZipWriter::new(out);
    let mut record = |name: &str, data: &[u8]| -> Result<(), PtError> {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default())
            .with_alignment(ALIGNMENT)
            .large_file(data.len() as u64 >= u64::from(u32::MAX));
        let name = format!("{PREFIX}/{name}");
        zip.start_file(name.as_str(), options)
            .map_err(|e| zip_error(e).in_entry(&name))?;
        zip.write_all(data)
            .map_err(|e| PtError::from(e).in_entry(&name))?;
        Ok(())
    };
    record("data.pkl", &pickled.pickle)?;
    record(".format_version", b"1")?;
    record(".storage_alignment", b"64")?;
    record("byteorder", b"little")?;
    for (i, view) in pickled.storages.iter().enumerate() {
        let bytes = view.try_le_bytes().map_err(|e| {
            let err = PtError::from(PtErrorKind::Device(e)).in_entry(&format!("{PREFIX}/data/{i}"));
            match value.key_of(view) {
                Some(key) => err.under_key(&key),
                None => err,
            }
        })?;
        record(&format!("data/{i}"), &bytes)?;
    }
    record("version", VERSION)?;
    zip.finish().map_err(zip_error)?;
    Ok(())
}

fn zip_error(e: zip::result::ZipError) -> PtError {
    match e {
        zip::result::ZipError::Io(io) => PtErrorKind::Io(io).into(),
        other => PtErrorKind::Io(std::io::Error::other(other.to_string())).into(),
    }
}
