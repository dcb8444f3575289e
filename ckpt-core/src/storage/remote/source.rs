//! [`RemoteSource`]: an object in a store, read by ranged GETs.
//!
//! Opening costs one request: a GET of the first 4 KiB, whose answer also gives the object's
//! length and version (its `ETag`). Formats then ask for what they need: ckpt's format its
//! prefix (in those 4 KiB) and its header (one more GET at the end of the object),
//! safetensors its header (in those 4 KiB unless it is longer), a `.pt` file its zip's end
//! records, central directory and pickle. Small reads fetch 4 KiB and keep it, as formats
//! (and the zip crate) read small records piece by piece. Every later GET is conditional on
//! the version opened (`If-Match`), so an object replaced while it is read is an error, never
//! a mix of two checkpoints.
//!
//! Tensor data is fetched by [`Source::read_ranges`] (the tensors a load into a model needs)
//! or [`Source::fetch_whole`] (a whole load), in as many ranged GETs at once as the store
//! answers fastest with (see `fetch.rs`).

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use object_store::{GetOptions, GetRange, ObjectMeta};

use super::error::io_error;
use super::fetch::{self, Version};
use super::runtime::wait;
use super::store::{self, Object};
use crate::storage::{Lent, Location, ObjectStoreOptions, ObjectUrl, Source};
use crate::tensor::Backing;

/// What a small read fetches, and what opening fetches first.
const READ_AHEAD: u64 = 4 << 10;
/// The largest read kept for later reads (a zip's central directory, read twice).
const KEEP_MAX: usize = 1 << 20;
/// The most bytes kept for later reads.
const KEPT_MAX: usize = 8 << 20;

/// An object in a store, opened at one version.
pub(crate) struct RemoteSource {
    location: Location,
    object: Arc<Object>,
    len: u64,
    /// The version opened, which every later GET must still find.
    e_tag: Option<String>,
    version: Option<String>,
    concurrency: usize,
    chunk: u64,
    /// Small reads' bytes, by offset, oldest first.
    kept: Mutex<VecDeque<(u64, Bytes)>>,
    /// The whole object, once [`Source::fetch_whole`] fetched it.
    whole: OnceLock<Arc<Vec<u8>>>,
}

/// Opens the object at `url`: its length, version and first bytes, in one request.
pub(crate) fn open(url: &ObjectUrl, options: &ObjectStoreOptions) -> io::Result<RemoteSource> {
    let object = Arc::new(store::object(url, options)?);
    let first = {
        let object = Arc::clone(&object);
        wait(async move {
            let options = GetOptions {
                range: Some(GetRange::Bounded(0..READ_AHEAD)),
                ..GetOptions::default()
            };
            get(&object, options).await
        })
    };
    let (meta, kept) = match first {
        Ok((meta, bytes)) => (meta, VecDeque::from([(0, bytes)])),
        // An empty object has no byte 0 to GET; its HEAD says so, or says what else is wrong.
        Err(e)
            if !matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            let object = Arc::clone(&object);
            let meta = wait(async move {
                let head = GetOptions {
                    head: true,
                    ..GetOptions::default()
                };
                object
                    .store
                    .get_opts(&object.path, head)
                    .await
                    .map(|r| r.meta)
                    .map_err(|e| io_error(e, "opening", &object.secrets))
            })?;
            (meta, VecDeque::new())
        }
        Err(e) => return Err(e),
    };
    Ok(RemoteSource {
        location: Location::Url(url.clone()),
        object,
        len: meta.size,
        e_tag: meta.e_tag,
        version: meta.version,
        concurrency: options.download_concurrency.max(1),
        chunk: options.download_chunk.max(64 << 10) as u64,
        kept: Mutex::new(kept),
        whole: OnceLock::new(),
    })
}

/// GETs `options` of `object`: the object's metadata and the bytes.
async fn get(object: &Object, options: GetOptions) -> io::Result<(ObjectMeta, Bytes)> {
    let doing = match &options.range {
        Some(GetRange::Bounded(r)) => format!("reading bytes {}..{}", r.start, r.end),
        _ => "reading".to_owned(),
    };
    let error = |e| io_error(e, &doing, &object.secrets);
    let result = object
        .store
        .get_opts(&object.path, options)
        .await
        .map_err(error)?;
    let meta = result.meta.clone();
    let bytes = result.bytes().await.map_err(error)?;
    Ok((meta, bytes))
}

impl RemoteSource {
    /// GETs `range`, which lies within the object, at the version opened.
    async fn fetch(
        object: Arc<Object>,
        conditions: (Option<String>, Option<String>),
        range: Range<u64>,
    ) -> io::Result<Bytes> {
        let expected = range.end - range.start;
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            if_match: conditions.0,
            version: conditions.1,
            ..GetOptions::default()
        };
        let (_, bytes) = get(&object, options).await?;
        if bytes.len() as u64 != expected {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "reading bytes {}..{}: the store sent {} bytes for {expected}",
                    range.start,
                    range.end,
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }

    fn conditions(&self) -> Version {
        (self.e_tag.clone(), self.version.clone())
    }

    /// Copies `buf.len()` bytes at `offset` out of what small reads kept, if they are there.
    fn read_kept(&self, offset: u64, buf: &mut [u8]) -> bool {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let end = offset + buf.len() as u64;
        kept.iter().any(|(start, bytes)| {
            let covers = *start <= offset && end <= start + bytes.len() as u64;
            if covers {
                let from = (offset - start) as usize;
                buf.copy_from_slice(&bytes[from..from + buf.len()]);
            }
            covers
        })
    }

    /// Fetches `ranges`, several GETs in flight (see `fetch.rs`), each into a buffer.
    fn fetch_ranges(&self, ranges: &[Range<u64>]) -> io::Result<Vec<Vec<u8>>> {
        for range in ranges {
            if range.start > range.end || range.end > self.len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "bytes {}..{} lie beyond the end ({} bytes)",
                        range.start, range.end, self.len
                    ),
                ));
            }
            if usize::try_from(range.end - range.start).is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "range larger than memory",
                ));
            }
        }
        wait(fetch::ranges(
            Arc::clone(&self.object),
            self.conditions(),
            ranges.to_vec(),
            self.concurrency,
            self.chunk,
        ))
    }

    fn keep(&self, offset: u64, bytes: Bytes) {
        if bytes.len() > KEEP_MAX {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.push_back((offset, bytes));
        let mut total: usize = kept.iter().map(|(_, b)| b.len()).sum();
        while total > KEPT_MAX {
            let Some((_, oldest)) = kept.pop_front() else {
                break;
            };
            total -= oldest.len();
        }
    }
}

impl Source for RemoteSource {
    fn location(&self) -> &Location {
        &self.location
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&end| end <= self.len)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} bytes at offset {offset} run past the end ({} bytes)",
                        buf.len(),
                        self.len
                    ),
                )
            })?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(whole) = self.whole.get() {
            buf.copy_from_slice(&whole[offset as usize..end as usize]);
            return Ok(());
        }
        if self.read_kept(offset, buf) {
            return Ok(());
        }
        let fetch_end = if end - offset < READ_AHEAD {
            (offset + READ_AHEAD).min(self.len)
        } else {
            end
        };
        let object = Arc::clone(&self.object);
        let conditions = self.conditions();
        let bytes = wait(Self::fetch(object, conditions, offset..fetch_end))?;
        buf.copy_from_slice(&bytes[..buf.len()]);
        self.keep(offset, bytes);
        Ok(())
    }

    fn backing(&self) -> Option<Arc<dyn Backing>> {
        self.whole
            .get()
            .map(|whole| Arc::clone(whole) as Arc<dyn Backing>)
    }

    /// Fetches the ranges several at once (see `fetch_ranges`), each into a buffer of its own.
    fn read_ranges(&self, ranges: &[Range<u64>]) -> io::Result<Vec<Lent>> {
        if self.whole.get().is_some() {
            return ranges
                .iter()
                .map(|r| crate::storage::shared(self, r.clone()))
                .collect();
        }
        Ok(self
            .fetch_ranges(ranges)?
            .into_iter()
            .map(|bytes| {
                let len = bytes.len();
                (Arc::new(bytes) as Arc<dyn Backing>, 0..len)
            })
            .collect())
    }

    fn fetch_whole(&self) -> io::Result<()> {
        if self.whole.get().is_some() {
            return Ok(());
        }
        let all = 0..self.len;
        let whole = self
            .fetch_ranges(std::slice::from_ref(&all))?
            .pop()
            .unwrap_or_default();
        let _ = self.whole.set(Arc::new(whole));
        Ok(())
    }
}
