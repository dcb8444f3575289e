//! Listing a checkpoint's leaves: the table of `ckpt inspect`, and the JSON manifest of
//! `ckpt inspect --json` (the form of the `*.manifest.json` files PyTorch fixtures carry).

use std::fmt::Write;
use std::path::Path;

use ckpt::format::Header;
use ckpt::{Checkpoint, Value};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::progress::Progress;

/// `1.5 KiB`, `3.2 GiB`.
pub(crate) fn human(bytes: u64) -> String {
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

/// A plain value as JSON; what JSON has no literal for is a tagged object, as in the PyTorch
/// fixtures' manifests: `{"$float": "inf"}`, `{"$complex": [re, im]}`, `{"$bytes": hex}`,
/// `{"$bytearray": hex}`, `{"$dtype": "float32"}`.
fn plain(value: &Value<'_>) -> serde_json::Value {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match value {
        Value::None => serde_json::Value::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(x) => float(*x),
        Value::String(s) => json!(s),
        Value::Complex(z) => json!({"$complex": [float(z.re), float(z.im)]}),
        Value::Bytes(b) => json!({"$bytes": hex(b)}),
        Value::ByteArray(b) => json!({"$bytearray": hex(b)}),
        Value::DType(d) => json!({"$dtype": d.name()}),
        // Empty containers are the only ones that reach here.
        Value::List(_) | Value::Set(_) => json!([]),
        Value::Map(_) | Value::Counter(_) => json!({}),
        _ => serde_json::Value::Null,
    }
}

fn float(x: f64) -> serde_json::Value {
    match x {
        x if x.is_nan() => json!({"$float": "nan"}),
        f64::INFINITY => json!({"$float": "inf"}),
        f64::NEG_INFINITY => json!({"$float": "-inf"}),
        x => json!(x),
    }
}

pub(crate) fn json(checkpoint: &Checkpoint) -> Result<String, Box<dyn std::error::Error>> {
    let total: usize = checkpoint.tensors().iter().map(|(_, t)| t.nbytes()).sum();
    let mut progress = Progress::bytes(total as u64, "hashing");
    let mut entries = Vec::new();
    let mut failed = None;
    checkpoint.value().walk(&mut ckpt::state::KeyPath::new(), &mut |key, leaf| {
        entries.push(match leaf {
            Value::Tensor(t) => {
                let view = t.view();
                let bytes = match view.to_le_bytes() {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        failed.get_or_insert(format!("{key}: {e}"));
                        return;
                    }
                };
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
    if let Some(failed) = failed {
        return Err(failed.into());
    }
    Ok(serde_json::to_string_pretty(&json!({
        "format": checkpoint.format().name(),
        "entries": entries,
    }))?)
}

/// The table of `ckpt inspect`: every tensor, then every plain value, then the totals.
pub(crate) fn table(header: &Header, path: &Path) -> String {
    let rows: Vec<[String; 5]> = header
        .tensors
        .iter()
        .map(|t| {
            [
                t.key.clone(),
                t.dtype.to_string(),
                format!("{:?}", t.shape),
                human(t.nbytes),
                t.device.to_string(),
            ]
        })
        .collect();
    let titles = ["key", "dtype", "shape", "size", "device"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&titles).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", path.display(), header.format);
    for row in std::iter::once(&titles).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for (key, value) in &header.values {
        let _ = writeln!(out, "{key} = {}", plain(value));
    }
    let _ = writeln!(
        out,
        "{} tensors, {} values, {} of tensor data",
        rows.len(),
        header.values.len(),
        human(header.nbytes())
    );
    out
}
