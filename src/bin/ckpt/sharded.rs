//! ckpt's own sharded checkpoint directories (`rank-{r}.ckpt`, `rank-{r}.manifest.json`,
//! `checkpoint.json`) through the tool: `inspect`, `verify` and `clean` (`convert` is in
//! `consolidate.rs` and `split.rs`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use ckpt::distributed::{self, Status, Summary, TensorSummary};
use ckpt::shard::Chunk;
use ckpt::storage::{Location, ObjectStoreOptions};

use crate::entries::human;

/// Whether `path` is a directory holding (the files of) a sharded checkpoint, complete or not:
/// a local one (a `file://` URL's too), or a URL's prefix (`s3://bucket/run/step-100/`, with
/// its trailing slash).
pub(crate) fn is_sharded(path: &Path) -> bool {
    let dir = match local(path) {
        Some(local) => local.is_dir(),
        None => path.to_str().is_some_and(|s| s.ends_with('/')),
    };
    dir && distributed::files(path).is_ok_and(|names| !names.is_empty())
}

/// How a directory stands, in a few words.
fn status_line(status: &Status) -> String {
    match status {
        Status::Complete { world_size } => format!("committed, {world_size} ranks"),
        Status::Incomplete {
            present,
            world_size: Some(n),
            missing,
        } => format!(
            "INCOMPLETE (no checkpoint.json): rank(s) {present:?} of {n} present, {missing:?} missing"
        ),
        Status::Incomplete { present, .. } => format!(
            "INCOMPLETE (no checkpoint.json): rank(s) {present:?} present, no manifest says how many ranks the job has"
        ),
    }
}

/// `[0..4, 0..2]`: where a chunk lies in its tensor.
fn span(chunk: &Chunk) -> String {
    let dims: Vec<String> = (0..chunk.ndim())
        .map(|d| {
            let start = chunk.offsets()[d];
            format!("{start}..{}", start + chunk.sizes()[d])
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Where a tensor's chunks lie, compactly: each chunk when there are a few, else how many
/// each rank holds.
fn chunks(tensor: &TensorSummary) -> String {
    if tensor.replicated {
        return "replicated (rank 0)".to_owned();
    }
    if tensor.chunks.is_empty() {
        return "none stored".to_owned();
    }
    if tensor.chunks.len() <= 4 {
        let each: Vec<String> = tensor
            .chunks
            .iter()
            .map(|(rank, chunk)| format!("r{rank} {}", span(chunk)))
            .collect();
        return each.join(", ");
    }
    let mut per_rank: Vec<(usize, usize)> = Vec::new();
    for (rank, _) in &tensor.chunks {
        match per_rank.iter_mut().find(|(r, _)| r == rank) {
            Some((_, n)) => *n += 1,
            None => per_rank.push((*rank, 1)),
        }
    }
    per_rank.sort_unstable();
    let count = per_rank[0].1;
    let contiguous = per_rank.iter().enumerate().all(|(i, (r, _))| *r == i);
    if contiguous && per_rank.iter().all(|(_, n)| *n == count) {
        format!(
            "{} chunks, {count} on each of ranks 0..{}",
            tensor.chunks.len(),
            per_rank.len()
        )
    } else {
        let each: Vec<String> = per_rank.iter().map(|(r, n)| format!("r{r}: {n}")).collect();
        format!("{} chunks ({})", tensor.chunks.len(), each.join(", "))
    }
}

/// The table of `ckpt inspect DIR`: the status, every tensor with its chunks, the totals.
pub(crate) fn table(summary: &Summary, dir: &Path) -> String {
    let rows: Vec<[String; 5]> = summary
        .tensors
        .iter()
        .map(|t| {
            [
                t.key.clone(),
                t.dtype.to_string(),
                format!("{:?}", t.shape),
                human(t.stored_bytes),
                chunks(t),
            ]
        })
        .collect();
    let titles = ["key", "dtype", "shape", "size", "chunks"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&titles).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} (ckpt sharded: {})",
        dir.display(),
        status_line(&summary.status)
    );
    for row in std::iter::once(&titles).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let bytes: u64 = summary.tensors.iter().map(|t| t.stored_bytes).sum();
    let _ = write!(
        out,
        "{} tensors, {} of tensor data stored",
        rows.len(),
        human(bytes)
    );
    match summary.status {
        Status::Complete { .. } => out.push('\n'),
        Status::Incomplete { .. } => {
            out.push_str(
                " by the ranks present; not loadable: `ckpt clean` lists and removes it\n",
            );
        }
    }
    out
}

/// `ckpt verify DIR`: every block of data against its checksum. Prints the result, each
/// damaged block on stderr, and says whether all matched.
pub(crate) fn verify(dir: &Path) -> Result<bool, distributed::Error> {
    let verified = distributed::verify(dir)?;
    if verified.damaged.is_empty() {
        println!(
            "{}: OK (ckpt sharded, {} ranks, {} tensors, {}): every checksum matches (xxh3-64 of every block of tensor data)",
            dir.display(),
            verified.world_size,
            verified.tensors,
            human(verified.bytes)
        );
        return Ok(true);
    }
    for damage in &verified.damaged {
        eprintln!("ckpt: {damage}");
    }
    let mut keys: Vec<&str> = verified.damaged.iter().map(|d| d.key.as_str()).collect();
    keys.dedup();
    eprintln!(
        "ckpt: {}: DAMAGED: {} block(s) of {} tensor(s) do not match their checksums",
        dir.display(),
        verified.damaged.len(),
        keys.len()
    );
    Ok(false)
}

/// The local file or directory `path` names: itself, or the path of a `file://` URL; `None`
/// for an object store's URL.
pub(crate) fn local(path: &Path) -> Option<PathBuf> {
    Location::from(path).path().map(Path::to_path_buf)
}

/// `ckpt clean DIR`: the incomplete sharded checkpoints in `dir` (a local directory, or a
/// URL's prefix) and its sub-directories, listed, and with `remove` removed (an emptied local
/// sub-directory too). Committed ones are never touched.
pub(crate) fn clean(dir: &Path, remove: bool) -> Result<(), Box<dyn std::error::Error>> {
    let root = Location::from(dir);
    if let Some(path) = root.path()
        && !path.is_dir()
    {
        return Err(format!("{}: not a directory", path.display()).into());
    }
    let remote = ObjectStoreOptions::default();
    let (mut incomplete, mut committed) = (0, 0);
    for found in distributed::scan_with(dir, &remote)? {
        if let Status::Complete { .. } = found.status {
            committed += 1;
            continue;
        }
        incomplete += 1;
        let what = format!(
            "{} ({}; {} file(s), {})",
            found.dir,
            status_line(&found.status),
            found.files.len(),
            human(found.bytes())
        );
        if !remove {
            println!("incomplete: {what}");
            continue;
        }
        found.clean(&remote)?;
        // An object store has no directories to remove: its prefix is gone with its objects.
        if let Some(path) = found.dir.path().filter(|_| found.dir != root)
            && std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
        {
            std::fs::remove_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        println!("removed: {what}");
    }
    let done = if remove || incomplete == 0 {
        ""
    } else {
        "; run with --yes to remove them"
    };
    println!(
        "{incomplete} incomplete sharded checkpoint(s){}, {committed} committed kept{done}",
        if remove { " removed" } else { "" }
    );
    Ok(())
}
