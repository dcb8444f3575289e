//! Listing a checkpoint's leaves: the table of `ckpt inspect`, and the JSON manifest of
//! `ckpt inspect --json` (the form of the `*.manifest.json` files PyTorch fixtures carry).

use std::fmt::Write;
use std::path::Path;

use ckpt::{Checkpoint, Device, Value};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::progress::Progress;

/// `1.5 KiB`, `3.2 GiB`.
pub(crate) fn human(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

/// A plain value as JSON.
fn plain(value: &Value<'_>) -> serde_json::Value {
    match value {
        Value::None => serde_json::Value::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(x) => json!(x),
        Value::String(s) => json!(s),
        // Empty lists and maps are the only containers that reach here.
        Value::List(_) => json!([]),
        Value::Map(_) => json!({}),
        Value::Tensor(_) => serde_json::Value::Null,
    }
}

pub(crate) fn json(checkpoint: &Checkpoint) -> Result<String, serde_json::Error> {
    let total: usize = checkpoint.tensors().iter().map(|(_, t)| t.nbytes()).sum();
    let mut progress = Progress::bytes(total as u64, "hashing");
    let mut entries = Vec::new();
    checkpoint.walk(&mut ckpt::KeyPath::new(), &mut |key, leaf| {
        entries.push(match leaf {
            Value::Tensor(t) => {
                let view = t.view();
                let bytes = view.to_le_bytes();
                let digest: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                progress.advance(bytes.len() as u64);
                json!({"key": key, "dtype": view.dtype().as_str(), "shape": view.shape(), "sha256": digest})
            }
            other => json!({"key": key, "value": plain(other)}),
        });
    });
    serde_json::to_string_pretty(&json!({
        "format": checkpoint.format().name(),
        "entries": entries,
    }))
}

pub(crate) fn table(checkpoint: &Checkpoint, path: &Path) -> Result<String, ckpt::Error> {
    // Tensors were loaded onto the CPU; only ckpt's own format records where they were saved,
    // and its header is cheap to read again. Other formats hold CPU tensors.
    let devices: std::collections::HashMap<String, Device> = match checkpoint.format() {
        ckpt::Format::Ckpt => ckpt::inspect(path)?
            .into_iter()
            .map(|info| (info.key, info.device))
            .collect(),
        _ => std::collections::HashMap::new(),
    };
    let mut rows = Vec::new();
    let mut values = Vec::new();
    let mut total = 0;
    checkpoint.walk(&mut ckpt::KeyPath::new(), &mut |key, leaf| match leaf {
        Value::Tensor(t) => {
            let view = t.view();
            total += view.nbytes();
            rows.push([
                key.to_owned(),
                view.dtype().to_string(),
                format!("{:?}", view.shape()),
                human(view.nbytes()),
                devices.get(key).copied().unwrap_or_default().to_string(),
            ]);
        }
        other => values.push(format!("{key} = {}", plain(other))),
    });
    let header = ["key", "dtype", "shape", "size", "device"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", path.display(), checkpoint.format());
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for value in &values {
        let _ = writeln!(out, "{value}");
    }
    let _ = writeln!(
        out,
        "{} tensors, {} values, {} of tensor data",
        rows.len(),
        values.len(),
        human(total)
    );
    Ok(out)
}
