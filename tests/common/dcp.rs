//! PyTorch Distributed Checkpoint fixtures (`tests/fixtures/dcp`, made by
//! `tests/python/make_dcp_fixtures.py`) and their manifests: what each entry of a loaded
//! checkpoint must be.

use std::path::PathBuf;

use ckpt::Value;
use ckpt::value::Key;
use serde_json::Value as Json;

use super::pytorch::sha256_hex;

/// The fixtures, one per way PyTorch shards: one process, `DTensor` rows over 2 ranks, a 2-D
/// mesh of 4, FSDP2 over 4.
pub(crate) const FIXTURES: [&str; 4] = ["single", "world2_dtensor", "world4_2d", "world4_fsdp2"];

pub(crate) fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dcp")
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    dir().join(name)
}

pub(crate) fn manifest(name: &str) -> Json {
    let text = std::fs::read_to_string(dir().join(format!("{name}.manifest.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The entries of a manifest: key, kind, path and the expected value.
pub(crate) fn entries(manifest: &Json) -> &Vec<Json> {
    manifest["entries"].as_array().unwrap()
}

/// The value at a manifest entry's `path` (string parts index maps, integers lists).
pub(crate) fn at<'v>(value: &'v Value<'static>, path: &[Json]) -> &'v Value<'static> {
    let mut node = value;
    for part in path {
        node = match (node, part) {
            (Value::Map(map), Json::String(s)) => map
                .get(&Key::Str(s.clone()))
                .unwrap_or_else(|| panic!("no {s:?} along {path:?}")),
            (Value::List(items), Json::Number(i)) => &items[i.as_u64().unwrap() as usize],
            (other, part) => panic!("{part} along {path:?} reaches {other:?}"),
        };
    }
    node
}

/// Asserts that `value` holds every entry of the manifest `name` at its path, bit for bit:
/// tensors by dtype, shape and the sha256 of their little-endian bytes, values exactly.
pub(crate) fn assert_matches(value: &Value<'static>, name: &str) {
    let manifest = manifest(name);
    for entry in entries(&manifest) {
        let key = entry["key"].as_str().unwrap();
        let found = at(value, entry["path"].as_array().unwrap());
        assert_entry(found, entry, &format!("{name}: {key}"));
    }
}

pub(crate) fn assert_entry(found: &Value<'_>, entry: &Json, what: &str) {
    if entry["kind"] == "tensor" {
        let t = found
            .as_tensor()
            .unwrap_or_else(|| panic!("{what}: {found:?}"));
        assert_eq!(t.dtype().as_str(), entry["dtype"], "{what}");
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape(), shape, "{what}");
        assert_eq!(
            sha256_hex(&t.to_le_bytes().unwrap()),
            entry["sha256"],
            "{what}"
        );
        return;
    }
    assert_eq!(plain(found), expected(entry), "{what}");
}

/// A plain value as the manifests write it.
pub(crate) fn plain(value: &Value<'_>) -> Json {
    match value {
        Value::None => Json::Null,
        Value::Bool(b) => Json::from(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(x) => Json::from(*x),
        Value::String(s) => Json::from(s.as_str()),
        Value::List(items) => Json::Array(items.iter().map(plain).collect()),
        Value::Bytes(b) => Json::from(b.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        other => panic!("no manifest form for {other:?}"),
    }
}

fn expected(entry: &Json) -> Json {
    entry["value"].clone()
}
