//! Writing DCP checkpoints from one rank and from several: ckpt reads them back unchanged, and
//! the ones committed under `tests/fixtures/dcp/written/` (which
//! `tests/python/check_dcp_load.py` loads with real PyTorch, into other world sizes) are
//! exactly what the writer produces today.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ckpt::dcp::{RankPlan, RankWrite};
use ckpt::shard::{Chunk, copy_overlap};
use ckpt::state::KeyPath;
use ckpt::{SaveOptions, Tensor, Value, dict};
use serde_json::{Value as Json, json};

use crate::common::dcp::{assert_matches, dir, fixture, plain};
use crate::common::pytorch::sha256_hex;

/// A state saved from one rank loads back as it was: every dtype, a 0-d and an empty tensor,
/// a list holding tensors (nested through `planner_data`), and every kind of plain value.
#[test]
fn one_rank_round_trips() {
    let original = ckpt::load(fixture("single")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ckpt");
    ckpt::dcp::save(original.value(), &out).unwrap();
    let reloaded = ckpt::load(&out).unwrap();
    assert_eq!(reloaded.value(), original.value());
    assert_matches(reloaded.value(), "single");
}

/// Every tensor of the world-4 2-D mesh fixture split among three ranks along a dimension of
/// its own (rows or columns, unevenly), 0-d tensors and values on every rank: the commit keeps
/// one of each replicated item, and the checkpoint loads as PyTorch saved the original.
#[test]
fn three_ranks_round_trip() {
    let original = ckpt::load(fixture("world4_2d")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ckpt");
    write_ranks(original.value(), &out, 3, false, &SaveOptions::new());
    let reloaded = ckpt::load(&out).unwrap();
    assert_eq!(reloaded.value(), original.value());
    assert_matches(reloaded.value(), "world4_2d");
    for rank in 0..3 {
        assert!(out.join(format!("__{rank}_0.distcp")).is_file());
    }
}

/// Until the coordinator commits, the directory is no checkpoint, and an overwrite removes the
/// old `.metadata` before any rank rewrites its data.
#[test]
fn nothing_is_a_checkpoint_before_the_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ckpt");
    ckpt::dcp::save(dict! { "w" => Tensor::scalar(1.0f32) }, &out).unwrap();
    let options = SaveOptions::new();
    let state = dict! { "w" => Tensor::scalar(2.0f32) };
    let plan = ckpt::dcp::plan_rank(&state, &out, 0, &HashMap::new()).unwrap();
    let part = ckpt::dcp::write_rank(&state, &out, &plan, &options).unwrap();
    let err = ckpt::load(&out).unwrap_err().to_string();
    assert!(err.contains("no .metadata in it"), "{err}");
    ckpt::dcp::commit(&out, &[part], &options).unwrap();
    assert_eq!(
        ckpt::load(&out).unwrap()["w"]
            .as_tensor()
            .unwrap()
            .to_f64_vec()
            .unwrap(),
        [2.0]
    );
}

/// The commit refuses ranks whose chunks do not make the tensor, naming the key: a gap, and
/// one tensor given two global shapes.
#[test]
fn the_commit_checks_the_ranks_against_one_another() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ckpt");
    let options = SaveOptions::new();
    let rows = Chunk::split(&[4, 2], 0, 2).unwrap();
    let half = Tensor::zeros(ckpt::DType::F32, &[2, 2]).unwrap();
    let state = dict! { "w" => &half };
    let chunks = HashMap::from([("w".to_owned(), rows[0].clone())]);
    let plan = ckpt::dcp::plan_rank(&state, &out, 0, &chunks).unwrap();
    let first = ckpt::dcp::write_rank(&state, &out, &plan, &options).unwrap();
    let err = ckpt::dcp::commit(&out, std::slice::from_ref(&first), &options).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("\"w\"") && message.contains("cover 4 of the 8"),
        "{message}"
    );

    let other = Chunk::split(&[6, 2], 0, 3).unwrap().remove(1);
    let chunks = HashMap::from([("w".to_owned(), other)]);
    let plan = ckpt::dcp::plan_rank(&state, &out, 1, &chunks).unwrap();
    let second = ckpt::dcp::write_rank(&state, &out, &plan, &options).unwrap();
    let message = ckpt::dcp::commit(&out, &[first, second], &options)
        .unwrap_err()
        .to_string();
    assert!(message.contains("global shape [6, 2]"), "{message}");
    assert!(!out.join(".metadata").exists());
}

/// The checkpoints `check_dcp_load.py` loads with PyTorch, and their manifests: the `single`
/// fixture as one rank writes it, the world-2 `DTensor` fixture's model and Adam state as
/// three ranks do, and the world-4 2-D mesh fixture as four ranks do with every other tensor
/// replicated (written once). Set `CKPT_REGENERATE=1` to rewrite them after a deliberate change to the
/// writer.
#[test]
fn written_checkpoints_match_the_committed_ones() {
    let regenerate = std::env::var_os("CKPT_REGENERATE").is_some();
    let root = dir().join("written");
    for (name, source, ranks, replicate) in [
        ("one_rank", "single", 1, false),
        ("three_ranks", "world2_dtensor", 3, false),
        ("four_ranks_replicated", "world4_2d", 4, true),
    ] {
        let value = ckpt::load(fixture(source)).unwrap().value().clone();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join(name);
        write_ranks(
            &value,
            &out,
            ranks,
            replicate,
            &SaveOptions::new().fsync(false),
        );
        let manifest = manifest_of(&value, name, ranks);
        let committed = root.join(name);
        if regenerate {
            let _ = std::fs::remove_dir_all(&committed);
            std::fs::create_dir_all(&committed).unwrap();
            for file in files(&out) {
                std::fs::copy(out.join(&file), committed.join(&file)).unwrap();
            }
            std::fs::write(root.join(format!("{name}.manifest.json")), &manifest).unwrap();
        }
        assert_eq!(
            files(&out),
            files(&committed),
            "{name}: run with CKPT_REGENERATE=1"
        );
        for file in files(&out) {
            assert!(
                std::fs::read(out.join(&file)).unwrap()
                    == std::fs::read(committed.join(&file)).unwrap(),
                "{name}/{file} is stale: run with CKPT_REGENERATE=1"
            );
        }
        let on_disk = std::fs::read_to_string(root.join(format!("{name}.manifest.json"))).unwrap();
        assert_eq!(on_disk, manifest, "{name}.manifest.json is stale");
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Writes `value` as `ranks` ranks would hold it and commits: the i-th tensor split along
/// dimension `i % ndim` ([`Chunk::split`]: the first pieces one larger), or, when `replicate`
/// and `i` is odd, held whole by every rank; 0-d tensors and plain values given to every
/// rank. The plans are deduplicated, so each replicated item is written once. Returns what
/// each rank wrote.
fn write_ranks(
    value: &Value<'static>,
    out: &PathBuf,
    ranks: u64,
    replicate: bool,
    options: &SaveOptions,
) -> Vec<RankWrite> {
    let states = rank_states(value, ranks, replicate);
    let plans: Vec<RankPlan> = states
        .iter()
        .enumerate()
        .map(|(rank, (state, chunks))| ckpt::dcp::plan_rank(state, out, rank, chunks).unwrap())
        .collect();
    // Plans and parts travel to the coordinator and back as JSON, as between processes.
    let plans = ckpt::dcp::dedup(&through_json(&plans));
    let parts: Vec<RankWrite> = states
        .iter()
        .zip(through_json(&plans))
        .map(|((state, _), plan)| ckpt::dcp::write_rank(state, out, &plan, options).unwrap())
        .collect();
    let parts = through_json(&parts);
    ckpt::dcp::commit(out, &parts, options).unwrap();
    parts
}

/// Each rank's state and chunks, as [`write_ranks`] splits `value`.
fn rank_states(
    value: &Value<'static>,
    ranks: u64,
    replicate: bool,
) -> Vec<(Value<'static>, HashMap<String, Chunk>)> {
    let mut tensors = Vec::new();
    value.walk(&mut KeyPath::new(), &mut |key, leaf| {
        if let Value::Tensor(t) = leaf {
            tensors.push((key.to_owned(), t.view().to_tensor().unwrap()));
        }
    });
    let mut states = Vec::new();
    for rank in 0..ranks {
        let mut local = value.clone();
        let mut chunks = HashMap::new();
        for (i, (key, tensor)) in tensors.iter().enumerate() {
            let global: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
            if global.is_empty() || ranks == 1 || (replicate && i % 2 == 1) {
                continue;
            }
            let chunk =
                Chunk::split(&global, i % global.len(), ranks).unwrap()[rank as usize].clone();
            let whole = Chunk::whole(global).unwrap();
            let mut data = vec![0u8; chunk.buffer_len(tensor.dtype()).unwrap()];
            let bytes = tensor.to_le_bytes().unwrap();
            copy_overlap(tensor.dtype(), &whole, &bytes, &chunk, &mut data).unwrap();
            let shape: Vec<usize> = chunk.sizes().iter().map(|&d| d as usize).collect();
            let piece = Tensor::from_le_bytes(tensor.dtype(), &shape, &data).unwrap();
            *leaf_mut(&mut local, key) = Value::from(piece);
            chunks.insert(key.clone(), chunk);
        }
        states.push((local, chunks));
    }
    states
}

fn through_json<T: serde::Serialize + serde::de::DeserializeOwned>(items: &[T]) -> Vec<T> {
    items
        .iter()
        .map(|p| serde_json::from_str(&serde_json::to_string(p).unwrap()).unwrap())
        .collect()
}

/// The leaf under the flattened `key`.
fn leaf_mut<'v>(value: &'v mut Value<'static>, key: &str) -> &'v mut Value<'static> {
    let mut node = value;
    let mut rest = key;
    while !rest.is_empty() {
        node = match node {
            Value::Map(map) => {
                // The longest key of the map that `rest` starts with: keys may hold dots.
                let (k, tail) = map
                    .keys()
                    .filter_map(|k| {
                        let k = k.to_string();
                        let tail = rest.strip_prefix(k.as_str())?;
                        (tail.is_empty() || tail.starts_with('.')).then_some((k, tail.len()))
                    })
                    .max_by_key(|(k, _)| k.len())
                    .unwrap();
                rest = &rest[rest.len() - tail..];
                map.get_mut(&ckpt::value::Key::Str(k)).unwrap()
            }
            Value::List(items) => {
                let (i, tail) = rest.split_once('.').unwrap_or((rest, ""));
                rest = tail;
                &mut items[i.parse::<usize>().unwrap()]
            }
            other => panic!("{key} runs through {other:?}"),
        };
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    node
}

/// The manifest `check_dcp_load.py` reads: every flattened key with its path, tensors with
/// dtype, shape, values and sha256, values with their Python type as ckpt writes it back.
fn manifest_of(value: &Value<'static>, name: &str, ranks: u64) -> String {
    let mut lines = Vec::new();
    let mut paths = Vec::new();
    collect_paths(value, &mut Vec::new(), &mut paths);
    for (path, leaf) in paths {
        let key: Vec<String> = path
            .iter()
            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
            .collect();
        let key = key.join(".");
        let entry = match leaf {
            Value::Tensor(t) => {
                let t = t.view();
                json!({
                    "key": key, "kind": "tensor", "dtype": t.dtype().as_str(), "shape": t.shape(),
                    "sha256": sha256_hex(&t.to_le_bytes().unwrap()),
                    "values": t.to_f64_vec().unwrap(), "path": path,
                })
            }
            other => json!({
                "key": key, "kind": "value", "type": python_type(other), "value": plain(other),
                "path": path,
            }),
        };
        lines.push(format!("    {}", serde_json::to_string(&entry).unwrap()));
    }
    format!(
        "{{\n  \"name\": \"{name}\",\n  \"writer\": \"ckpt\",\n  \"world_size\": {ranks},\n  \
         \"entries\": [\n{}\n  ]\n}}\n",
        lines.join(",\n")
    )
}

/// Leaves as DCP's planner flattens them: lists are descended only when they hold a tensor
/// or a dict, directly or through lists.
fn collect_paths<'v>(
    value: &'v Value<'static>,
    path: &mut Vec<Json>,
    out: &mut Vec<(Vec<Json>, &'v Value<'static>)>,
) {
    fn descended(v: &Value<'_>) -> bool {
        match v {
            Value::List(items) => items
                .iter()
                .any(|v| matches!(v, Value::Tensor(_) | Value::Map(_)) || descended(v)),
            _ => false,
        }
    }
    match value {
        Value::Map(map) => {
            for (k, v) in map {
                path.push(Json::from(k.to_string()));
                collect_paths(v, path, out);
                path.pop();
            }
        }
        Value::List(items) if descended(value) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Json::from(i));
                collect_paths(v, path, out);
                path.pop();
            }
        }
        leaf => out.push((path.clone(), leaf)),
    }
}

fn python_type(value: &Value<'_>) -> &'static str {
    match value {
        Value::None => "none",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::String(_) => "str",
        Value::List(_) => "list",
        Value::Bytes(_) => "bytes",
        other => panic!("no Python type for {other:?}"),
    }
}
