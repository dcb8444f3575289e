//! PyTorch `.pt` files ([`PyTorch`]): what `torch.save` writes (the zip format of PyTorch 1.6
//! and later, and the legacy format before it) read, and files that
//! `torch.load(path, weights_only=True)` reads written.
//!
//! Reading is safe on untrusted files: the unpickler implements PyTorch's `weights_only=True`
//! allow-list and executes nothing, every length and tensor view is checked against the data
//! present, and zip records' CRC-32 checksums are verified (PyTorch does not), so a damaged file
//! is an error naming the damaged record rather than silently wrong weights.
//!
//! ```
//! # use ckpt_core as ckpt;
//! use ckpt::format::{Format, PyTorch};
//! use ckpt::{Checkpoint, LoadOptions, Tensor, dict};
//!
//! let weight = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let checkpoint = dict! { "epoch" => 3, "model" => dict! { "fc.weight" => &weight } };
//!
//! let mut file = std::io::Cursor::new(Vec::new());
//! PyTorch.write(&checkpoint, &mut file)?;
//! let loaded = Checkpoint::from_bytes(file.into_inner(), &LoadOptions::new())?;
//! assert_eq!(loaded.value(), &checkpoint);
//!
//! // A pickle that would run a shell command is refused, by name.
//! let hostile = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.".to_vec();
//! let err = Checkpoint::from_bytes(hostile, &LoadOptions::new()).unwrap_err();
//! assert!(err.to_string().contains("GLOBAL os.system was not an allowed global"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod archive;
pub(crate) mod budget;
mod error;
mod globals;
mod legacy;
pub(crate) mod opcode;
mod pickle;
mod rebuild;
mod stored;
mod unpickle;
mod write;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use rayon::iter::{IntoParallelIterator, ParallelIterator};

use self::archive::Archive;
use self::budget::Budget;
use self::error::truncated;
pub use self::error::{PtError, PtErrorKind};
use self::rebuild::Storage;
use self::unpickle::{Dialect, Obj, Pickle, StorageRef, unpickle_in};
use super::{Format, FormatError, FormatErrorKind, Header, Opened};
use crate::dtype::DType;
use crate::storage::{self, Sink, Source};
use crate::tensor::Backing;
use crate::value::Value;

/// PyTorch's `torch.save` format (`.pt`, `.pth`, `.bin`), zip or legacy, read through a
/// restricted unpickler that runs no code.
#[derive(Clone, Copy, Debug, Default)]
pub struct PyTorch;

/// The format's name.
pub(crate) const NAME: &str = "pytorch";

const ZIP: &[u8] = b"PK\x03\x04";

impl Format for PyTorch {
    fn name(&self) -> &'static str {
        NAME
    }

    fn extensions(&self) -> &'static [&'static str] {
        &["pt", "pth", "bin"]
    }

    /// A zip archive (`torch.save` since 1.6) or a pickle (the legacy format).
    fn detect(&self, head: &[u8], _: u64) -> bool {
        head.starts_with(ZIP) || head.first() == Some(&opcode::PROTO)
    }

    fn checksums(&self) -> Option<&'static str> {
        Some("CRC-32 of every zip record")
    }

    fn open(&self, source: Arc<dyn Source>) -> Result<Box<dyn Opened>, FormatError> {
        let location = source.location().clone();
        Ok(Box::new(open(source).map_err(|e| e.in_file(&location))?))
    }

    /// Writes `value` in PyTorch's zip format, which `torch.load` reads with
    /// `weights_only=True`.
    ///
    /// Maps whose keys are all strings become `collections.OrderedDict`s (as a `state_dict()`
    /// is), others plain dicts; lists become lists. Each storage is stored uncompressed and
    /// aligned to 64 bytes, and tensors that share their data (same memory, shape and strides)
    /// are written once and load as one tensor. The output is deterministic: the same value
    /// gives the same bytes.
    fn write(&self, value: &Value<'_>, sink: &mut dyn Sink) -> Result<(), FormatError> {
        write::write(value, sink).map_err(|e| FormatError::writing(NAME, FormatErrorKind::from(e)))
    }
}

/// A `.pt` file whose data pickle has been read and whose storages have been found.
struct PtOpened {
    source: Arc<dyn Source>,
    pickle: Pickle,
    /// Where each storage's bytes lie in the file, in the pickle's storage order.
    storages: Vec<StorageAt>,
    big_endian: bool,
    /// What errors about the pickle name: `archive/data.pkl`, `data pickle`.
    pickle_entry: String,
    header: Header,
    /// What reading the value may still spend, after the pickle and the header.
    budget: Budget,
    /// A damaged record found while opening (the pickle's own CRC-32 did not match), reported
    /// by [`verify`](Opened::verify): a load that does not verify goes on, as PyTorch would.
    damage: Option<(String, u32, u32)>,
}

/// Where one storage's bytes are.
struct StorageAt {
    range: Range<u64>,
    /// The zip record's CRC-32; legacy files have none.
    crc32: Option<u32>,
    /// The zip record or part of a legacy file, for messages.
    entry: String,
    /// The keys of the tensors that use it, for messages.
    tensors: Vec<String>,
}

/// Opens one item of a PyTorch Distributed Checkpoint: a whole `torch.save` zip archive, as
/// `.pt` files are, whose pickle may also hold an `io.BytesIO` (read as its bytes).
pub(crate) fn open_dcp_item(source: Arc<dyn Source>) -> Result<Box<dyn Opened>, FormatError> {
    let location = source.location().clone();
    let opened = open_zip(source, Dialect::DcpItem).map_err(|e| e.in_file(&location))?;
    Ok(Box::new(opened))
}

/// Where the tensor one DCP item holds lies in the item, when it lies there as the elements
/// of a tensor of `dtype` and `shape` in C order, little-endian: the bytes `range`. A reader
/// that needs part of the tensor reads only the ranges of that part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ItemTensor {
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    pub(crate) range: Range<u64>,
}

/// [`open_dcp_item`], and where its tensor lies when the item is a tensor stored as DCP (and
/// ckpt) store them: the pickle's root a tensor, C-contiguous in its storage, in little-endian
/// order, without conj or neg bits. `None` for any other item, which is read whole.
pub(crate) fn open_dcp_tensor(
    source: Arc<dyn Source>,
) -> Result<(Box<dyn Opened>, Option<ItemTensor>), FormatError> {
    let location = source.location().clone();
    let opened = open_zip(source, Dialect::DcpItem).map_err(|e| e.in_file(&location))?;
    let tensor = match opened.pickle.obj(opened.pickle.root) {
        Obj::Tensor(spec) => 'tensor: {
            let (Some(storage), Some(at)) = (
                opened.pickle.storages.get(spec.storage),
                opened.storages.get(spec.storage),
            ) else {
                break 'tensor None;
            };
            let item = storage.dtype.size_in_bytes() as u64;
            let little = !opened.big_endian || storage.dtype.size_in_bytes() == 1;
            let elements = rebuild::contiguous_elements(storage, spec).map_err(|message| {
                opened.error(PtError::from(PtErrorKind::Tensor {
                    key: storage.key.clone(),
                    message,
                }))
            })?;
            elements.filter(|_| little).map(|(shape, elements)| {
                let start = at.range.start;
                ItemTensor {
                    dtype: storage.dtype,
                    shape,
                    range: start + elements.start * item..start + elements.end * item,
                }
            })
        }
        _ => None,
    };
    Ok((Box::new(opened), tensor))
}

fn open(source: Arc<dyn Source>) -> Result<PtOpened, PtError> {
    let mut head = [0u8; 4];
    let head_len = source.len().min(4) as usize;
    source.read_at(0, &mut head[..head_len])?;
    let head = &head[..head_len];
    if head.starts_with(ZIP) {
        open_zip(source, Dialect::WeightsOnly)
    } else if head.first() == Some(&opcode::PROTO) {
        open_legacy(source)
    } else if head.is_empty() || ZIP.starts_with(head) {
        Err(truncated(format!(
            "the file has only {} bytes",
            source.len()
        )))
    } else {
        Err(PtErrorKind::NotPyTorch {
            reason: format!("starts with {head:02x?}, neither a zip archive nor a pickle"),
        }
        .into())
    }
}

fn open_zip(source: Arc<dyn Source>, dialect: Dialect) -> Result<PtOpened, PtError> {
    let mut budget = Budget::for_file(source.len());
    let archive = Archive::open(&source, &mut budget)?;
    let mut damage = None;
    let mut record = |name: &str| -> Result<Option<(&archive::Record, Vec<u8>)>, PtError> {
        let Some(record) = archive.get(name) else {
            return Ok(None);
        };
        let bytes = storage::read_range(&*source, record.start..record.start + record.len)
            .map_err(|e| PtError::from(e).in_entry(&record.name))?;
        let actual = crc32fast::hash(&bytes);
        if actual != record.crc32 && damage.is_none() {
            damage = Some((record.name.clone(), record.crc32, actual));
        }
        Ok(Some((record, bytes)))
    };
    let pkl_name = format!("{}/data.pkl", archive.prefix);
    let (_, pkl) = record("data.pkl")?.ok_or_else(|| {
        PtError::from(PtErrorKind::MissingRecord {
            name: pkl_name.clone(),
        })
    })?;
    // Files from before the record existed are little-endian, as PyTorch assumes.
    let big_endian = match record("byteorder")? {
        None => false,
        Some((_, order)) if order == b"little" => false,
        Some((_, order)) if order == b"big" => true,
        Some((record, other)) => {
            let found = String::from_utf8_lossy(&other).into_owned();
            return Err(PtError::from(PtErrorKind::ByteOrder { found }).in_entry(&record.name));
        }
    };
    // A damaged pickle is reported as damaged, rather than as what the damage made of it.
    let crc_error = |damage: &Option<(String, u32, u32)>| {
        damage.as_ref().map(|(name, expected, actual)| {
            PtError::from(PtErrorKind::Crc {
                expected: *expected,
                actual: *actual,
            })
            .in_entry(name)
        })
    };
    let pickle = match unpickle_in(&pkl, &mut budget, dialect) {
        Ok(pickle) => pickle,
        Err(e) => return Err(crc_error(&damage).unwrap_or_else(|| e.in_entry(&pkl_name))),
    };
    let storages = pickle
        .storages
        .iter()
        .map(|storage| {
            let name = format!("data/{}", storage.key);
            let record = archive.get(&name).ok_or_else(|| {
                PtError::from(PtErrorKind::MissingRecord {
                    name: format!("{}/{name}", archive.prefix),
                })
            })?;
            check_storage_len(storage, record.len).map_err(|e| e.in_entry(&record.name))?;
            Ok(StorageAt {
                range: record.start..record.start + record.len,
                crc32: Some(record.crc32),
                entry: record.name.clone(),
                tensors: Vec::new(),
            })
        })
        .collect::<Result<_, PtError>>()?;
    finish(
        source, pickle, storages, big_endian, pkl_name, budget, damage,
    )
}

fn open_legacy(source: Arc<dyn Source>) -> Result<PtOpened, PtError> {
    // Five pickles and the storages back to back: the whole file is read, in place where the
    // source holds it in memory.
    let mut budget = Budget::for_file(source.len());
    let (backing, range) = storage::shared(&*source, 0..source.len())?;
    let parsed = legacy::parse(&backing.bytes()[range], &mut budget)?;
    let storages = parsed
        .pickle
        .storages
        .iter()
        .zip(&parsed.storages)
        .map(|(storage, range)| StorageAt {
            range: range.start as u64..range.end as u64,
            crc32: None,
            entry: format!("storage {}", storage.key),
            tensors: Vec::new(),
        })
        .collect();
    let entry = "data pickle".to_owned();
    finish(
        source,
        parsed.pickle,
        storages,
        parsed.big_endian,
        entry,
        budget,
        None,
    )
}

/// Describes the contents from the pickle alone, checking every tensor's shape.
fn finish(
    source: Arc<dyn Source>,
    pickle: Pickle,
    mut storages: Vec<StorageAt>,
    big_endian: bool,
    pickle_entry: String,
    mut budget: Budget,
    damage: Option<(String, u32, u32)>,
) -> Result<PtOpened, PtError> {
    let (tensors, values, users) =
        rebuild::describe(&pickle, &mut budget).map_err(|e| e.in_entry(&pickle_entry))?;
    for (at, users) in storages.iter_mut().zip(users) {
        at.tensors = users;
    }
    Ok(PtOpened {
        source,
        pickle,
        storages,
        big_endian,
        pickle_entry,
        header: Header {
            format: NAME,
            tensors,
            values,
        },
        budget,
        damage,
    })
}

impl PtOpened {
    fn error(&self, e: PtError) -> FormatError {
        e.in_file(self.source.location())
    }

    /// Checks the CRC-32 of each of `records`, their chunks hashed in parallel; of several
    /// damaged records, the first is reported, whatever the number of threads.
    fn check_crcs(&self, records: &[(&StorageAt, u32)], release: bool) -> Result<(), FormatError> {
        let lent = records
            .iter()
            .map(|(at, _)| {
                storage::shared(&*self.source, at.range.clone())
                    .map_err(|e| self.error(PtError::from(e).in_entry(&at.entry)))
            })
            .collect::<Result<Vec<_>, FormatError>>()?;
        let chunks: Vec<(usize, &[u8], &Arc<dyn Backing>)> = lent
            .iter()
            .enumerate()
            .flat_map(|(i, (backing, range))| {
                let bytes = &backing.bytes()[range.clone()];
                bytes.chunks(CHUNK).map(move |chunk| (i, chunk, backing))
            })
            .collect();
        let hashed: Vec<(usize, crc32fast::Hasher)> = chunks
            .into_par_iter()
            .map(|(i, chunk, backing)| {
                backing.prefetch(chunk);
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(chunk);
                if release {
                    backing.release(chunk);
                }
                (i, hasher)
            })
            .collect();
        // In file order, so each record's chunks combine in sequence; an empty record keeps
        // the CRC-32 of nothing.
        let mut whole = vec![crc32fast::Hasher::new(); records.len()];
        for (i, hasher) in &hashed {
            whole[*i].combine(hasher);
        }
        for ((at, expected), hasher) in records.iter().zip(whole) {
            let (expected, actual) = (*expected, hasher.finalize());
            if actual != expected {
                return Err(self.error(
                    PtError::from(PtErrorKind::Crc { expected, actual })
                        .in_entry(&at.entry)
                        .of_tensors(&at.tensors),
                ));
            }
        }
        Ok(())
    }
}

impl Opened for PtOpened {
    fn header(&self) -> Header {
        self.header.clone()
    }

    fn verify(&self, release: bool) -> Result<(), FormatError> {
        if let Some((name, expected, actual)) = &self.damage {
            let error = PtError::from(PtErrorKind::Crc {
                expected: *expected,
                actual: *actual,
            });
            return Err(self.error(error.in_entry(name)));
        }
        // Every record is cut into chunks hashed on the threads of the current rayon pool, so
        // one huge storage spreads too; CRC-32s of consecutive chunks combine into the record's.
        // A source that does not hold the file in memory is read a record at a time, as before.
        let checked: Vec<(&StorageAt, u32)> = self
            .storages
            .iter()
            .filter_map(|at| Some((at, at.crc32?)))
            .collect();
        let batch = if self.source.backing().is_some() {
            checked.len().max(1)
        } else {
            1
        };
        checked
            .chunks(batch)
            .try_for_each(|records| self.check_crcs(records, release))
    }

    fn value(&self) -> Result<Value<'static>, FormatError> {
        let held = self
            .storages
            .iter()
            .map(|at| {
                storage::shared(&*self.source, at.range.clone())
                    .map_err(|e| self.error(PtError::from(e).in_entry(&at.entry)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let storages: Vec<Storage<'_>> = held
            .iter()
            .zip(&self.pickle.storages)
            .map(|((backing, range), storage)| {
                // A complex number is two floats, each in the file's byte order.
                let unit =
                    storage.dtype.size_in_bytes() / if storage.dtype.is_complex() { 2 } else { 1 };
                let bytes =
                    rebuild::little_endian(&backing.bytes()[range.clone()], unit, self.big_endian);
                let backing = matches!(bytes, Cow::Borrowed(_)).then(|| Arc::clone(backing));
                Storage { bytes, backing }
            })
            .collect();
        rebuild::to_value(&self.pickle, &storages, self.budget.clone())
            .map_err(|e| self.error(e.in_entry(&self.pickle_entry)))
    }
}

/// Chunk size for checking CRCs, small enough to release pages as we go.
const CHUNK: usize = 1 << 20;

/// Checks a storage's bytes against the element count the pickle gives it.
fn check_storage_len(storage: &StorageRef, actual: u64) -> Result<(), PtError> {
    let item = storage.dtype.size_in_bytes() as u64;
    let expected = storage.numel.checked_mul(item);
    if expected == Some(actual) {
        return Ok(());
    }
    Err(PtErrorKind::StorageLength {
        key: storage.key.clone(),
        dtype: storage.dtype,
        numel: storage.numel,
        expected: expected.unwrap_or(u64::MAX),
        actual,
    }
    .into())
}
