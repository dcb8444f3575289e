//! The `ckpt` command-line tool, run as a user would.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ckpt::distributed::{self, Job};
use ckpt::shard::{Chunk, Sharded};
use ckpt::{SaveOptions, StateDict, Tensor, Value, dict};
use common::models::Net;
use ndarray::array;

fn ckpt(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn checkpoint(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("c.ckpt");
    let model = Net::new(1.0);
    ckpt::save(
        dict! { "epoch" => 7, "loss" => 0.25, "model" => model.state_dict(), "note" => Value::None },
        &path,
    )
    .unwrap();
    path
}

#[test]
fn inspect_prints_a_table_with_totals() {
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint(dir.path());
    let out = ckpt(&[&"inspect", &path]);
    assert!(out.status.success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("{} (ckpt)", path.display()));
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["key", "dtype", "shape", "size", "device"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["model.fc1.weight", "F32", "[8,", "4]", "128", "B", "cpu"]
    );
    assert!(text.contains("epoch = 7\n"), "{text}");
    assert!(
        text.ends_with("6 tensors, 3 values, 308 B of tensor data\n"),
        "{text}"
    );
}

#[test]
fn inspect_json_is_the_manifest_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint(dir.path());
    let out = ckpt(&[&"inspect", &"--json", &path]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["format"], "ckpt");
    let entries = json["entries"].as_array().unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "epoch",
            "loss",
            "model.fc1.weight",
            "model.fc1.bias",
            "model.running_mean",
            "model.num_batches_tracked",
            "model.fc2.weight",
            "model.fc2.bias",
            "note"
        ]
    );
    assert_eq!(entries[0], serde_json::json!({"key": "epoch", "value": 7}));
    assert_eq!(
        entries[8],
        serde_json::json!({"key": "note", "value": null})
    );
    assert_eq!(entries[5]["dtype"], "I64");
    assert_eq!(entries[5]["shape"], serde_json::json!([]));
    // sha256 of 1i64 little-endian.
    assert_eq!(
        entries[5]["sha256"],
        "7c9fa136d4413fa6173637e883b6998d32e1d675f88cddff9dcbcf331820f4b8"
    );

    // A file made by Python's safetensors gives exactly its manifest.
    let fixture = "tests/fixtures/pytorch/cnn_bn.safetensors";
    let out = ckpt(&[&"inspect", &"--json", &fixture]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{fixture}.manifest.json")).unwrap())
            .unwrap();
    let sorted = |v: &serde_json::Value| {
        let mut e = v["entries"].as_array().unwrap().clone();
        e.sort_by_key(|x| x["key"].as_str().unwrap().to_owned());
        e
    };
    assert_eq!(json["format"], "safetensors");
    assert_eq!(
        sorted(&json),
        sorted(&manifest),
        "safetensors keeps no save order, so compare sorted"
    );
}

#[test]
fn diff_reports_keys_layouts_values_and_differences() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.ckpt"), dir.path().join("b.safetensors"));
    let w = Tensor::from(array![1.0f32, 2.0, 3.0]);
    let w2 = Tensor::from(array![1.0f32, 2.5, 3.0]);
    ckpt::save(
        dict! { "w" => &w, "same" => &w, "gone" => &w, "shape" => &w },
        &a,
    )
    .unwrap();
    ckpt::save(
        dict! { "w" => &w2, "same" => &w, "new" => &w, "shape" => Tensor::from(array![1.0f32]) },
        &b,
    )
    .unwrap();
    let out = ckpt(&[&"diff", &a, &b]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("only in A: gone\n"), "{text}");
    assert!(text.contains("only in B: new\n"), "{text}");
    assert!(
        text.contains("changed: shape: F32 [3] -> F32 [1]\n"),
        "{text}"
    );
    assert!(text.contains("max |a-b| w: 5e-1\n"), "{text}");
    assert!(
        text.ends_with("2 tensors compared, 1 equal, 1 differ; 1 only in A, 1 only in B\n"),
        "{text}"
    );

    let out = ckpt(&[&"diff", &a, &a]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn convert_strips_prefixes_across_formats() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("dp.ckpt");
    let model = Net::new(2.0);
    let prefixed: Value<'_> = model
        .state_dict()
        .into_iter()
        .map(|(k, v)| (format!("module.{k}"), v))
        .collect();
    ckpt::save(&prefixed, &input).unwrap();
    let output = dir.path().join("plain.safetensors");
    let out = ckpt(&[&"convert", &input, &output, &"--strip-prefix", &"module."]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut restored = Net::new(0.0);
    let _ = restored
        .load_state_dict(&ckpt::load(&output).unwrap(), true)
        .unwrap();
    assert_eq!(
        common::models::bytes_of(&restored),
        common::models::bytes_of(&model)
    );
}

#[test]
fn verify_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint(dir.path());
    let out = ckpt(&[&"verify", &path]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!(
            "{}: OK (ckpt, 6 tensors, 308 B): every checksum matches (xxh3-64 of the header and of every tensor)\n",
            path.display()
        )
    );
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[70] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let out = ckpt(&[&"verify", &path]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!(
            "ckpt: {}: \"model.fc1.weight\": checksum mismatch",
            path.display()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// `inspect --json` of PyTorch's files of every dtype and of the values beyond JSON's is their
/// manifest; `convert` carries every dtype into each format that has it, and `diff` compares
/// complex tensors by the modulus of their difference.
#[test]
fn every_dtype_and_value_kind_through_inspect_convert_and_diff() {
    for name in [
        "dtypes_all.pt",
        "globals/complex.pt",
        "globals/bytes.pt",
        "globals/bytearray.pt",
        "globals/dtype_objects.pt",
        "globals/counter.pt",
    ] {
        let fixture = format!("tests/fixtures/pytorch/{name}");
        let out = ckpt(&[&"inspect", &"--json", &fixture]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{fixture}.manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["entries"], manifest["entries"], "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let input = "tests/fixtures/pytorch/dtypes_all.pt";
    for out_name in ["all.ckpt", "all.pt"] {
        let output = dir.path().join(out_name);
        let out = ckpt(&[&"convert", &input, &output]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = ckpt(&[&"diff", &input, &output]);
        assert!(out.status.success(), "{out_name}: {}", stdout(&out));
    }
    // safetensors has no complex128: the error names the key and says where it fits.
    let out = ckpt(&[&"convert", &input, &dir.path().join("all.safetensors")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("safetensors has no dtype for C128"), "{err}");
    // A changed imaginary part is a difference of its size.
    let a = dir.path().join("a.ckpt");
    let b = dir.path().join("b.ckpt");
    let c = |im: f32| Tensor::from(array![ckpt::dtype::Complex::new(1.0f32, im)]);
    ckpt::save(dict! { "z" => c(2.0) }, &a).unwrap();
    ckpt::save(dict! { "z" => c(-1.0) }, &b).unwrap();
    let out = ckpt(&[&"diff", &a, &b]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("max |a-b| z: 3e0"),
        "{}",
        stdout(&out)
    );
}

/// A training checkpoint PyTorch saved (`epoch`, `model_state_dict`, `optimizer_state_dict`,
/// `loss`) into safetensors: refused naming the first plain value and the ways out; its model
/// alone with `--select`; every tensor with `--plain-values drop`, or with the values kept as
/// metadata. Each output holds PyTorch's tensors, bit for bit.
#[test]
fn convert_a_training_checkpoint_to_safetensors() {
    let input = "tests/fixtures/pytorch/checkpoint_adam.pt";
    let original = ckpt::load(input).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_path = |name: &str| dir.path().join(name);
    let same_tensors = |path: &Path, prefix: &str| {
        let converted = ckpt::load(path).unwrap();
        let tensors = converted.tensors();
        assert!(!tensors.is_empty());
        for (key, tensor) in &tensors {
            let theirs = original.value().lookup(&format!("{prefix}{key}"));
            let theirs = theirs.and_then(Value::as_tensor).unwrap();
            assert_eq!(
                theirs.to_le_bytes().unwrap(),
                tensor.to_le_bytes().unwrap(),
                "{key}"
            );
        }
        converted
    };

    let out = ckpt(&[&"convert", &input, &out_path("all.safetensors")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"epoch\": safetensors holds only tensors, and this is an int"),
        "{err}"
    );
    assert!(
        err.contains("--select KEY") && err.contains("--plain-values drop|metadata"),
        "{err}"
    );

    let model = out_path("model.safetensors");
    let out = ckpt(&[&"convert", &input, &model, &"--select", &"model_state_dict"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let converted = same_tensors(&model, "model_state_dict.");
    assert_eq!(converted.tensors().len(), 4);

    let dropped = out_path("dropped.safetensors");
    let out = ckpt(&[&"convert", &input, &dropped, &"--plain-values", &"drop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let converted = same_tensors(&dropped, "");
    assert_eq!(converted.tensors().len(), original.tensors().len());
    assert!(converted.value().get_value("__metadata__").is_none());

    let kept = out_path("kept.safetensors");
    let out = ckpt(&[&"convert", &input, &kept, &"--plain-values", &"metadata"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let converted = same_tensors(&kept, "");
    let metadata = &converted.value()["__metadata__"];
    assert_eq!(metadata["epoch"].as_str(), Some("7"));
    assert_eq!(metadata["loss"].as_str(), Some("0.125"));
    assert_eq!(
        metadata["optimizer_state_dict.param_groups.0.lr"].as_str(),
        Some("0.001")
    );

    // Metadata is safetensors'; a key the file lacks is named with the ones it has.
    let out = ckpt(&[
        &"convert",
        &input,
        &out_path("x.ckpt"),
        &"--plain-values",
        &"metadata",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--plain-values metadata is for safetensors output"),
        "{err}"
    );
    let out = ckpt(&[
        &"convert",
        &input,
        &out_path("x.safetensors"),
        &"--select",
        &"model",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--select \"model\": the file has no such key (its top-level keys: \"epoch\", \"model_state_dict\""),
        "{err}"
    );
}

/// A PyTorch Distributed Checkpoint directory through the tool: `inspect` lists its tensors by
/// global shape, `verify` checks every item's CRC-32s, and `convert` writes it consolidated as
/// a `.pt` file and as ckpt's format, which load as the directory does.
#[test]
fn dcp_directories_inspect_verify_and_convert() {
    let dcp = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dcp/world2_dtensor");
    let out = ckpt(&[&"inspect", &dcp]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = stdout(&out);
    assert!(
        table.contains("model.0.weight") && table.contains("[6, 4]"),
        "{table}"
    );
    let out = ckpt(&[&"verify", &dcp]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let consolidated = ckpt::load(&dcp).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["consolidated.pt", "consolidated.ckpt"] {
        let target = dir.path().join(name);
        let out = ckpt(&[&"convert", &dcp, &target]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            ckpt::load(&target).unwrap().value(),
            consolidated.value(),
            "{name}"
        );
    }
}

/// One rank's part of a small sharded model: a matrix split by rows, a vector split into
/// eight chunks two per rank, and a replicated bias.
#[derive(StateDict)]
struct Part {
    w: Sharded,
    v: Sharded,
    bias: Tensor,
}

/// The value of element `i` of tensor `seed`.
fn element(seed: u64, i: u64) -> f32 {
    ((i * 31 + seed * 7) % 1000) as f32 - 500.0
}

fn global(seed: u64, shape: &[u64]) -> Tensor {
    let n: u64 = shape.iter().product();
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    Tensor::from_vec((0..n).map(|i| element(seed, i)).collect(), &dims).unwrap()
}

fn part(rank: usize, world: usize) -> Part {
    let w = Chunk::split(&[8, 4], 0, world as u64).unwrap();
    let v = Chunk::split(&[64], 0, 2 * world as u64).unwrap();
    Part {
        w: Sharded::from_whole(&global(1, &[8, 4]).view(), vec![w[rank].clone()]).unwrap(),
        v: Sharded::from_whole(&global(2, &[64]).view(), v[2 * rank..2 * rank + 2].to_vec())
            .unwrap(),
        bias: global(3, &[4]),
    }
}

/// Runs `ranks` of a job of `world` ranks in threads, saving into `dir`. Without rank 0 the
/// others give up waiting for the commit after 100 ms, leaving an incomplete checkpoint, as
/// a killed coordinator does.
fn save_sharded(dir: &Path, world: usize, ranks: &[usize]) {
    let timeout = if ranks.contains(&0) {
        Duration::from_secs(60)
    } else {
        Duration::from_millis(100)
    };
    std::thread::scope(|s| {
        for &rank in ranks {
            s.spawn(move || {
                let job = Job::new(rank, world).timeout(timeout).block_size(4096);
                let saved = distributed::save(
                    &part(rank, world).state_dict(),
                    dir,
                    &job,
                    &SaveOptions::new(),
                );
                assert_eq!(saved.is_ok(), ranks.contains(&0), "{saved:?}");
            });
        }
    });
}

/// `inspect` of a sharded directory: the job, every tensor by global shape and its chunks by
/// rank, from the manifests; of an incomplete one, the ranks present and missing.
#[test]
fn inspect_sharded_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-100");
    save_sharded(&dir, 2, &[0, 1]);
    let out = ckpt(&[&"inspect", &dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("{} (ckpt sharded: committed, 2 ranks)", dir.display())
    );
    let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(words(lines[1]), "key dtype shape size chunks");
    // Rank 0 writes the replicated tensors first.
    assert_eq!(words(lines[2]), "bias F32 [4] 16 B replicated (rank 0)");
    assert_eq!(
        words(lines[3]),
        "w F32 [8, 4] 128 B r0 [0..4, 0..4], r1 [4..8, 0..4]"
    );
    assert_eq!(
        words(lines[4]),
        "v F32 [64] 256 B r0 [0..16], r0 [16..32], r1 [32..48], r1 [48..64]"
    );
    assert_eq!(lines[5], "3 tensors, 400 B of tensor data stored");

    // Four ranks: eight chunks of v, two on each.
    let four = tmp.path().join("step-200");
    save_sharded(&four, 4, &[0, 1, 2, 3]);
    let text = stdout(&ckpt(&[&"inspect", &four]));
    assert!(text.contains("8 chunks, 2 on each of ranks 0..4"), "{text}");

    // Ranks 1 and 3 of four finished; the coordinator never committed.
    let partial = tmp.path().join("step-300");
    save_sharded(&partial, 4, &[1, 3]);
    let out = ckpt(&[&"inspect", &partial]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "{} (ckpt sharded: INCOMPLETE (no checkpoint.json): rank(s) [1, 3] of 4 present, [0, 2] missing)\n",
            partial.display()
        )),
        "{text}"
    );
    assert!(text.contains("r1 [2..4, 0..4], r3 [6..8, 0..4]"), "{text}");
    assert!(
        text.ends_with("not loadable: `ckpt clean` lists and removes it\n"),
        "{text}"
    );
}

/// `verify` of a sharded directory reads every block of every rank's data: all match, or
/// each damaged block is named by key and file, with a failing exit; an incomplete
/// directory is refused naming the missing ranks.
#[test]
fn verify_sharded_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-100");
    save_sharded(&dir, 2, &[0, 1]);
    let out = ckpt(&[&"verify", &dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        format!(
            "{}: OK (ckpt sharded, 2 ranks, 3 tensors, 400 B): every checksum matches (xxh3-64 of every block of tensor data)\n",
            dir.display()
        )
    );

    // Flip a byte of the last element of rank 1's last chunk of v, and of its first of w.
    let data = dir.join("rank-1.ckpt");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rank-1.manifest.json")).unwrap()).unwrap();
    let stored = |key: &str| {
        manifest["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == key)
            .unwrap()["stored"]
            .clone()
    };
    let (w, v) = (stored("w"), stored("v"));
    let mut bytes = std::fs::read(&data).unwrap();
    let w_at = w["offset"].as_u64().unwrap() as usize;
    bytes[w_at] ^= 1;
    let v_end = (v["offset"].as_u64().unwrap() + v["length"].as_u64().unwrap()) as usize;
    bytes[v_end - 1] ^= 1;
    std::fs::write(&data, &bytes).unwrap();
    let out = ckpt(&[&"verify", &dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert_eq!(
        lines[0],
        format!(
            "ckpt: {}: the data of \"w\" is damaged: bytes {w_at}..{} do not match their checksum",
            data.display(),
            w_at + 64
        )
    );
    assert!(
        lines[1].starts_with(&format!(
            "ckpt: {}: the data of \"v\" is damaged",
            data.display()
        )),
        "{err}"
    );
    assert_eq!(
        lines[2],
        format!(
            "ckpt: {}: DAMAGED: 2 block(s) of 2 tensor(s) do not match their checksums",
            dir.display()
        )
    );

    let partial = tmp.path().join("step-200");
    save_sharded(&partial, 3, &[2]);
    let out = ckpt(&[&"verify", &partial]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("an incomplete sharded checkpoint (no checkpoint.json): manifests of rank(s) [2] are present; of a job of 3, rank(s) [0, 1] are missing"),
        "{err}"
    );
}

/// `clean` lists the incomplete sharded checkpoints of a run's directory and its
/// sub-directories, removes them only when told to, and never touches committed ones or
/// other files.
#[test]
fn clean_lists_and_removes_incomplete_sharded_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let (done, killed, early) = (
        run.join("step-100"),
        run.join("step-200"),
        run.join("step-300"),
    );
    save_sharded(&done, 2, &[0, 1]);
    save_sharded(&killed, 2, &[1]);
    // A rank killed before its manifest: only its data file.
    std::fs::create_dir(&early).unwrap();
    std::fs::write(early.join("rank-0.ckpt"), b"partial").unwrap();
    std::fs::write(early.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir(run.join("logs")).unwrap();
    let before = ckpt::load(done.join("rank-0.ckpt")).unwrap();

    let out = ckpt(&[&"clean", &run]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "incomplete: {} (INCOMPLETE (no checkpoint.json): rank(s) [1] of 2 present, [0] missing; 2 file(s), ",
            killed.display()
        )),
        "{text}"
    );
    assert_eq!(
        lines[1],
        format!(
            "incomplete: {} (INCOMPLETE (no checkpoint.json): rank(s) [] present, no manifest says how many ranks the job has; 1 file(s), 7 B)",
            early.display()
        )
    );
    assert_eq!(
        lines[2],
        "2 incomplete sharded checkpoint(s), 1 committed kept; run with --yes to remove them"
    );
    assert!(killed.join("rank-1.manifest.json").exists());

    let out = ckpt(&[&"clean", &"--yes", &run]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains(&format!("removed: {}", killed.display())),
        "{text}"
    );
    assert!(
        text.ends_with("2 incomplete sharded checkpoint(s) removed, 1 committed kept\n"),
        "{text}"
    );
    // The emptied directory is gone; the one with a file of the user's keeps it.
    assert!(!killed.exists());
    assert_eq!(
        std::fs::read_dir(&early)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        ["notes.txt"]
    );
    assert!(run.join("logs").is_dir());
    assert_eq!(
        distributed::status(&done).unwrap(),
        distributed::Status::Complete { world_size: 2 }
    );
    assert_eq!(
        ckpt::load(done.join("rank-0.ckpt")).unwrap().value(),
        before.value()
    );

    // Pointed at a committed checkpoint itself: nothing to do.
    let out = ckpt(&[&"clean", &"--remove", &done]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "0 incomplete sharded checkpoint(s) removed, 1 committed kept\n"
    );
}

/// `inspect` and `verify` of a sharded directory named by a URL (`file://` here; `s3://` alike),
/// with its trailing slash.
#[cfg(feature = "object-store")]
#[test]
fn inspect_and_verify_sharded_directories_at_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-100");
    save_sharded(&dir, 2, &[0, 1]);
    let url = format!("file://{}/", dir.display());
    let out = ckpt(&[&"inspect", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("{url} (ckpt sharded: committed, 2 ranks)\n")),
        "{text}"
    );
    assert!(
        text.contains("3 tensors, 400 B of tensor data stored"),
        "{text}"
    );
    let out = ckpt(&[&"verify", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).starts_with(&format!(
            "{url}: OK (ckpt sharded, 2 ranks, 3 tensors, 400 B)"
        )),
        "{}",
        stdout(&out)
    );
}
