//! safetensors: files made by the Python `safetensors` package load and match their manifest;
//! what ckpt writes is byte-identical to what Python wrote; sharded checkpoints.

use std::path::Path;

use crate::common::models::{Net, bytes_of};
use ckpt::LoadFrom;
use ckpt::{StateDict, Tensor, Value, dict};
use sha2::{Digest, Sha256};

const FIXTURE: &str = "tests/fixtures/pytorch/cnn_bn.safetensors";

/// The manifest's tensors: key -> (dtype, shape, sha256 of the little-endian bytes).
fn manifest(path: &str) -> Vec<(String, String, Vec<usize>, String)> {
    let text = std::fs::read_to_string(format!("{path}.manifest.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["dtype"].as_str().unwrap().to_owned(),
                e["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
                e["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_python_written_file_matches_its_manifest() {
    let checkpoint = ckpt::load(FIXTURE).unwrap();
    assert_eq!(checkpoint.format().name(), "safetensors");
    let expected = manifest(FIXTURE);
    let tensors = checkpoint.tensors();
    assert_eq!(tensors.len(), expected.len());
    for (key, dtype, shape, digest) in expected {
        let t = checkpoint.get_tensor_view(&key);
        assert_eq!(t.dtype().as_str(), dtype, "{key}");
        assert_eq!(t.shape(), shape, "{key}");
        assert_eq!(sha256(&t.to_le_bytes().unwrap()), digest, "{key}");
    }
    // Zero-copy where the file's layout allows it.
    let Value::Tensor(t) = &checkpoint["0.weight"] else {
        panic!()
    };
    assert!(t.clone().into_owned().unwrap().is_mapped());
}

trait ViewOf {
    fn get_tensor_view(&self, key: &str) -> ckpt::tensor::TensorView<'_>;
}

impl ViewOf for ckpt::Checkpoint {
    fn get_tensor_view(&self, key: &str) -> ckpt::tensor::TensorView<'_> {
        self[key]
            .as_tensor()
            .unwrap_or_else(|| panic!("no tensor {key}"))
    }
}

#[test]
fn rewriting_a_python_file_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("again.safetensors");
    let checkpoint = ckpt::load(FIXTURE).unwrap();
    ckpt::save(&checkpoint, &out).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(FIXTURE).unwrap()
    );
}

#[test]
fn round_trips_through_every_format_pair() {
    let dir = tempfile::tempdir().unwrap();
    let model = Net::new(3.0);
    let formats = ["a.ckpt", "b.safetensors"];
    for first in formats {
        let path = dir.path().join(first);
        ckpt::save(model.state_dict(), &path).unwrap();
        for second in formats {
            let again = dir.path().join(format!("again-{second}"));
            ckpt::save(&ckpt::load(&path).unwrap(), &again).unwrap();
            let mut restored = Net::new(0.0);
            let _ = restored
                .load_state_dict(&ckpt::load(&again).unwrap(), true)
                .unwrap();
            assert_eq!(bytes_of(&restored), bytes_of(&model), "{first} -> {second}");
        }
    }
}

#[test]
fn metadata_is_kept_and_non_tensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let w = Tensor::from(ndarray::array![1.0f32, 2.0]);
    ckpt::save(
        dict! { "w" => &w, "__metadata__" => dict! { "format" => "pt", "step" => "7" } },
        &path,
    )
    .unwrap();
    let loaded = ckpt::load(&path).unwrap();
    assert_eq!(loaded["__metadata__"]["step"].as_str(), Some("7"));
    assert_eq!(loaded["w"].as_tensor().unwrap(), w.view());
    let mut model = crate::common::models::Linear::new(1, 1, 0.0);
    // The metadata is not a tensor: a state dict load sees only "w".
    let err = model.load_state_dict(&loaded, true).unwrap_err();
    assert_eq!(err.unexpected_keys(), ["w"]);

    let err = ckpt::save(
        dict! { "epoch" => 3, "w" => &w },
        dir.path().join("x.safetensors"),
    )
    .unwrap_err();
    assert!(
        err.to_string().ends_with(
            "\"epoch\": safetensors holds only tensors, and this is an int; save it as .ckpt or .pt"
        ),
        "{err}"
    );
    // An explicit format wins over the extension.
    let forced = dir.path().join("forced.bin");
    ckpt::save_with(
        dict! { "w" => &w },
        &forced,
        &ckpt::SaveOptions::new().format(ckpt::format::SafeTensors),
    )
    .unwrap();
    assert_eq!(ckpt::load(&forced).unwrap().format().name(), "safetensors");
}

#[test]
fn sharded_checkpoints_round_trip_and_stream_into_models() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("model.safetensors.index.json");
    let model = Net::new(2.0);
    // 128 + 32 + 32 + 8 bytes of fc1 and the buffers fill a 200-byte shard; fc2 goes to the next.
    ckpt::save_with(
        model.state_dict(),
        &index,
        &ckpt::SaveOptions::new().max_shard_bytes(200),
    )
    .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json"
        ]
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    assert_eq!(
        json["weight_map"]["fc1.weight"],
        "model-00001-of-00002.safetensors"
    );
    assert_eq!(
        json["weight_map"]["num_batches_tracked"],
        "model-00001-of-00002.safetensors"
    );
    assert_eq!(
        json["weight_map"]["fc2.weight"],
        "model-00002-of-00002.safetensors"
    );
    assert_eq!(
        json["weight_map"]["fc2.bias"],
        "model-00002-of-00002.safetensors"
    );
    assert_eq!(json["metadata"]["total_size"], model.state_dict().nbytes());

    let mut restored = Net::new(0.0);
    let _ = restored
        .load_state_dict(&ckpt::load(&index).unwrap(), true)
        .unwrap();
    assert_eq!(bytes_of(&restored), bytes_of(&model));
    let mut streamed = Net::new(0.0);
    let _ = streamed.load_from(&index).unwrap();
    assert_eq!(bytes_of(&streamed), bytes_of(&model));
}

#[test]
fn a_lying_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("m.safetensors.index.json");
    ckpt::save(Net::new(1.0).state_dict(), &index).unwrap();
    let shard = "m-00001-of-00001.safetensors";
    let write = |json: &str| std::fs::write(&index, json).unwrap();
    write(&format!(
        r#"{{"weight_map": {{"fc1.weight": "{shard}", "ghost": "{shard}"}}}}"#
    ));
    let err = ckpt::load(&index).unwrap_err();
    assert!(
        err.to_string()
            .contains("found in m-00001-of-00001.safetensors, but the index does not put it there"),
        "{err}"
    );
    write(&format!(
        r#"{{"weight_map": {{"fc1.weight": "{shard}", "fc1.bias": "{shard}", "running_mean": "{shard}", "num_batches_tracked": "{shard}", "fc2.weight": "{shard}", "fc2.bias": "{shard}", "ghost": "{shard}"}}}}"#
    ));
    let err = ckpt::load(&index).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "\"ghost\": sharded index: listed but absent from m-00001-of-00001.safetensors"
        ),
        "{err}"
    );
    write(r#"{"weight_map": {"fc1.weight": "../../etc/passwd"}}"#);
    let err = ckpt::load(&index).unwrap_err();
    assert!(err.to_string().contains("leaves the directory"), "{err}");
    write("not json");
    assert!(
        ckpt::load(&index)
            .unwrap_err()
            .to_string()
            .contains("sharded index: ")
    );
    assert!(Path::new(&index).exists());
}

#[test]
fn damaged_safetensors_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(FIXTURE).unwrap();
    let cut = dir.path().join("cut.safetensors");
    for len in [0, 4, 8, 9, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let err = ckpt::load(&cut).unwrap_err();
        assert!(
            err.to_string().starts_with(&cut.display().to_string()),
            "{len}: {err}"
        );
    }
    let mut lying = bytes.clone();
    lying[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&cut, &lying).unwrap();
    assert!(ckpt::load(&cut).is_err());
}
