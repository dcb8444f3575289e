//! The zip format `torch.save` writes since PyTorch 1.6: `<name>/data.pkl`, one stored record
//! per storage under `<name>/data/`, and small records such as `byteorder` and `version`.
//!
//! The archive's end is found here, not by the zip crate: the end-of-central-directory record
//! must end the file (PyTorch writes no comment, and a comment must be exactly what follows
//! the record), the central directory it points at must lie before it and hold exactly the
//! records it counts, with no name twice. Only then does the zip crate read the directory, so a
//! hostile tail of many end records costs one bounded search, not one search per record.

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use zip::{CompressionMethod, ZipArchive};

use super::budget::Budget;
use super::error::{PtError, PtErrorKind, truncated};
use crate::storage::Source;

/// The end-of-central-directory record: fixed part, before its comment.
const EOCD_LEN: u64 = 22;
/// The longest comment a zip file can have.
const MAX_COMMENT: u64 = u16::MAX as u64;
/// The tail read first, in which an archive without a comment has its end record.
const TAIL_FIRST: u64 = 512;
const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
/// A central directory file header, fixed part.
const CENTRAL_LEN: u64 = 46;
/// What one record costs in memory, besides its name: the zip crate's and ours.
const RECORD_COST: usize = 512;

/// A record of the archive: where its bytes are and what its checksum is.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) name: String,
    /// Offset of the data from the start of the file.
    pub(crate) start: u64,
    pub(crate) len: u64,
    pub(crate) crc32: u32,
}

/// The records of a zip archive, by name.
pub(crate) struct Archive {
    records: std::collections::HashMap<String, Record>,
    /// The directory every record sits in, named after the file when it was saved.
    pub(crate) prefix: String,
}

impl Archive {
    /// Reads the central directory of the archive in `source`, charging `budget` for what the
    /// directory's records cost in memory.
    pub(crate) fn open(source: &Arc<dyn Source>, budget: &mut Budget) -> Result<Archive, PtError> {
        let end = locate_end(&**source)?;
        // The zip crate's record and ours, per record, and the names twice over.
        let records = usize::try_from(end.entries).unwrap_or(usize::MAX);
        let names = usize::try_from(end.size).unwrap_or(usize::MAX);
        budget.charge(
            records
                .saturating_mul(RECORD_COST)
                .saturating_add(names.saturating_mul(2)),
            "the zip archive's records",
        )?;
        check_directory(&**source, &end)?;
        let reader = SourceReader {
            source: Arc::clone(source),
            pos: 0,
        };
        // The archive starts at the file's start, as torch.save writes it: saying so spares the
        // zip crate its search for where the archive begins.
        let config = zip::read::Config {
            archive_offset: zip::read::ArchiveOffset::Known(0),
        };
        let mut zip = ZipArchive::with_config(config, reader).map_err(zip_error)?;
        let mut records = std::collections::HashMap::with_capacity(zip.len());
        let mut prefix = None;
        for index in 0..zip.len() {
            let file = zip.by_index_raw(index).map_err(zip_error)?;
            let name = file.name().to_owned();
            let in_entry = |kind: PtErrorKind| PtError::from(kind).in_entry(&name);
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
            let start = file.data_start();
            let len = file.compressed_size();
            if start.checked_add(len).is_none_or(|e| e > source.len()) {
                return Err(truncated(format!(
                    "the record's {len} bytes at offset {start} run past the end of the file \
                     ({} bytes)",
                    source.len()
                ))
                .in_entry(&name));
            }
            if index == 0 {
                prefix = name.split_once('/').map(|(p, _)| p.to_owned());
            }
            let record = Record {
                name: name.clone(),
                start,
                len,
                crc32: file.crc32(),
            };
            records.insert(name, record);
        }
        let prefix = prefix.ok_or_else(|| {
            PtError::from(PtErrorKind::NotPyTorch {
                reason: "a zip archive whose first record is not in a directory".to_owned(),
            })
        })?;
        Ok(Archive { records, prefix })
    }

    /// The record `name` under the archive's directory (`data.pkl`, `data/3`).
    pub(crate) fn get(&self, name: &str) -> Option<&Record> {
        self.records.get(&format!("{}/{name}", self.prefix))
    }
}

/// Where the central directory is and how many records it holds.
struct End {
    entries: u64,
    offset: u64,
    size: u64,
    /// Where the directory must end: the (zip64) end record.
    limit: u64,
}

/// Finds the end-of-central-directory record within the last 64 KiB + 22 bytes, where the zip
/// format puts it, and reads it (and its zip64 form where the archive has one).
fn locate_end(source: &dyn Source) -> Result<End, PtError> {
    let len = source.len();
    if len < EOCD_LEN {
        return Err(truncated(format!(
            "a zip archive of {len} bytes, shorter than its end record"
        )));
    }
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |b: &[u8], i: usize| {
        let mut x = [0; 8];
        x.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(x)
    };
    // The one place the record may start: where its comment, as long as it says, ends the file.
    let find = |tail: &[u8]| {
        (0..=tail.len() - EOCD_LEN as usize).rev().find(|&i| {
            u32_at(tail, i) == EOCD_SIGNATURE
                && i + EOCD_LEN as usize + usize::from(u16_at(tail, i + 20)) == tail.len()
        })
    };
    // PyTorch writes no comment, so the last few hundred bytes hold the record (and a zip64
    // locator before it); the whole window is read only when they do not, which keeps a
    // ranged read from an object store small. The search runs from the end either way, so
    // both find the same record.
    let mut found = None;
    for window in [TAIL_FIRST.min(len), (EOCD_LEN + MAX_COMMENT).min(len)] {
        let mut tail = vec![0; window as usize];
        source.read_at(len - window, &mut tail)?;
        if let Some(at) = find(&tail) {
            found = Some((tail, at, window));
            break;
        }
        if window == len {
            break;
        }
    }
    let Some((tail, at, window)) = found else {
        return Err(PtErrorKind::Zip {
            message: "no end-of-central-directory record ends the file (cut off, or not a zip \
                      archive)"
                .to_owned(),
        }
        .into());
    };
    let eocd = &tail[at..];
    let position = len - window + at as u64;
    let mut end = End {
        entries: u64::from(u16_at(eocd, 10)),
        size: u64::from(u32_at(eocd, 12)),
        offset: u64::from(u32_at(eocd, 16)),
        limit: position,
    };
    let zip64 = end.entries == 0xffff || end.size == 0xffff_ffff || end.offset == 0xffff_ffff;
    if zip64 && position >= 20 {
        let mut locator = [0u8; 20];
        source.read_at(position - 20, &mut locator)?;
        if u32_at(&locator, 0) == ZIP64_LOCATOR_SIGNATURE {
            let record_at = u64_at(&locator, 8);
            if record_at.checked_add(56).is_none_or(|e| e > position - 20) {
                return Err(zip_message("the zip64 end record lies outside the file"));
            }
            let mut record = [0u8; 56];
            source.read_at(record_at, &mut record)?;
            if u32_at(&record, 0) != ZIP64_EOCD_SIGNATURE {
                return Err(zip_message(
                    "the zip64 locator points at no zip64 end record",
                ));
            }
            end = End {
                entries: u64_at(&record, 32),
                size: u64_at(&record, 40),
                offset: u64_at(&record, 48),
                limit: record_at,
            };
        }
    }
    Ok(end)
}

/// Checks that the central directory lies before its end record and holds exactly the
/// records it counts, each name once.
fn check_directory(source: &dyn Source, end: &End) -> Result<(), PtError> {
    if end
        .offset
        .checked_add(end.size)
        .is_none_or(|e| e > end.limit)
    {
        return Err(zip_message(&format!(
            "the central directory at {}..+{} does not lie before its end record at {}",
            end.offset, end.size, end.limit
        )));
    }
    if end.entries.saturating_mul(CENTRAL_LEN) > end.size {
        return Err(zip_message(&format!(
            "{} records cannot fit a central directory of {} bytes",
            end.entries, end.size
        )));
    }
    let size = usize::try_from(end.size).map_err(|_| zip_message("central directory too large"))?;
    let mut directory = vec![0; size];
    source.read_at(end.offset, &mut directory)?;
    let mut names = HashSet::with_capacity(end.entries as usize);
    let mut at = 0usize;
    for _ in 0..end.entries {
        let header = directory
            .get(at..at + CENTRAL_LEN as usize)
            .filter(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == CENTRAL_SIGNATURE)
            .ok_or_else(|| {
                zip_message("the central directory holds fewer records than it counts")
            })?;
        let field = |i: usize| usize::from(u16::from_le_bytes([header[i], header[i + 1]]));
        let (name_len, extra, comment) = (field(28), field(30), field(32));
        let name_at = at + CENTRAL_LEN as usize;
        let name = directory
            .get(name_at..name_at + name_len)
            .ok_or_else(|| zip_message("a record's name runs past the central directory"))?;
        if !names.insert(name) {
            return Err(PtErrorKind::DuplicateRecord {
                name: String::from_utf8_lossy(name).into_owned(),
            }
            .into());
        }
        at = name_at + name_len + extra + comment;
    }
    Ok(())
}

/// Reads a source as a stream, for the zip crate.
struct SourceReader {
    source: Arc<dyn Source>,
    pos: u64,
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.source.len().saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.source.read_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SourceReader {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        let target = match from {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(by) => self.source.len().checked_add_signed(by),
            SeekFrom::Current(by) => self.pos.checked_add_signed(by),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

fn zip_message(message: &str) -> PtError {
    PtErrorKind::Zip {
        message: message.to_owned(),
    }
    .into()
}

fn zip_error(e: zip::result::ZipError) -> PtError {
    match e {
        zip::result::ZipError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            truncated(format!("the zip archive ends early ({io})"))
        }
        other => PtErrorKind::Zip {
            message: other.to_string(),
        }
        .into(),
    }
}
