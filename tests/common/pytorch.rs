//! Helpers shared by the `.pt` tests: fixtures, manifests and hand-made archives.

use std::io::Write;
use std::path::PathBuf;

use ckpt::Value;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

pub(crate) fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pytorch")
        .join(name)
}

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The manifest of a value, in the fixtures' format: every leaf in order, tensors as
/// `{key, dtype, shape, sha256}` and plain values as `{key, value}`.
pub(crate) fn manifest_of(value: &Value<'_>) -> Vec<Json> {
    let mut entries = Vec::new();
    value.walk(&mut ckpt::state::KeyPath::new(), &mut |key, leaf| {
        let entry = match leaf {
            Value::Tensor(t) => {
                let view = t.view();
                serde_json::json!({
                    "key": key,
                    "dtype": view.dtype().as_str(),
                    "shape": view.shape(),
                    "sha256": sha256_hex(&view.to_le_bytes().unwrap()),
                })
            }
            Value::None => serde_json::json!({ "key": key, "value": null }),
            Value::Bool(b) => serde_json::json!({ "key": key, "value": b }),
            Value::Int(i) => serde_json::json!({ "key": key, "value": i }),
            Value::Float(x) => serde_json::json!({ "key": key, "value": float_json(*x) }),
            Value::String(s) => serde_json::json!({ "key": key, "value": s }),
            // What JSON has no literal for is a tagged object, as the fixtures' generator
            // writes it.
            Value::Complex(z) => serde_json::json!({
                "key": key,
                "value": { "$complex": [float_json(z.re), float_json(z.im)] },
            }),
            Value::Bytes(b) => serde_json::json!({ "key": key, "value": { "$bytes": hex(b) } }),
            Value::ByteArray(b) => {
                serde_json::json!({ "key": key, "value": { "$bytearray": hex(b) } })
            }
            Value::DType(d) => serde_json::json!({ "key": key, "value": { "$dtype": d.name() } }),
            other => panic!("walk gave a container {other:?}"),
        };
        entries.push(entry);
    });
    entries
}

/// A float as the manifests hold it: a number, or `{"$float": "inf"}` where JSON has none.
fn float_json(x: f64) -> Json {
    if x.is_finite() {
        serde_json::json!(x)
    } else {
        let name = if x.is_nan() {
            "nan"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        };
        serde_json::json!({ "$float": name })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The containers of a value whose Python type a manifest's entries do not show (a
/// `collections.Counter`, a `set`), with their flattened keys: what `check_written.py`
/// asserts PyTorch gives back.
pub(crate) fn types_of(value: &Value<'_>) -> Vec<Json> {
    fn visit(value: &Value<'_>, path: &mut ckpt::state::KeyPath, out: &mut Vec<Json>) {
        let name = match value {
            Value::Counter(_) => Some("Counter"),
            Value::Set(_) => Some("set"),
            _ => None,
        };
        if let Some(name) = name {
            out.push(serde_json::json!({ "key": path.as_str(), "type": name }));
        }
        let children: Vec<(String, &Value<'_>)> = match value {
            Value::Map(_) | Value::Counter(_) => value
                .as_map()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            Value::List(items) | Value::Set(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            _ => Vec::new(),
        };
        for (k, v) in children {
            path.push(k);
            visit(v, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    visit(value, &mut ckpt::state::KeyPath::new(), &mut out);
    out
}

/// Checks a loaded value against `NAME.manifest.json`, key for key, in order.
pub(crate) fn assert_matches_manifest(value: &Value<'_>, manifest_name: &str) {
    let manifest: Json = serde_json::from_slice(&fixture(manifest_name)).unwrap();
    let expected = manifest["entries"].as_array().unwrap();
    let actual = manifest_of(value);
    assert!(!expected.is_empty(), "{manifest_name} lists nothing");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "{manifest_name}: entry {i} differs");
    }
    assert_eq!(actual.len(), expected.len(), "{manifest_name}: entry count");
}

/// A zip archive holding `records` stored, as torch.save lays them out.
pub(crate) fn zip_of(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in records {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Where a record's data starts in an archive.
pub(crate) fn record_offset(archive: &[u8], name: &str) -> usize {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    let file = zip.by_name(name).unwrap();
    usize::try_from(file.data_start().unwrap()).unwrap()
}

/// A pickle of `_rebuild_tensor_v2` over a float storage: the bytes between `PROTO 2` and
/// `STOP` of `{"w": tensor}`.
pub(crate) fn tensor_pickle(storage_numel: u8, offset: u8, shape: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK".to_vec();
    p.push(storage_numel);
    p.extend_from_slice(b"tQK");
    p.push(offset);
    p.push(b'(');
    for &d in shape {
        p.extend_from_slice(&[b'K', d]);
    }
    p.extend_from_slice(b"t(");
    for &s in stride {
        p.extend_from_slice(&[b'K', s]);
    }
    p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtRu.");
    p
}

/// Reads a `.pt` file's bytes as `ckpt::load` does, checking CRCs; fails with the `.pt`
/// reader's own error.
pub(crate) fn read(bytes: &[u8]) -> Result<Value<'static>, ckpt::format::pytorch::PtError> {
    read_with(bytes, true)
}

/// [`read`], checking CRCs or not.
pub(crate) fn read_with(
    bytes: &[u8],
    verify: bool,
) -> Result<Value<'static>, ckpt::format::pytorch::PtError> {
    let options = ckpt::LoadOptions::new()
        .format(ckpt::format::PyTorch)
        .verify_checksums(verify);
    match ckpt::Checkpoint::from_bytes(bytes.to_vec(), &options) {
        Ok(checkpoint) => Ok(checkpoint.into_value()),
        Err(ckpt::Error::PyTorch { source, .. }) => Err(source),
        Err(other) => panic!("not an error of the .pt reader: {other}"),
    }
}

/// Loads a `.pt` file from disk, whatever its extension.
pub(crate) fn read_file(path: impl AsRef<std::path::Path>) -> Result<Value<'static>, ckpt::Error> {
    let options = ckpt::LoadOptions::new().format(ckpt::format::PyTorch);
    ckpt::load_with(path, &options).map(ckpt::Checkpoint::into_value)
}

/// Writes `value` as a `.pt` file into `out`.
pub(crate) fn write(
    value: &Value<'_>,
    out: &mut std::io::Cursor<Vec<u8>>,
) -> Result<(), ckpt::format::FormatError> {
    use ckpt::format::Format;
    ckpt::format::PyTorch.write(value, out)
}
