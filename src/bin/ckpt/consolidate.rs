//! `ckpt convert DIR OUT` of a sharded checkpoint directory: every global tensor read whole
//! from the ranks' chunks, checksums checked, one at a time through a scratch file beside the
//! output, into one value that `convert` writes as it writes a file's.

use std::path::Path;

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
/// `output` is written into, so that memory holds one tensor at a time.
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
    let scratch = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
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
    let value = whole.consolidate(&keys, scratch)?;
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
