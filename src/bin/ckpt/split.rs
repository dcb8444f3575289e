//! `ckpt convert FILE DIR --shards N`: one checkpoint split into a sharded checkpoint
//! directory as a job of N ranks would have saved it, every rank a thread calling
//! `distributed::save` (agreeing in memory, see `room.rs`). A tensor with at least N rows is split along its first dimension
//! (`Chunk::split`: sizes differing by at most one, the larger first); the others (0-d
//! tensors, fewer rows than ranks) are saved whole, once, by rank 0, as replicated tensors.
//! The layout holds tensors only, under their flattened keys (`model_state_dict.fc.weight`).

use std::collections::HashSet;
use std::path::Path;
use std::thread;

use ckpt::distributed::{self, Job};
use ckpt::shard::{Chunk, Sharded};
use ckpt::state::{KeyPath, TensorMap};
use ckpt::storage::Location;
use ckpt::tensor::TensorView;
use ckpt::{SaveOptions, Value};

use crate::convert::PlainValues;
use crate::room::Room;

/// How a tensor is saved.
enum Layout<'v> {
    /// Whole, by rank 0.
    Replicated(TensorView<'v>),
    /// Rows, one part for each rank.
    Rows(Vec<Sharded>),
}

/// What a split wrote.
pub(crate) struct Written {
    /// Tensors split by rows.
    pub split: usize,
    /// Tensors saved whole by rank 0.
    pub replicated: usize,
}

/// Writes the tensors of `value`, from `location`, into the new directory `dir` (local, or a
/// URL's prefix holding no sharded checkpoint's files) as a sharded checkpoint of `world`
/// ranks. A value that is not a tensor is an error naming it, unless `plain_values` says to
/// drop such values.
pub(crate) fn split(
    value: &Value<'_>,
    location: &str,
    dir: &Path,
    world: usize,
    plain_values: Option<PlainValues>,
) -> Result<Written, Box<dyn std::error::Error>> {
    check_new(dir)?;
    let Leaves { tensors, plain } = leaves(value);
    if let (Some((key, kind)), None) = (&plain, plain_values) {
        return Err(format!(
            "{location}: {key:?} is {kind}, not a tensor: a sharded checkpoint holds tensors \
             only (write only the tensors: --select KEY for one sub-tree such as \
             \"model_state_dict\", --plain-values drop to leave the values out)"
        )
        .into());
    }
    if tensors.is_empty() {
        return Err(format!("{location}: holds no tensors to split").into());
    }
    let mut seen = HashSet::new();
    let mut layouts = Vec::with_capacity(tensors.len());
    for (key, view) in tensors {
        if key.is_empty() {
            return Err(format!(
                "{location}: the value to split is a tensor itself, with no key to save it \
                 under; --select the map that holds it"
            )
            .into());
        }
        if !seen.insert(key.clone()) {
            return Err(format!(
                "{location}: two tensors have the flattened key {key:?}; a sharded checkpoint \
                 keeps one tensor per key"
            )
            .into());
        }
        let rows = view.shape().first().copied().unwrap_or(0);
        let layout = if rows >= world && rows > 0 {
            let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
            let chunks = Chunk::split(&shape, 0, world as u64)?;
            let parts = chunks
                .into_iter()
                .map(|chunk| Sharded::from_whole(&view, vec![chunk]))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{location}: {key:?}: {e}"))?;
            Layout::Rows(parts)
        } else {
            Layout::Replicated(view)
        };
        layouts.push((key, layout));
    }
    let local = crate::sharded::local(dir);
    let existed = local.as_deref().is_some_and(Path::exists);
    if let Err(e) = save_ranks(&layouts, dir, world) {
        // The directory was new or empty: what the failed save left in it is removed, so
        // that no incomplete checkpoint stays behind (a committed one is kept).
        if distributed::clean(dir).is_ok()
            && !existed
            && let Some(local) = &local
        {
            let _ = std::fs::remove_dir(local);
        }
        return Err(e);
    }
    let split = layouts
        .iter()
        .filter(|(_, l)| matches!(l, Layout::Rows(_)))
        .count();
    Ok(Written {
        split,
        replicated: layouts.len() - split,
    })
}

/// Refuses an output that exists and is not an empty directory: a sharded save needs a
/// directory of its own, with no other job's manifests in it.
fn check_new(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = crate::sharded::local(dir) else {
        // At a URL: a prefix that holds no file a sharded save writes.
        let names = distributed::files(dir)?;
        if names.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "{}: already holds the files of a sharded checkpoint ({}); --shards writes a new directory",
            Location::from(dir),
            names.join(", ")
        )
        .into());
    };
    let dir = dir.as_path();
    if !dir.exists() {
        return Ok(());
    }
    let empty = dir.is_dir()
        && std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .next()
            .is_none();
    if empty {
        Ok(())
    } else {
        Err(format!(
            "{}: exists and is not an empty directory; --shards writes a new directory",
            dir.display()
        )
        .into())
    }
}

/// The leaves of a value: its tensors under their flattened keys, in order, and the first
/// leaf that is not a tensor, with what it is.
struct Leaves<'v> {
    tensors: Vec<(String, TensorView<'v>)>,
    plain: Option<(String, &'static str)>,
}

fn leaves<'v>(value: &'v Value<'_>) -> Leaves<'v> {
    let mut out = Leaves {
        tensors: Vec::new(),
        plain: None,
    };
    value.walk(&mut KeyPath::new(), &mut |key, leaf| match leaf {
        Value::Tensor(t) => out.tensors.push((key.to_owned(), t.view())),
        other => {
            if out.plain.is_none() {
                out.plain = Some((key.to_owned(), other.kind()));
            }
        }
    });
    out
}

/// Runs the `world` ranks of the save, each a thread with its parts and every replicated
/// tensor (which rank 0 alone writes), agreeing in a [`Room`]: the files are those of ranks
/// coordinating through the directory, and a rank that fails fails the others at once.
fn save_ranks(
    layouts: &[(String, Layout<'_>)],
    dir: &Path,
    world: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let room = Room::new(world);
    let results: Vec<thread::Result<Result<(), distributed::Error>>> = thread::scope(|s| {
        let ranks: Vec<_> = (0..world)
            .map(|rank| {
                let room = &room;
                s.spawn(move || {
                    let seat = room.seat(rank);
                    let mut state = TensorMap::new();
                    for (key, layout) in layouts {
                        match layout {
                            Layout::Replicated(view) => {
                                state.insert(key.as_str(), view.clone());
                            }
                            Layout::Rows(parts) => {
                                state.insert_sharded(key.as_str(), &parts[rank]);
                            }
                        }
                    }
                    let job = Job::with_coordinator(&seat);
                    let saved = distributed::save(&state, dir, &job, &SaveOptions::new());
                    if saved.is_ok() {
                        seat.done();
                    }
                    saved
                })
            })
            .collect();
        ranks.into_iter().map(|handle| handle.join()).collect()
    });
    let mut errors = Vec::new();
    for (rank, result) in results.into_iter().enumerate() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => return Err(format!("rank {rank} of the split panicked").into()),
        }
    }
    // A rank that failed makes the others fail as it left: its own error says why.
    let waited = |e: &distributed::Error| matches!(e, distributed::Error::Coordination(_));
    match errors
        .iter()
        .position(|e| !waited(e))
        .or((!errors.is_empty()).then_some(0))
    {
        Some(first) => Err(Box::new(errors.swap_remove(first))),
        None => Ok(()),
    }
}
