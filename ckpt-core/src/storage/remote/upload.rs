//! [`Upload`]: a [`Sink`](crate::storage::Sink) that streams what a format writes into a
//! multipart upload, in bounded memory, and commits it whole.
//!
//! Formats write with `Write + Seek`: ckpt's own format writes its 64-byte prefix last (it holds
//! the header's offset and checksum, known only at the end) by seeking back to 0, and the zip
//! writer of `.pt` files goes back to each record's header to fill in its CRC-32 and sizes once
//! the record is written. A multipart upload cannot change a part once sent, so:
//!
//! - **The first part is held back.** Parts may be uploaded in any order (each carries its
//!   number), so part 1, the object's first `part_size` bytes, is uploaded last, after the
//!   format has written its prefix. Everything ckpt's format and safetensors write is then
//!   uploaded once, in one pass.
//! - **The part being filled is sent only when the next one starts**, so a format may still
//!   patch it: a `.pt` record's header lies just before its data.
//! - **Otherwise, two passes.** A write back into a part already sent (a `.pt` record larger
//!   than a part) stops the upload: the rest of the pass only records where the format writes
//!   back (a few bytes each time), the upload is aborted, and the format writes again, now
//!   with every patch applied to each part before it is sent. Formats write the same bytes
//!   each time (ckpt's writers are deterministic), and the second pass checks that it does.
//!
//! Memory: the first part, the one being filled, and at most `upload_concurrency - 2` parts
//! in flight, so a save needs `part_size × upload_concurrency` besides the checkpoint, whatever
//! its size. An object that fits in one part is one PUT.
//!
//! The commit is the upload's completion (or the single PUT): an object store makes the new
//! object visible whole, or not at all, and a reader of the key sees the previous checkpoint
//! until then. An upload that fails is aborted, so its parts do not linger (and cost); one
//! whose process is killed stays incomplete and invisible until the bucket's lifecycle rule
//! for incomplete uploads removes it.

use std::io::{self, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::mpsc;

use object_store::multipart::{MultipartStore, PartId};
use object_store::{MultipartId, PutOptions, PutPayload};

use super::error::io_error;
use super::runtime::{spawn, wait};
use super::store::Object;

/// S3's limit on the parts of one upload.
pub(crate) const MAX_PARTS: usize = 10_000;

/// The writes a first pass made below the end of what it had written: offset and bytes.
pub(crate) type Patches = Vec<(u64, Vec<u8>)>;

/// How an upload ended.
pub(crate) enum Finished {
    /// Committed: the object is there, whole.
    Committed,
    /// Nothing committed: the format went back into parts already sent; write again with
    /// these patches.
    Again(Patches),
}

enum Mode {
    /// Parts go out as they fill; the first waits for the end.
    Stream,
    /// A write went back into a part already sent: nothing more is kept or sent, and writes
    /// below the end are recorded for the second pass.
    Record,
    /// The second pass: the first pass's patches are applied to each part before it is sent.
    Replay(Patches),
}

/// A multipart upload being written.
pub(crate) struct Upload {
    object: Arc<Object>,
    multipart: Arc<dyn MultipartStore>,
    part_size: u64,
    /// How many parts may be uploading at once.
    max_in_flight: usize,
    mode: Mode,
    /// Bytes `0..first.len()` of the object, uploaded last as part 1.
    first: Vec<u8>,
    /// Part `index` (0-based: part `index + 1` in S3's numbering) being filled.
    current: Vec<u8>,
    index: usize,
    pos: u64,
    len: u64,
    /// Every write below `len`, in order.
    overwrites: Patches,
    id: Option<MultipartId>,
    parts: Vec<Option<PartId>>,
    in_flight: usize,
    done: mpsc::Receiver<(usize, io::Result<PartId>)>,
    done_tx: mpsc::Sender<(usize, io::Result<PartId>)>,
    /// The first failure of an upload, reported by every later call.
    failed: Option<(io::ErrorKind, String)>,
}

impl Upload {
    /// An upload to `object` of parts of `part_size` bytes, `concurrency` parts in memory;
    /// `patches` from a first pass, if this is the second.
    pub(crate) fn new(
        object: Arc<Object>,
        multipart: Arc<dyn MultipartStore>,
        part_size: usize,
        concurrency: usize,
        patches: Option<Patches>,
    ) -> Self {
        let (done_tx, done) = mpsc::channel();
        Upload {
            object,
            multipart,
            part_size: part_size as u64,
            max_in_flight: concurrency.saturating_sub(2).max(1),
            mode: patches.map_or(Mode::Stream, Mode::Replay),
            first: Vec::new(),
            current: Vec::new(),
            index: 1,
            pos: 0,
            len: 0,
            overwrites: Vec::new(),
            id: None,
            parts: Vec::new(),
            in_flight: 0,
            done,
            done_tx,
            failed: None,
        }
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    fn fail(&mut self, error: io::Error) -> io::Error {
        if self.failed.is_none() {
            self.failed = Some((error.kind(), error.to_string()));
        }
        error
    }

    /// Where part `index` starts.
    fn start_of(&self, index: usize) -> u64 {
        index as u64 * self.part_size
    }

    /// Writes `data` at `at`, below the end.
    fn overwrite(&mut self, at: u64, data: &[u8]) {
        self.overwrites.push((at, data.to_vec()));
        if matches!(self.mode, Mode::Record) {
            return;
        }
        // The parts still in memory take the bytes that fall in them.
        let current_start = self.start_of(self.index);
        let end = at + data.len() as u64;
        let mut held = 0;
        for (start, part) in [(0, &mut self.first), (current_start, &mut self.current)] {
            let (from, to) = (at.max(start), end.min(start + part.len() as u64));
            if from < to {
                part[(from - start) as usize..(to - start) as usize]
                    .copy_from_slice(&data[(from - at) as usize..(to - at) as usize]);
                held += to - from;
            }
        }
        if held < data.len() as u64 && matches!(self.mode, Mode::Stream) {
            // Some fell in a part already sent: the second pass will apply it. Stop spending
            // memory and bandwidth on this one.
            self.mode = Mode::Record;
            self.first = Vec::new();
            self.current = Vec::new();
        }
    }

    /// Appends `data` at the end.
    fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        if matches!(self.mode, Mode::Record) {
            self.len += data.len() as u64;
            return Ok(());
        }
        while !data.is_empty() {
            let taken = if self.len < self.part_size {
                let room = (self.part_size - self.len) as usize;
                let n = room.min(data.len());
                if self.first.capacity() < self.first.len() + n {
                    let want = (self.first.len() + n).max(self.first.capacity() * 2);
                    self.first
                        .reserve_exact(want.min(self.part_size as usize) - self.first.len());
                }
                self.first.extend_from_slice(&data[..n]);
                n
            } else {
                if self.current.len() as u64 == self.part_size {
                    self.send_current()?;
                    self.index += 1;
                }
                if self.current.capacity() == 0 {
                    self.current = Vec::with_capacity(self.part_size as usize);
                }
                let room = self.part_size as usize - self.current.len();
                let n = room.min(data.len());
                self.current.extend_from_slice(&data[..n]);
                n
            };
            self.len += taken as u64;
            data = &data[taken..];
        }
        Ok(())
    }

    /// Applies the first pass's patches to `part`, which starts at `start`.
    fn patch(&self, start: u64, part: &mut [u8]) {
        let Mode::Replay(patches) = &self.mode else {
            return;
        };
        let end = start + part.len() as u64;
        for (at, bytes) in patches {
            let (at, patch_end) = (*at, *at + bytes.len() as u64);
            if patch_end <= start || at >= end {
                continue;
            }
            let from = at.max(start);
            let to = patch_end.min(end);
            part[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&bytes[(from - at) as usize..(to - at) as usize]);
        }
    }

    /// Starts the upload, if not yet started.
    fn upload_id(&mut self) -> io::Result<MultipartId> {
        if let Some(id) = &self.id {
            return Ok(id.clone());
        }
        let object = Arc::clone(&self.object);
        let multipart = Arc::clone(&self.multipart);
        let id = wait(async move {
            multipart
                .create_multipart(&object.path)
                .await
                .map_err(|e| io_error(e, "starting the upload", &object.secrets))
        })
        .map_err(|e| self.fail(e))?;
        self.id = Some(id.clone());
        Ok(id)
    }

    /// Uploads the part being filled.
    fn send_current(&mut self) -> io::Result<()> {
        let mut part = std::mem::take(&mut self.current);
        self.patch(self.start_of(self.index), &mut part);
        self.send(self.index, part)
    }

    /// Uploads `part` as part `index`, once fewer than `max_in_flight` are uploading.
    fn send(&mut self, index: usize, part: Vec<u8>) -> io::Result<()> {
        if index >= MAX_PARTS {
            return Err(self.fail(io::Error::other(format!(
                "more than {MAX_PARTS} parts of {} bytes: raise ObjectStoreOptions::part_size",
                self.part_size
            ))));
        }
        let id = self.upload_id()?;
        while self.in_flight >= self.max_in_flight {
            self.receive()?;
        }
        let (object, multipart, done) = (
            Arc::clone(&self.object),
            Arc::clone(&self.multipart),
            self.done_tx.clone(),
        );
        spawn(async move {
            let result = multipart
                .put_part(&object.path, &id, index, PutPayload::from(part))
                .await
                .map_err(|e| {
                    io_error(e, &format!("uploading part {}", index + 1), &object.secrets)
                });
            let _ = done.send((index, result));
        })
        .map_err(|e| self.fail(e))?;
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for one part to finish uploading.
    fn receive(&mut self) -> io::Result<()> {
        let (index, result) = self
            .done
            .recv()
            .map_err(|_| io::Error::other("an upload task ended without a word"))?;
        self.in_flight -= 1;
        let part = result.map_err(|e| self.fail(e))?;
        if self.parts.len() <= index {
            self.parts.resize(index + 1, None);
        }
        self.parts[index] = Some(part);
        Ok(())
    }

    /// Commits the object, or says that the format must write again.
    pub(crate) fn finish(mut self) -> io::Result<Finished> {
        self.check()?;
        let result = self.commit();
        if result.is_err() {
            self.abort();
        }
        result
    }

    fn commit(&mut self) -> io::Result<Finished> {
        match &self.mode {
            Mode::Record => {
                self.abort();
                return Ok(Finished::Again(std::mem::take(&mut self.overwrites)));
            }
            Mode::Replay(patches) if *patches != self.overwrites => {
                return Err(io::Error::other(
                    "the format wrote different bytes on its second pass; nothing was saved",
                ));
            }
            _ => {}
        }
        let mut first = std::mem::take(&mut self.first);
        self.patch(0, &mut first);
        if self.len <= self.part_size {
            let object = Arc::clone(&self.object);
            wait(async move {
                object
                    .store
                    .put_opts(&object.path, PutPayload::from(first), PutOptions::default())
                    .await
                    .map_err(|e| io_error(e, "uploading", &object.secrets))
            })?;
            return Ok(Finished::Committed);
        }
        self.send_current()?;
        self.send(0, first)?;
        while self.in_flight > 0 {
            self.receive()?;
        }
        let parts = self
            .parts
            .iter()
            .cloned()
            .collect::<Option<Vec<PartId>>>()
            .ok_or_else(|| io::Error::other("a part of the upload is missing"))?;
        let id = self.upload_id()?;
        let (object, multipart) = (Arc::clone(&self.object), Arc::clone(&self.multipart));
        wait(async move {
            multipart
                .complete_multipart(&object.path, &id, parts)
                .await
                .map_err(|e| io_error(e, "completing the upload", &object.secrets))
        })?;
        self.id = None;
        Ok(Finished::Committed)
    }

    /// Gives up the upload: waits for the parts in flight, then aborts it, so that none of
    /// its parts are kept. Best effort: a store that cannot be reached keeps them until its
    /// lifecycle rule for incomplete uploads removes them.
    fn abort(&mut self) {
        while self.in_flight > 0 {
            if self.done.recv().is_err() {
                break;
            }
            self.in_flight -= 1;
        }
        let Some(id) = self.id.take() else {
            return;
        };
        let (object, multipart) = (Arc::clone(&self.object), Arc::clone(&self.multipart));
        let _ = wait(async move {
            multipart
                .abort_multipart(&object.path, &id)
                .await
                .map_err(|e| io_error(e, "aborting the upload", &object.secrets))
        });
    }
}

impl Drop for Upload {
    /// An upload dropped before it finished (the format failed) is aborted.
    fn drop(&mut self) {
        self.abort();
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        if self.pos > self.len {
            // A seek past the end: the gap reads as zeros, as in a file.
            let gap = vec![0; (self.pos - self.len) as usize];
            self.append(&gap)?;
        }
        let below = ((self.len - self.pos) as usize).min(buf.len());
        if below > 0 {
            self.overwrite(self.pos, &buf[..below]);
        }
        self.append(&buf[below..])?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()
    }
}

impl Seek for Upload {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(by) => self.len.checked_add_signed(by),
            SeekFrom::Current(by) => self.pos.checked_add_signed(by),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}
