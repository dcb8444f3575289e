//! Objects in object stores, through the `object_store` crate: S3 (`s3://`), Google Cloud
//! Storage (`gs://`), Azure (`az://`), plain HTTP(S) for reading, and a store in this
//! process's memory (`memory://`).
//!
//! - `store.rs` builds the store behind a URL from the environment and the options;
//! - `source.rs` reads an object by ranged GETs, at the version it was opened at, and
//!   `fetch.rs` many ranges of it at once, streamed into place;
//! - `upload.rs` streams a format's writes into a multipart upload, in bounded memory, and
//!   commits it whole;
//! - `runtime.rs` runs it all on a private tokio runtime, so ckpt's API stays blocking;
//! - `error.rs` turns the stores' errors into `io::Error`s without secrets.

mod error;
mod fetch;
mod runtime;
mod source;
mod store;
mod upload;

use std::io;
use std::sync::Arc;

pub(crate) use self::source::open;
use self::upload::{Finished, MAX_PARTS, Upload};
use super::commit::{Commit, CommitError};
use super::{ObjectUrl, Sink};

/// Removes the object at `url`, if there is one.
pub(crate) fn remove(url: &ObjectUrl, options: &super::ObjectStoreOptions) -> io::Result<()> {
    use object_store::ObjectStoreExt as _;
    let object = store::object(url, options)?;
    runtime::wait(async move {
        match object.store.delete(&object.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(error::io_error(e, "removing", &object.secrets)),
        }
    })
}

/// What lies directly under the prefix `url` names (a "directory"): the objects, with their
/// sizes, and the next segments of longer names (its sub-directories), each sorted.
pub(crate) fn listing(
    url: &ObjectUrl,
    options: &super::ObjectStoreOptions,
) -> io::Result<super::Listing> {
    let object = store::object(url, options)?;
    runtime::wait(async move {
        let listed = object
            .store
            .list_with_delimiter(Some(&object.path))
            .await
            .map_err(|e| error::io_error(e, "listing", &object.secrets))?;
        let mut files: Vec<(String, u64)> = listed
            .objects
            .iter()
            .filter_map(|meta| Some((meta.location.filename()?.to_owned(), meta.size)))
            .collect();
        let mut dirs: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename().map(str::to_owned))
            .collect();
        files.sort();
        dirs.sort();
        Ok(super::Listing { files, dirs })
    })
}

/// Writes a new object at `url` through `write` and commits it (see `upload.rs`); `write`
/// runs a second time when the format went back into parts already sent.
pub(crate) fn write<E>(
    url: &ObjectUrl,
    commit: &Commit<'_>,
    write: &dyn Fn(&mut dyn Sink) -> Result<(), E>,
) -> Result<(), CommitError<E>> {
    let object = Arc::new(store::object(url, commit.remote).map_err(CommitError::Io)?);
    let multipart = object.multipart.clone().ok_or_else(|| {
        CommitError::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{}:// URLs are read-only", url.scheme()),
        ))
    })?;
    let part_size = part_size(commit);
    let concurrency = commit.remote.effective_upload_concurrency();
    let mut patches = None;
    loop {
        let again = patches.is_some();
        let mut upload = Upload::new(
            Arc::clone(&object),
            Arc::clone(&multipart),
            part_size,
            concurrency,
            patches.take(),
        );
        write(&mut upload).map_err(CommitError::Write)?;
        match upload.finish().map_err(CommitError::Io)? {
            Finished::Committed => return Ok(()),
            Finished::Again(found) if !again => patches = Some(found),
            Finished::Again(_) => {
                return Err(CommitError::Io(io::Error::other(
                    "the format kept writing back into uploaded parts; nothing was saved",
                )));
            }
        }
    }
}

/// The options' part size, or larger for a save that would need more than 9,000 parts (S3
/// allows 10,000; the margin is for what the size hint does not count, such as headers).
fn part_size(commit: &Commit<'_>) -> usize {
    const MIB: u64 = 1 << 20;
    let needed = commit.size_hint.div_ceil(MAX_PARTS as u64 - 1_000);
    let needed = usize::try_from(needed.next_multiple_of(MIB)).unwrap_or(usize::MAX);
    commit.remote.effective_part_size().max(needed)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::SeekFrom;

    use super::*;
    use crate::storage::{Location, ObjectStoreOptions, Source};

    const PART: usize = 5 << 20;

    fn url(name: &str) -> ObjectUrl {
        Location::from(std::path::Path::new(&format!(
            "memory://upload-tests/{name}"
        )))
        .url()
        .unwrap()
        .clone()
    }

    /// Saves through `write`, counting its passes; the object's bytes, or the error.
    fn save(
        name: &str,
        write: &dyn Fn(&mut dyn Sink) -> io::Result<()>,
    ) -> (io::Result<Vec<u8>>, usize) {
        let options = ObjectStoreOptions::new()
            .part_size(PART)
            .upload_concurrency(3);
        let commit = Commit {
            fsync: false,
            remote: &options,
            size_hint: 0,
        };
        let passes = Cell::new(0);
        let result = super::write(&url(name), &commit, &|sink| {
            passes.set(passes.get() + 1);
            write(sink)
        })
        .map_err(|e| match e {
            CommitError::Write(e) | CommitError::Io(e) => e,
        })
        .and_then(|()| {
            let source = open(&url(name), &options)?;
            source.fetch_whole()?;
            Ok(source.backing().unwrap().bytes().to_vec())
        });
        (result, passes.get())
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    #[test]
    fn a_prefix_written_last_costs_one_pass() {
        // ckpt's format: a placeholder prefix, the data, then the prefix over the placeholder.
        let data = pattern(3 * PART + 123, 1);
        let (bytes, passes) = save("prefix", &|sink| {
            sink.write_all(&[0; 64])?;
            sink.write_all(&data)?;
            sink.seek(SeekFrom::Start(0))?;
            sink.write_all(&[7; 64])
        });
        let bytes = bytes.unwrap();
        assert_eq!(passes, 1);
        assert_eq!(&bytes[..64], &[7; 64]);
        assert_eq!(&bytes[64..], &data[..]);
    }

    #[test]
    fn patches_into_sent_parts_take_a_second_pass() {
        // A zip writer: each record's header is filled in after its data.
        let records = [pattern(2 * PART, 2), pattern(100, 3), pattern(PART + 5, 4)];
        let (bytes, passes) = save("zip", &|sink| {
            for record in &records {
                let header = sink.stream_position()?;
                sink.write_all(&[0; 30])?;
                sink.write_all(record)?;
                let end = sink.stream_position()?;
                sink.seek(SeekFrom::Start(header + 14))?;
                sink.write_all(&(record.len() as u32).to_le_bytes())?;
                sink.seek(SeekFrom::Start(end))?;
            }
            sink.write_all(b"end")
        });
        let bytes = bytes.unwrap();
        assert_eq!(passes, 2);
        let mut expected = Vec::new();
        for record in &records {
            let mut header = [0; 30];
            header[14..18].copy_from_slice(&(record.len() as u32).to_le_bytes());
            expected.extend_from_slice(&header);
            expected.extend_from_slice(record);
        }
        expected.extend_from_slice(b"end");
        assert!(bytes == expected);
    }

    #[test]
    fn a_writer_that_changes_its_mind_saves_nothing() {
        let pass = Cell::new(0u8);
        let (bytes, passes) = save("fickle", &|sink| {
            pass.set(pass.get() + 1);
            sink.write_all(&pattern(3 * PART, 5))?;
            sink.seek(SeekFrom::Start(PART as u64 + 10))?; // in a part already sent
            sink.write_all(&[pass.get()])
        });
        assert_eq!(passes, 2);
        let err = bytes.unwrap_err();
        assert!(err.to_string().contains("different bytes"), "{err}");
        let err = open(&url("fickle"), &ObjectStoreOptions::new())
            .err()
            .expect("nothing was saved");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn small_objects_are_one_put_and_gaps_read_as_zeros() {
        let (bytes, passes) = save("small", &|sink| {
            sink.write_all(b"ab")?;
            sink.seek(SeekFrom::Start(5))?;
            sink.write_all(b"c")
        });
        assert_eq!((bytes.unwrap(), passes), (b"ab\0\0\0c".to_vec(), 1));
        let (bytes, _) = save("empty", &|_| Ok(()));
        assert_eq!(bytes.unwrap(), b"");
    }

    #[test]
    fn an_object_replaced_while_it_is_read_is_an_error() {
        let write = |seed: u8| {
            move |sink: &mut dyn Sink| -> io::Result<()> { sink.write_all(&pattern(PART, seed)) }
        };
        let (first, _) = save("replaced", &write(1));
        first.unwrap();
        let options = ObjectStoreOptions::new();
        let source = open(&url("replaced"), &options).unwrap();
        let mut buf = [0; 16];
        source.read_at(100_000, &mut buf).unwrap();
        let (second, _) = save("replaced", &write(2));
        second.unwrap();
        let err = source.read_at(200_000, &mut buf).unwrap_err();
        assert!(
            err.to_string().contains("changed while it was being read"),
            "{err}"
        );
        assert!(source.fetch_whole().is_err());
    }

    #[test]
    fn messages_lose_queries_and_secrets() {
        let url = url("secret?sig=abcdefgh");
        let options = ObjectStoreOptions::new().with("secret_access_key", "hunter2hunter2");
        let secrets = error::Secrets::of(&url, &options);
        let scrubbed = secrets.scrub(
            "Error performing GET https://host/c/m.pt?sv=1&sig=xyz in 1s: hunter2hunter2 sig=abcdefgh",
        );
        assert_eq!(
            scrubbed,
            "Error performing GET https://host/c/m.pt?… in 1s: <redacted> <redacted>"
        );
    }
}
