//! `ckpt convert DIR OUT` of a sharded checkpoint directory (local, or a URL's prefix): every
//! global tensor read whole from the ranks' chunks, by ranges, checksums checked, one at a
//! time through a scratch file beside the output (in the system's temporary directory for an
//! output at a URL), into one value that `convert` writes as it writes a file's.

use std::path::{Path, PathBuf};

use ckpt::Value;
use ckpt::distributed::Whole;

/// What was read: every tensor `select` keeps (all without it), whole, under its global key,
/// and the world size of the job that saved it.
pub(crate) struct Consolidated {
    pub value: Value<'static>,
    pub world_size: usize,
}

/// Reads the committed sharded checkpoint in `dir` whole: the tensors under `select` (its
/// key itself, or keys `select.*`) or all of them, staged in a scratch file in the directory
/// `output` is written into (the system's temporary directory if `output` is a URL), so that
/// memory holds one tensor at a time.
pub(crate) fn read(
    dir: &Path,
    output: &Path,
    select: Option<&str>,
) -> Result<Consolidated, Box<dyn std::error::Error>> {
    let mut whole = Whole::open(dir)?;
    let keys: Vec<String> = whole
        .tensors()
        .iter()
        .map(|t| t.key.clone())
        .filter(|key| select.is_none_or(|s| under(key, s)))
        .collect();
    if let (Some(select), true) = (select, keys.is_empty()) {
        return Err(format!(
            "{}: --select {select:?}: the checkpoint has no key {select:?} and none under it (its keys start with: {})",
            dir.display(),
            first_segments(&whole)
        )
        .into());
    }
    let scratch = match crate::sharded::local(output) {
        Some(local) => match local.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        },
        // An output at a URL has no directory on this machine: the system's temporary one.
        None => std::env::temp_dir(),
    };
    if !scratch.is_dir() {
        return Err(format!(
            "{}: cannot be written: {} is not a directory",
            output.display(),
            scratch.display()
        )
        .into());
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let value = whole.consolidate(&keys, &scratch)?;
    Ok(Consolidated {
        value,
        world_size: whole.world_size(),
    })
}

/// Whether `key` is `select` or lies under it.
fn under(key: &str, select: &str) -> bool {
    key.strip_prefix(select)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The distinct first segments of the checkpoint's keys, for an error message.
fn first_segments(whole: &Whole) -> String {
    let mut seen: Vec<String> = Vec::new();
    for tensor in whole.tensors() {
        let first = tensor.key.split('.').next().unwrap_or_default();
        let quoted = format!("{first:?}");
        if !seen.contains(&quoted) {
            seen.push(quoted);
        }
    }
    seen.join(", ")
}
