//! The `ckpt` command-line tool, run as a user would.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use ckpt::{StateDict, Tensor, Value, dict};
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
