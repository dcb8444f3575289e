//! One save into a directory, told apart from every other by a nonce: rank 0 writes it to
//! `save.json` before anything else, every rank's manifest carries it, and the coordinator
//! counts only the manifests that carry it. A directory reused after a killed save (or any
//! earlier one) may hold manifests of that save; they are never taken for votes of this one.

use std::hash::{BuildHasher, Hasher};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::manifest::{self, VERSION};
use super::{Error, Job};
use crate::file::SaveOptions;
use crate::storage::{Location, ObjectStoreOptions};

/// The name of the file that names the save under way.
pub(super) const ATTEMPT: &str = "save.json";

const ATTEMPT_FORMAT: &str = "ckpt-sharded-save";

/// What `save.json` holds: the save under way, of a job of `world_size` ranks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attempt {
    format: String,
    version: u32,
    world_size: usize,
    /// The digest of the job's run id, if it has one (see `Job::run_id`).
    run: Option<u64>,
    save: String,
}

/// Begins this rank's part of a save: rank 0 makes the save's nonce and writes it (or gives
/// it to every rank through the job's coordinator, along with the directory each rank names,
/// which must be one: see [`Opening`]). Without a coordinator, the other ranks get `None`:
/// they learn the nonce from `save.json` once their data is written, and vote again should
/// rank 0 name another save meanwhile.
pub(super) fn begin(
    dir: &Location,
    job: &Job<'_>,
    options: &SaveOptions,
) -> Result<Option<String>, Error> {
    if let Some(coordinator) = job.coordinator {
        let mine = Opening {
            save: (job.rank == 0).then(nonce),
            dir: shown(dir),
        };
        let bytes = serde_json::to_vec(&mine).map_err(|e| Error::invalid(dir, e.to_string()))?;
        let all = coordinator.all_gather(&bytes)?;
        let save = agree(dir, job, &all)?;
        // The directory says which save is under way here too, for `status`.
        if job.rank == 0 {
            write(dir, job, &save, options)?;
        }
        return Ok(Some(save));
    }
    if job.rank != 0 {
        return Ok(None);
    }
    let save = nonce();
    write(dir, job, &save, options)?;
    Ok(Some(save))
}

/// What each rank gives the first all-gather of a coordinated save: rank 0 the save's nonce,
/// every rank the directory it saves into. Collectives pair the ranks' calls by their order
/// alone, so a rank a save behind the others (its `Saver` skipped one) would otherwise be
/// gathered into their save of another directory, its manifest counted as a vote there.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Opening {
    save: Option<String>,
    dir: String,
}

/// The directory as the ranks compare it: a local one made absolute (ranks in different
/// working directories name different ones with one relative path), a URL as shown, without
/// its password and query string (which may differ between ranks, as signatures do).
fn shown(dir: &Location) -> String {
    match dir {
        Location::Path(path) => std::path::absolute(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string(),
        other => other.to_string(),
    }
}

/// Rank 0's nonce from what every rank gave the first all-gather, once every rank is found
/// to name this rank's directory; else the error every rank gives alike, naming the ranks of
/// each directory.
fn agree(dir: &Location, job: &Job<'_>, all: &[Vec<u8>]) -> Result<String, Error> {
    let garbled = |what: &str| {
        Error::invalid(
            dir,
            format!("the coordinator's all_gather gave {what}; check its all_gather"),
        )
    };
    if all.len() != job.world_size {
        return Err(garbled(&format!(
            "{} buffers for a job of {}",
            all.len(),
            job.world_size
        )));
    }
    let openings = all
        .iter()
        .enumerate()
        .map(|(rank, bytes)| {
            serde_json::from_slice::<Opening>(bytes).map_err(|_| {
                garbled(&format!(
                    "rank {rank}'s opening of the save as something else"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut by_dir: Vec<(String, Vec<usize>)> = Vec::new();
    for (rank, opening) in openings.iter().enumerate() {
        match by_dir.iter_mut().find(|(d, _)| *d == opening.dir) {
            Some((_, ranks)) => ranks.push(rank),
            None => by_dir.push((opening.dir.clone(), vec![rank])),
        }
    }
    if by_dir.len() > 1 {
        return Err(Error::DirectoriesDiffer { dirs: by_dir });
    }
    match openings.first().and_then(|o| o.save.as_deref()) {
        Some(save) if is_nonce(save) => Ok(save.to_owned()),
        _ => Err(garbled("rank 0's save nonce as something else")),
    }
}

/// The nonce of the save under way in `dir` by `job` (its size and run), if `save.json` names
/// one. A `save.json` of another job, or one that does not parse, names none: a rank waits
/// for its rank 0 to write its own.
pub(super) fn current(
    dir: &Location,
    job: &Job<'_>,
    remote: &ObjectStoreOptions,
) -> Result<Option<String>, Error> {
    Ok(named(dir, remote)?
        .filter(|n| n.world_size == job.world_size && n.run == job.run)
        .map(|n| n.save))
}

/// The save under way in `dir`, as `save.json` names it.
pub(super) struct Named {
    pub(super) world_size: usize,
    pub(super) run: Option<u64>,
    pub(super) save: String,
}

/// The save under way in `dir`, if `save.json` names one.
pub(super) fn named(dir: &Location, remote: &ObjectStoreOptions) -> Result<Option<Named>, Error> {
    let file = dir.child(ATTEMPT);
    let Some(bytes) = manifest::read_small(&file, remote)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<Attempt>(&bytes)
        .ok()
        .filter(|a| a.format == ATTEMPT_FORMAT && a.version == VERSION && is_nonce(&a.save))
        .map(|a| Named {
            world_size: a.world_size,
            run: a.run,
            save: a.save,
        }))
}

fn write(dir: &Location, job: &Job<'_>, save: &str, options: &SaveOptions) -> Result<(), Error> {
    let file = dir.child(ATTEMPT);
    let attempt = Attempt {
        format: ATTEMPT_FORMAT.to_owned(),
        version: VERSION,
        world_size: job.world_size,
        run: job.run,
        save: save.to_owned(),
    };
    let bytes = serde_json::to_vec(&attempt).map_err(|e| Error::invalid(&file, e.to_string()))?;
    manifest::write_small(&file, &bytes, options)
}

/// 64 bits no other save will have: the standard library's per-process random hash keys
/// (drawn from the operating system), mixed with the time and the process.
fn nonce() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

fn is_nonce(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ_and_parse() {
        let a = nonce();
        let b = nonce();
        assert_ne!(a, b);
        assert!(is_nonce(&a) && is_nonce(&b), "{a} {b}");
        assert!(!is_nonce("0123") && !is_nonce("0123456789abcdeg"));
    }
}
