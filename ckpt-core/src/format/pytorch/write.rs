//! Writing the zip container around a pickle, record by record as PyTorch's
//! `PyTorchStreamWriter` lays it out: every record stored uncompressed and its data aligned to 64
//! bytes, so that readers can map storages straight from the file. Archives without ZIP64 are
//! written by `stored.rs` (the same bytes, CRC-32s on other threads); larger ones by the zip
//! crate, here.

use std::cell::Cell;
use std::io::{self, Seek, SeekFrom, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::error::{PtError, PtErrorKind};
use super::pickle::pickle;
use super::stored::{self, Body};
use crate::storage::Sink;
use crate::value::Value;

/// The directory every record sits in; readers accept any name.
const PREFIX: &str = "archive";
/// PyTorch's `kFieldAlignment`.
const ALIGNMENT: u16 = 64;
/// The zip format version `torch.save` writes; PyTorch 2.x reads 1 through 10.
const VERSION: &[u8] = b"3\n";

pub(crate) fn write(value: &Value<'_>, out: &mut dyn Sink) -> Result<(), PtError> {
    let pickled = pickle(value)?;
    let mut records: Vec<(String, Body<'_>)> = [
        ("data.pkl", &pickled.pickle[..]),
        (".format_version", b"1"),
        (".storage_alignment", b"64"),
        ("byteorder", b"little"),
    ]
    .into_iter()
    .map(|(name, data)| (format!("{PREFIX}/{name}"), Body::Bytes(data)))
    .collect();
    for (i, view) in pickled.storages.iter().enumerate() {
        records.push((format!("{PREFIX}/data/{i}"), Body::Storage(view)));
    }
    records.push((format!("{PREFIX}/version"), Body::Bytes(VERSION)));
    if stored::write(out, &records, value)? {
        return Ok(());
    }
    write_zipped(value, &pickled, out)
}

/// Writes the archive through the zip crate, which computes the CRC-32s as it writes: for
/// archives that need ZIP64.
fn write_zipped(
    value: &Value<'_>,
    pickled: &super::pickle::Pickled<'_>,
    out: &mut dyn Sink,
) -> Result<(), PtError> {
    // After a failure, the zip writer finishes the archive when it is dropped and reports on
    // stderr if that fails too; the fused sink makes every write after a failure (its own, or
    // any other, marked below) a silent no-op, so that nothing is printed and the first error
    // is the one returned.
    let failed = Cell::new(false);
    let mut zip = ZipWriter::new(Fused::new(out, &failed));
    let result = write_records(&mut zip, value, pickled);
    if result.is_err() {
        failed.set(true);
    }
    result?;
    zip.finish().map_err(zip_error)?;
    Ok(())
}

fn write_records(
    zip: &mut ZipWriter<Fused<'_>>,
    value: &Value<'_>,
    pickled: &super::pickle::Pickled<'_>,
) -> Result<(), PtError> {
    let records: [(&str, &[u8]); 4] = [
        ("data.pkl", &pickled.pickle),
        (".format_version", b"1"),
        (".storage_alignment", b"64"),
        ("byteorder", b"little"),
    ];
    for (name, data) in records {
        let name = start(zip, name, data.len())?;
        zip.write_all(data)
            .map_err(|e| PtError::from(e).in_entry(&name))?;
    }
    for (i, view) in pickled.storages.iter().enumerate() {
        // Streamed: host data at once, GPU and candle data a piece at a time, so that no
        // storage is copied whole.
        let name = start(zip, &format!("data/{i}"), view.nbytes())?;
        let mut written = Ok(());
        view.stream_le_bytes(&mut |piece| {
            if written.is_ok() {
                written = zip.write_all(piece);
            }
        })
        .map_err(|e| {
            let err = PtError::from(PtErrorKind::Device(e)).in_entry(&name);
            match value.key_of(view) {
                Some(key) => err.under_key(&key),
                None => err,
            }
        })?;
        written.map_err(|e| PtError::from(e).in_entry(&name))?;
    }
    let name = start(zip, "version", VERSION.len())?;
    zip.write_all(VERSION)
        .map_err(|e| PtError::from(e).in_entry(&name))
}

/// Starts the record `name` of `len` bytes, returning its full name.
fn start(zip: &mut ZipWriter<Fused<'_>>, name: &str, len: usize) -> Result<String, PtError> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .with_alignment(ALIGNMENT)
        .large_file(len as u64 >= u64::from(u32::MAX));
    let name = format!("{PREFIX}/{name}");
    zip.start_file(name.as_str(), options)
        .map_err(|e| zip_error(e).in_entry(&name))?;
    Ok(name)
}

fn zip_error(e: zip::result::ZipError) -> PtError {
    match e {
        zip::result::ZipError::Io(io) => PtErrorKind::Io(io).into(),
        other => PtErrorKind::Io(std::io::Error::other(other.to_string())).into(),
    }
}

/// A sink that fails once: after its first error, writes and seeks succeed without doing
/// anything but keep track of the position and the end, so that the zip writer's arithmetic
/// stays consistent. The bytes are discarded anyway, as the save that failed commits nothing.
struct Fused<'s> {
    inner: &'s mut dyn Sink,
    failed: &'s Cell<bool>,
    pos: u64,
    end: u64,
}

impl<'s> Fused<'s> {
    fn new(inner: &'s mut dyn Sink, failed: &'s Cell<bool>) -> Self {
        Fused {
            inner,
            failed,
            pos: 0,
            end: 0,
        }
    }

    /// Runs `op` on the inner sink unless a failure came first; a failure of `op` is one.
    fn run<T>(&mut self, op: impl FnOnce(&mut dyn Sink) -> io::Result<T>) -> Option<io::Result<T>> {
        if self.failed.get() {
            return None;
        }
        let result = op(self.inner);
        self.failed.set(result.is_err());
        Some(result)
    }
}

impl Write for Fused<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.run(|s| s.write(buf)).unwrap_or(Ok(buf.len()))?;
        self.pos += n as u64;
        self.end = self.end.max(self.pos);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.run(|s| s.flush()).unwrap_or(Ok(()))
    }
}

impl Seek for Fused<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        if let Some(result) = self.run(|s| s.seek(pos)) {
            self.pos = result?;
            self.end = self.end.max(self.pos);
            return Ok(self.pos);
        }
        let target = match pos {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(by) => self.end.checked_add_signed(by),
            SeekFrom::Current(by) => self.pos.checked_add_signed(by),
        };
        self.pos = target.ok_or_else(|| io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::tensor::Tensor;

    /// `value` written by `stored.rs` and by the zip crate, into a sink that already holds
    /// `before` bytes.
    fn both(value: &Value<'_>, before: usize) -> (Vec<u8>, Vec<u8>) {
        let mut ours = Cursor::new(vec![7; before]);
        ours.set_position(before as u64);
        write(value, &mut ours).unwrap();
        let mut theirs = Cursor::new(vec![7; before]);
        theirs.set_position(before as u64);
        write_zipped(value, &pickle(value).unwrap(), &mut theirs).unwrap();
        (ours.into_inner(), theirs.into_inner())
    }

    #[test]
    fn archives_are_the_zip_crates_byte_for_byte() {
        // Names and pickles of many lengths, so every padding of the alignment field occurs
        // (among them the ones under 6 bytes, which take a whole 64 more), empty storages, a
        // storage larger than a CRC-32 chunk, and sinks that do not start at 0.
        let mut map = indexmap::IndexMap::new();
        for i in 0..40usize {
            let len = (i * 37) % 101;
            let data: Vec<f32> = (0..len).map(|x| (x * i) as f32 * 0.5).collect();
            map.insert(
                crate::value::Key::Str("k".repeat(i % 7 + 1) + &i.to_string()),
                Value::from(Tensor::from(ndarray::Array1::from(data))),
            );
        }
        let big: Vec<u8> = (0..(9 << 20) + 3).map(|x: u32| (x % 251) as u8).collect();
        map.insert(
            crate::value::Key::Str("big".into()),
            Value::from(Tensor::from(ndarray::Array1::from(big))),
        );
        // Not contiguous: streamed and hashed by the writing thread.
        let fortran = ndarray::Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as i64);
        map.insert(
            crate::value::Key::Str("transposed".into()),
            Value::from(Tensor::from(fortran.t().to_owned())),
        );
        let value = Value::Map(map.into());
        for before in [0, 1, 13, 64, 100] {
            let (ours, theirs) = both(&value, before);
            assert!(ours == theirs, "archives differ after {before} bytes");
        }
        let small = Value::Map(indexmap::IndexMap::new().into());
        let (ours, theirs) = both(&small, 0);
        assert_eq!(ours, theirs);
    }
}
