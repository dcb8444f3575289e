//! [`save`]: every rank writes its data file and manifest, then the coordinator checks them
//! all and writes the commit marker last.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use indexmap::IndexMap;
use xxhash_rust::xxh3::xxh3_64;

use super::manifest::{
    self, Entry, MANIFEST_FORMAT, MARKER, METADATA_FORMAT, Manifest, Metadata, Stored, VERSION,
    write_small,
};
use super::tiles::Tiles;
use super::{Error, Job, attempt, index};
use crate::file::SaveOptions;
use crate::format::{Format, Native};
use crate::shard::Chunk;
use crate::state::TensorMap;
use crate::storage::atomic::{Commit, CommitError, write_atomically};
use crate::storage::{self, Location};
use crate::tensor::TensorView;
use crate::value::{Key, Value};

/// Saves this rank's part of a sharded checkpoint into the directory `dir` (made if
/// missing), which every rank of the job names: its [`Sharded`](crate::shard::Sharded)
/// tensors' parts, and, on rank 0, the whole (replicated) tensors. Returns once the
/// checkpoint is committed, on every rank.
///
/// Each rank writes `rank-{r}.ckpt` (ckpt's format) and `rank-{r}.manifest.json` (keys,
/// global shapes, chunks, dtypes, byte offsets, checksums of every block), each atomically;
/// then rank 0 checks every rank's manifest (one dtype and global shape per tensor, chunks
/// that tile it exactly) and writes `checkpoint.json` last. A directory without it is no
/// checkpoint: loads refuse it as incomplete, naming the ranks present and missing.
///
/// Save each checkpoint into a new directory (the step in its name): one that already holds
/// a complete checkpoint is refused. One left incomplete by a killed job can be saved into
/// again as it is: rank 0 names every save with a nonce (`save.json`) that every manifest
/// carries, and counts only the manifests of this save as votes, never those the killed one
/// left. Two jobs saving into one directory at once (a rank of a killed job still running
/// when the next job saves there) are told apart only by their run ids
/// ([`Job::run_id`](super::Job::run_id)): give one.
pub fn save(
    state: &TensorMap<'_>,
    dir: impl AsRef<Path>,
    job: &Job<'_>,
    options: &SaveOptions,
) -> Result<(), Error> {
    job.check()?;
    let dir = Location::from(dir.as_ref());
    if let Some(problem) = state.defect() {
        return Err(Error::State {
            dir,
            key: None,
            problem,
        });
    }
    storage::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    let marker = dir.child(MARKER);
    if storage::dir::exists(&marker, &options.object_store).map_err(|e| Error::io(&marker, e))? {
        return Err(Error::Exists { dir });
    }

    // Rank 0 names this save before any vote can count (see `attempt`).
    let save = attempt::begin(&dir, job, options)?;
    let (entries, items) = plan(state, &dir, job.rank)?;
    let data_file = manifest::data_name(job.rank);
    let data = dir.child(&data_file);
    let (entries, data_len) = write_data(&data, entries, &items, job, options)?;
    // A rank that began before rank 0 votes for the save it names by now, if any.
    let save = match save {
        Some(save) => save,
        None => attempt::current(&dir, job, &options.object_store)?.unwrap_or_default(),
    };
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        version: VERSION,
        rank: job.rank,
        world_size: job.world_size,
        run: job.run,
        save,
        data_file,
        data_len,
        block_size: job.block_size,
        entries,
    };
    let bytes = vote(&dir, &manifest, options)?;

    match job.coordinator {
        Some(coordinator) => {
            let all = coordinator.all_gather(&bytes)?;
            // Every rank checks what was gathered, so that all of them fail alike.
            check_votes(&dir, &all, &manifest)?;
            if job.rank == 0 {
                commit(&dir, job.world_size, &manifest.save, &all, options)?;
            }
            coordinator.barrier()?;
            match manifest::read_small(&marker, &options.object_store)? {
                Some(bytes) => committed(&marker, &bytes, &manifest.save),
                None => Err(Error::NotCommitted {
                    dir,
                    waited: Default::default(),
                }),
            }
        }
        None if job.rank == 0 => {
            let all = gather_votes(&dir, job, &manifest.save, options)?;
            check_votes(&dir, &all, &manifest)?;
            commit(&dir, job.world_size, &manifest.save, &all, options)
        }
        None => wait_for_commit(&dir, job, &mut manifest, options),
    }
}

/// Writes this rank's manifest, its vote for the save it names; returns its bytes.
fn vote(dir: &Location, manifest: &Manifest, options: &SaveOptions) -> Result<Vec<u8>, Error> {
    let name = dir.child(&manifest::manifest_name(manifest.rank));
    let bytes = serde_json::to_vec(manifest).map_err(|e| Error::invalid(&name, e.to_string()))?;
    write_small(&name, &bytes, options)?;
    Ok(bytes)
}

/// A tensor this rank stores: its name in the data file and its data.
struct Item<'a> {
    name: String,
    view: TensorView<'a>,
}

/// This rank's manifest entries (data not yet placed) and the tensors it stores.
fn plan<'a>(
    state: &'a TensorMap<'_>,
    dir: &Location,
    rank: usize,
) -> Result<(Vec<Entry>, Vec<Item<'a>>), Error> {
    let mut entries = Vec::new();
    let mut items = Vec::new();
    for (key, view) in state.iter() {
        let global: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
        let stored = if rank == 0 {
            let chunk = Chunk::whole(global.clone()).map_err(|e| Error::State {
                dir: dir.clone(),
                key: Some(key.to_owned()),
                problem: e.to_string(),
            })?;
            items.push(Item {
                name: key.to_owned(),
                view: view.view(),
            });
            Some(placeholder(chunk))
        } else {
            None
        };
        entries.push(Entry {
            key: key.to_owned(),
            dtype: view.dtype().to_string(),
            global,
            replicated: true,
            stored,
        });
    }
    let mut names: HashSet<String> = items.iter().map(|item| item.name.clone()).collect();
    for (key, sharded) in state.sharded() {
        sharded.check().map_err(|e| Error::State {
            dir: dir.clone(),
            key: Some(key.to_owned()),
            problem: e.to_string(),
        })?;
        for (i, (chunk, tensor)) in sharded.parts().iter().enumerate() {
            // A part's name in the data file must be no other item's: a whole tensor may be
            // called "w#0" too.
            let mut name = format!("{key}#{i}");
            while names.contains(name.as_str()) {
                name.push('#');
            }
            names.insert(name.clone());
            items.push(Item {
                name,
                view: tensor.view(),
            });
            entries.push(Entry {
                key: key.to_owned(),
                dtype: sharded.dtype().to_string(),
                global: sharded.global_shape().to_vec(),
                replicated: false,
                stored: Some(placeholder(chunk.clone())),
            });
        }
    }
    Ok((entries, items))
}

fn placeholder(chunk: Chunk) -> Stored {
    Stored {
        chunk,
        offset: 0,
        length: 0,
        checksums: Vec::new(),
        tiles: None,
    }
}

/// Writes the data file and fills in where each stored chunk lies and its checksums.
fn write_data(
    data: &Location,
    mut entries: Vec<Entry>,
    items: &[Item<'_>],
    job: &Job<'_>,
    options: &SaveOptions,
) -> Result<(Vec<Entry>, u64), Error> {
    let value = Value::Map(
        items
            .iter()
            .map(|item| (Key::Str(item.name.clone()), Value::from(item.view.view())))
            .collect::<IndexMap<_, _>>()
            .into(),
    );
    let commit = Commit {
        fsync: options.fsync,
        remote: &options.object_store,
        size_hint: items.iter().map(|i| i.view.nbytes() as u64).sum(),
    };
    write_atomically(data, &commit, |sink| Native.write(&value, sink)).map_err(|e| match e {
        CommitError::Write(e) => Error::Write(e.into()),
        CommitError::Io(e) => Error::io(data, e),
    })?;

    // Where the format placed each tensor, from the header alone.
    let source =
        storage::open(data, true, &options.object_store).map_err(|e| Error::io(data, e))?;
    let data_len = source.len();
    let opened = Native.open(source).map_err(|e| Error::Write(e.into()))?;
    let ranges: HashMap<String, std::ops::Range<u64>> = opened
        .tensor_data()
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.range))
        .collect();

    let mut next = items.iter();
    for entry in entries.iter_mut() {
        let Some(stored) = entry.stored.as_mut() else {
            continue;
        };
        let Some(item) = next.next() else { break };
        let range = ranges.get(&item.name).ok_or_else(|| {
            Error::invalid(
                data,
                format!("\"{}\" is not in the file written", entry.key),
            )
        })?;
        let bytes = item.view.to_le_bytes().map_err(|e| Error::State {
            dir: data.clone(),
            key: Some(entry.key.clone()),
            problem: e.to_string(),
        })?;
        stored.offset = range.start;
        stored.length = range.end - range.start;
        stored.checksums = bytes.chunks(job.block_size as usize).map(xxh3_64).collect();
        stored.tiles = Tiles::of(&stored.chunk, item.view.dtype(), &bytes, job.block_size);
    }
    Ok((entries, data_len))
}

/// The coordinator's wait for every rank's manifest of the save `save`, its vote, up to the
/// job's timeout. A manifest of another save (one an earlier, killed save left) is no vote:
/// its rank has not written this save's yet.
fn gather_votes(
    dir: &Location,
    job: &Job<'_>,
    save: &str,
    options: &SaveOptions,
) -> Result<Vec<Vec<u8>>, Error> {
    let start = Instant::now();
    let mut votes: Vec<Option<Vec<u8>>> = vec![None; job.world_size];
    loop {
        let mut stale = Vec::new();
        for (rank, vote) in votes.iter_mut().enumerate() {
            if vote.is_some() {
                continue;
            }
            let file = dir.child(&manifest::manifest_name(rank));
            if let Some(bytes) = manifest::read_small(&file, &options.object_store)? {
                if manifest::save_of(&bytes).as_deref() == Some(save) {
                    *vote = Some(bytes);
                } else {
                    stale.push(rank);
                }
            }
        }
        let missing: Vec<usize> = (0..job.world_size)
            .filter(|&r| votes[r].is_none())
            .collect();
        if missing.is_empty() {
            return Ok(votes.into_iter().flatten().collect());
        }
        if start.elapsed() >= job.timeout {
            return Err(Error::MissingRanks {
                dir: dir.clone(),
                missing,
                stale,
                world_size: job.world_size,
                waited: job.timeout,
            });
        }
        std::thread::sleep(job.poll);
    }
}

/// Parses every rank's manifest and checks that together they describe one checkpoint
/// (chunks tile each tensor, ranks agree on dtypes): what is checked before the commit.
fn check_votes(dir: &Location, all: &[Vec<u8>], mine: &Manifest) -> Result<(), Error> {
    let save = &mine.save;
    let manifests = all
        .iter()
        .enumerate()
        .map(|(rank, bytes)| {
            let file = dir.child(&manifest::manifest_name(rank));
            let manifest = manifest::parse_manifest(&file, bytes, rank)?;
            if manifest.save != *save || manifest.run != mine.run {
                return Err(Error::invalid(
                    &file,
                    format!(
                        "a vote for save {} of run {:?}, not this save ({save}) of run {:?}",
                        manifest.save, manifest.run, mine.run
                    ),
                ));
            }
            Ok(manifest)
        })
        .collect::<Result<Vec<_>, _>>()?;
    index::build(dir, &manifests)?;
    Ok(())
}

/// Writes the commit marker: the checkpoint exists from here on.
fn commit(
    dir: &Location,
    world_size: usize,
    save: &str,
    manifests: &[Vec<u8>],
    options: &SaveOptions,
) -> Result<(), Error> {
    let metadata = Metadata {
        format: METADATA_FORMAT.to_owned(),
        version: VERSION,
        world_size,
        save: save.to_owned(),
        manifests: manifests.iter().map(|m| xxh3_64(m)).collect(),
    };
    let marker = dir.child(MARKER);
    let bytes =
        serde_json::to_vec(&metadata).map_err(|e| Error::invalid(&marker, e.to_string()))?;
    write_small(&marker, &bytes, options)
}

/// Whether the commit marker's `bytes` commit the save `save`: a marker of another save is
/// a rank of another job's (one left running after its job was killed, say), whose vote
/// was not counted.
fn committed(marker: &Location, bytes: &[u8], save: &str) -> Result<(), Error> {
    let metadata = manifest::parse_metadata(marker, bytes)?;
    if metadata.save == save {
        return Ok(());
    }
    Err(Error::invalid(
        marker,
        format!(
            "commits save {}, not this rank's ({save}): another job saved into the directory",
            metadata.save
        ),
    ))
}

/// A rank's wait for the coordinator's commit, up to the job's timeout. Should rank 0 name
/// another save meanwhile (this rank read the name an earlier, killed save left before rank 0
/// replaced it, or none yet), the rank votes again, for that save: its data is the same.
fn wait_for_commit(
    dir: &Location,
    job: &Job<'_>,
    manifest: &mut Manifest,
    options: &SaveOptions,
) -> Result<(), Error> {
    let start = Instant::now();
    let marker = dir.child(MARKER);
    loop {
        if let Some(bytes) = manifest::read_small(&marker, &options.object_store)? {
            return committed(&marker, &bytes, &manifest.save);
        }
        if let Some(save) = attempt::current(dir, job, &options.object_store)?
            && save != manifest.save
        {
            manifest.save = save;
            vote(dir, manifest, options)?;
        }
        if start.elapsed() >= job.timeout {
            let (dir, waited) = (dir.clone(), job.timeout);
            return Err(if manifest.save.is_empty() {
                Error::NotStarted { dir, waited }
            } else {
                Error::NotCommitted { dir, waited }
            });
        }
        std::thread::sleep(job.poll);
    }
}
