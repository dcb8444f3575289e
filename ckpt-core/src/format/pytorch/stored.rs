//! The zip container of a `.pt` file written by ckpt itself, for archives that need no ZIP64
//! (under 4 GiB and 65,535 records, what most state dicts are): byte for byte what the zip
//! crate writes for the same records (`write.rs`; a test compares the two), but with the
//! CRC-32s of storages that lie in memory computed on the threads of the current rayon pool,
//! in chunks, while this thread writes. The zip crate computes each record's CRC-32 in the
//! writing thread, between writes, which puts a second pass over every byte on the write's
//! critical path. Headers go out with the CRC-32 field zero, and are patched once the hashes
//! are in, as the zip crate patches its own.

use std::io::{self, SeekFrom};

use rayon::iter::{IntoParallelIterator, ParallelIterator};

use super::error::{PtError, PtErrorKind};
use crate::storage::Sink;
use crate::tensor::TensorView;
use crate::value::Value;

/// What a record holds.
pub(super) enum Body<'r> {
    /// Small bytes (the pickle, version strings), hashed as they are written.
    Bytes(&'r [u8]),
    /// A storage: hashed on other threads when its bytes lie in memory, else streamed (a GPU's
    /// staging buffers) and hashed on the way.
    Storage(&'r TensorView<'r>),
}

impl Body<'_> {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Storage(view) => view.nbytes() as u64,
        }
    }
}

/// The zip crate's limits for a record and an archive without ZIP64.
const ZIP32_MAX: u64 = u32::MAX as u64;
const ZIP32_RECORDS: usize = u16::MAX as usize;
/// A local header without its name and extra field; a central one; the end record.
const LOCAL: u64 = 30;
const CENTRAL: u64 = 46;
const END: u64 = 22;
/// PyTorch's `kFieldAlignment`, written as the zip crate's data-stream-alignment extra field.
const ALIGNMENT: u64 = 64;
const ALIGNMENT_FIELD: u16 = 0xa11e;
/// Stored, version 1.0, made on Unix; 1980-01-01 00:00 (the zip crate's `DateTime::default`);
/// a regular file of mode 0644.
const VERSION: u16 = 10;
const MADE_BY: u16 = (3 << 8) | VERSION;
const DATE: u16 = 33;
const EXTERNAL: u32 = 0o100644 << 16;
/// What CRC-32s are computed in: small enough that one large storage spreads over every
/// thread, large enough that combining them costs nothing.
const CHUNK: usize = 4 << 20;

/// Where a record goes.
struct Placed {
    header: u64,
    /// The alignment extra field's length (0 when the data is aligned already).
    pad: u16,
}

/// Where each of `records` goes, from the archive's start, and where their data ends; `None`
/// if the archive needs ZIP64 (or a name that is not ASCII), which the zip crate writes
/// instead. `base` is where the archive starts in the sink.
fn place(records: &[(String, Body<'_>)], base: u64) -> Option<(Vec<Placed>, u64)> {
    if records.len() >= ZIP32_RECORDS || records.iter().any(|(name, _)| !name.is_ascii()) {
        return None;
    }
    let mut at = 0u64;
    let mut central = 0u64;
    let mut placed = Vec::with_capacity(records.len());
    for (name, body) in records {
        let name_end = at + LOCAL + name.len() as u64;
        // The zip crate aligns the data's position in the sink.
        let unaligned = (base + name_end) % ALIGNMENT;
        let mut pad = (ALIGNMENT - unaligned) % ALIGNMENT;
        // The field needs 6 bytes: its id, its length and the alignment.
        while pad != 0 && pad < 6 {
            pad += ALIGNMENT;
        }
        placed.push(Placed {
            header: at,
            pad: pad as u16,
        });
        at = name_end + pad + body.len();
        central += CENTRAL + name.len() as u64;
    }
    (base + at + central + END < ZIP32_MAX).then_some((placed, at))
}

/// Writes `records` as a stored zip archive into `out` (empty, at its start), or returns
/// `Ok(false)` without writing anything when the archive needs ZIP64. `value` holds the
/// storages, to name the tensor of a GPU that fails.
pub(super) fn write(
    out: &mut dyn Sink,
    records: &[(String, Body<'_>)],
    value: &Value<'_>,
) -> Result<bool, PtError> {
    let base = out.stream_position().map_err(PtError::from)?;
    let Some((placed, end)) = place(records, base) else {
        return Ok(false);
    };
    let mut hashed = Vec::new();
    let written = rayon::in_place_scope(|scope| {
        scope.spawn(|_| hashed = hash_in_memory(records));
        write_records(out, records, &placed, base, value)
    });
    let mut crcs = written?;
    for (i, crc) in hashed {
        crcs[i] = crc;
    }

    let central_start = base + end;
    let mut central = Vec::new();
    for (((name, body), placed), &crc) in records.iter().zip(&placed).zip(&crcs) {
        let len = body.len() as u32;
        for (field, v) in [
            (4, 0x0201_4b50),
            (2, MADE_BY.into()),
            (2, VERSION.into()),
            (2, 0),
            (2, 0),
            (2, 0),
            (2, DATE.into()),
            (4, crc),
            (4, len),
            (4, len),
            (2, name.len() as u32),
            (2, 0),
            (2, 0),
            (2, 0),
            (2, 0),
            (4, EXTERNAL),
            (4, (base + placed.header) as u32),
        ] {
            central.extend_from_slice(&u32::to_le_bytes(v)[..field]);
        }
        central.extend_from_slice(name.as_bytes());
    }
    let count = records.len() as u16;
    let central_len = central.len() as u32;
    central.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for half in [0, 0, count, count] {
        central.extend_from_slice(&half.to_le_bytes());
    }
    central.extend_from_slice(&central_len.to_le_bytes());
    central.extend_from_slice(&(central_start as u32).to_le_bytes());
    central.extend_from_slice(&0u16.to_le_bytes());
    out.write_all(&central).map_err(PtError::from)?;

    // The CRC-32 fields of the local headers, now that every hash is known.
    for (((name, _), placed), &crc) in records.iter().zip(&placed).zip(&crcs) {
        out.seek(SeekFrom::Start(base + placed.header + 14))
            .and_then(|_| out.write_all(&crc.to_le_bytes()))
            .map_err(|e| PtError::from(e).in_entry(name))?;
    }
    out.seek(SeekFrom::End(0))
        .and_then(|_| out.flush())
        .map_err(PtError::from)?;
    Ok(true)
}

/// Writes every record's local header (CRC-32 zero) and data, in order, returning the CRC-32s
/// computed here: those of small records and of streamed storages (0 for the others, hashed
/// elsewhere).
fn write_records(
    out: &mut dyn Sink,
    records: &[(String, Body<'_>)],
    placed: &[Placed],
    base: u64,
    value: &Value<'_>,
) -> Result<Vec<u32>, PtError> {
    let mut crcs = Vec::with_capacity(records.len());
    let mut header = Vec::new();
    for ((name, body), placed) in records.iter().zip(placed) {
        let io = |e: io::Error| PtError::from(e).in_entry(name);
        debug_assert_eq!(out.stream_position().ok(), Some(base + placed.header));
        let len = body.len() as u32;
        header.clear();
        for (field, v) in [
            (4, 0x0403_4b50),
            (2, VERSION.into()),
            (2, 0),
            (2, 0),
            (2, 0),
            (2, DATE.into()),
            (4, 0),
            (4, len),
            (4, len),
            (2, name.len() as u32),
            (2, placed.pad.into()),
        ] {
            header.extend_from_slice(&u32::to_le_bytes(v)[..field]);
        }
        header.extend_from_slice(name.as_bytes());
        if placed.pad != 0 {
            header.extend_from_slice(&ALIGNMENT_FIELD.to_le_bytes());
            header.extend_from_slice(&(placed.pad - 4).to_le_bytes());
            header.extend_from_slice(&(ALIGNMENT as u16).to_le_bytes());
            header.resize(header.len() + usize::from(placed.pad) - 6, 0);
        }
        out.write_all(&header).map_err(io)?;
        let crc = match body {
            Body::Bytes(bytes) => {
                out.write_all(bytes).map_err(io)?;
                crc32fast::hash(bytes)
            }
            Body::Storage(view) => match view.le_bytes_in_place() {
                Some(bytes) => {
                    out.write_all(bytes).map_err(io)?;
                    0
                }
                None => {
                    let mut hasher = crc32fast::Hasher::new();
                    let mut written = Ok(());
                    view.stream_le_bytes(&mut |piece| {
                        if written.is_ok() {
                            hasher.update(piece);
                            written = out.write_all(piece);
                        }
                    })
                    .map_err(|e| {
                        let err = PtError::from(PtErrorKind::Device(e)).in_entry(name);
                        match value.key_of(view) {
                            Some(key) => err.under_key(&key),
                            None => err,
                        }
                    })?;
                    written.map_err(io)?;
                    hasher.finalize()
                }
            },
        };
        crcs.push(crc);
    }
    Ok(crcs)
}

/// The CRC-32 of every storage whose bytes lie in memory, by record index: chunks hashed on
/// the current pool's threads, combined in order.
fn hash_in_memory(records: &[(String, Body<'_>)]) -> Vec<(usize, u32)> {
    let lent: Vec<(usize, &[u8])> = records
        .iter()
        .enumerate()
        .filter_map(|(i, (_, body))| match body {
            Body::Storage(view) => Some((i, view.le_bytes_in_place()?)),
            Body::Bytes(_) => None,
        })
        .collect();
    let chunks: Vec<(usize, &[u8])> = lent
        .iter()
        .enumerate()
        .flat_map(|(k, (_, bytes))| bytes.chunks(CHUNK).map(move |chunk| (k, chunk)))
        .collect();
    let hashed: Vec<(usize, crc32fast::Hasher)> = chunks
        .into_par_iter()
        .map(|(k, chunk)| {
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(chunk);
            (k, hasher)
        })
        .collect();
    // In order, so each storage's chunks combine in sequence; an empty storage keeps the
    // CRC-32 of nothing.
    let mut whole = vec![crc32fast::Hasher::new(); lent.len()];
    for (k, hasher) in &hashed {
        whole[*k].combine(hasher);
    }
    lent.iter()
        .zip(whole)
        .map(|((i, _), hasher)| (*i, hasher.finalize()))
        .collect()
}
