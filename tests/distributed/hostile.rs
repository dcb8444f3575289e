//! Damaged and hostile files of a committed sharded checkpoint: a typed error naming the
//! file (or the key, for tensor data), never a panic or an unbounded allocation.

use std::path::{Path, PathBuf};

use ckpt::distributed::{self, Error};
use ckpt::shard::Chunk;
use ckpt::{DType, StateDictOptions, Tensor};
use xxhash_rust::xxh3::xxh3_64;

use super::reshard::{Net, save_job};
use super::{parts, whole, zeros};

const SHAPE: [u64; 2] = [64, 16];

fn saved() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    let states: Vec<Net> = Chunk::split(&SHAPE, 0, 2)
        .unwrap()
        .into_iter()
        .map(|c| Net {
            w: parts(5, &SHAPE, vec![c]),
            b: whole(6, &[16]),
        })
        .collect();
    save_job(&dir, &states).into_iter().for_each(|r| r.unwrap());
    (tmp, dir)
}

fn load(dir: &Path) -> Error {
    let mut net = Net {
        w: zeros(&SHAPE, vec![Chunk::whole(SHAPE.to_vec()).unwrap()]),
        b: Tensor::zeros(DType::F32, &[16]).unwrap(),
    };
    let before = net.w.clone();
    let err = distributed::load(&mut net, dir, &StateDictOptions::new()).unwrap_err();
    assert_eq!(net.w, before, "a failed load changes nothing");
    err
}

/// Replaces rank 1's manifest with `bytes`, and the commit marker's checksum of it, as an
/// attacker who controls the directory would.
fn forge_manifest(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join("rank-1.manifest.json"), bytes).unwrap();
    let marker = dir.join("checkpoint.json");
    let mut metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    metadata["manifests"][1] = xxh3_64(bytes).into();
    std::fs::write(marker, serde_json::to_vec(&metadata).unwrap()).unwrap();
}

#[test]
fn a_damaged_metadata_file_is_named() {
    for bytes in [
        &b"{\"format\": \"ckpt-sharded\", \"version\": 1, \"world_size\": 18446744073709551615, \"manifests\": []}"[..],
        b"\x00\xff not json",
        b"{\"format\": \"ckpt-sharded\"",
    ] {
        let (_tmp, dir) = saved();
        std::fs::write(dir.join("checkpoint.json"), bytes).unwrap();
        let err = load(&dir);
        assert!(
            matches!(&err, Error::Invalid { file, .. } if file.to_string().ends_with("checkpoint.json")),
            "{err}"
        );
    }
}

#[test]
fn a_manifest_changed_after_the_commit_is_named() {
    let (_tmp, dir) = saved();
    let file = dir.join("rank-1.manifest.json");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let err = load(&dir);
    assert!(
        err.to_string()
            .contains("rank-1.manifest.json: changed since the checkpoint was committed"),
        "{err}"
    );
}

#[test]
fn hostile_manifests_are_refused_naming_the_file() {
    let (_tmp, dir) = saved();
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rank-1.manifest.json")).unwrap()).unwrap();
    let mut cases = Vec::new();
    // A chunk of a tensor too large to count.
    let mut huge = good.clone();
    huge["entries"][1]["stored"]["chunk"]["global"] = serde_json::json!([u64::MAX, u64::MAX]);
    cases.push((huge, "too large"));
    // Data past the end of the file.
    let mut past = good.clone();
    past["entries"][1]["stored"]["offset"] = serde_json::json!(u64::MAX - 4);
    cases.push((past, "past the end"));
    // Too few checksums.
    let mut few = good.clone();
    few["entries"][1]["stored"]["checksums"] = serde_json::json!([]);
    cases.push((few, "checksums for"));
    // Another rank's file.
    let mut other = good.clone();
    other["rank"] = serde_json::json!(0);
    cases.push((other, "says it is rank 0"));
    for (manifest, expected) in cases {
        forge_manifest(&dir, &serde_json::to_vec(&manifest).unwrap());
        let err = load(&dir);
        assert!(
            matches!(&err, Error::Invalid { file, .. } if file.to_string().ends_with("rank-1.manifest.json")),
            "{err}"
        );
        assert!(err.to_string().contains(expected), "{err}");
    }
    // A manifest far larger than any job writes is refused before it is read.
    let file = std::fs::File::create(dir.join("rank-1.manifest.json")).unwrap();
    file.set_len(1 << 30).unwrap();
    let err = load(&dir);
    assert!(err.to_string().contains("more than the"), "{err}");
}

#[test]
fn a_damaged_data_block_names_the_key() {
    let (_tmp, dir) = saved();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rank-1.manifest.json")).unwrap()).unwrap();
    let entry = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "w")
        .unwrap();
    let offset = entry["stored"]["offset"].as_u64().unwrap() as usize;
    let file = dir.join("rank-1.ckpt");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[offset + 100] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    let err = load(&dir);
    assert!(
        matches!(&err, Error::Damaged { key, .. } if key == "w"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("rank-1.ckpt: the data of \"w\" is damaged"),
        "{err}"
    );
}

/// A checkpoint whose `w` has rows of 2 KiB, so its chunks carry column tiles too.
fn saved_wide() -> (tempfile::TempDir, PathBuf) {
    let shape = [64u64, 512];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    let states: Vec<Net> = Chunk::split(&shape, 0, 2)
        .unwrap()
        .into_iter()
        .map(|c| Net {
            w: parts(5, &shape, vec![c]),
            b: whole(6, &[16]),
        })
        .collect();
    save_job(&dir, &states).into_iter().for_each(|r| r.unwrap());
    (tmp, dir)
}

/// Loads columns 100..300 of `w`, which a load checks by tiles.
fn load_columns(dir: &Path) -> Result<(), Error> {
    let columns = Chunk::new(vec![64, 512], vec![0, 100], vec![64, 200]).unwrap();
    let mut net = Net {
        w: zeros(&[64, 512], vec![columns]),
        b: Tensor::zeros(DType::F32, &[16]).unwrap(),
    };
    let before = net.w.clone();
    let result = distributed::load(&mut net, dir, &StateDictOptions::new()).map(|_| ());
    if result.is_err() {
        assert_eq!(net.w, before, "a failed load changes nothing");
    } else {
        assert!(super::holds(&net.w, 5));
    }
    result
}

#[test]
fn column_tiles_are_checked_and_forged_ones_refused() {
    let (_tmp, dir) = saved_wide();
    load_columns(&dir).unwrap();
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rank-1.manifest.json")).unwrap()).unwrap();
    let tiles = &good["entries"][1]["stored"]["tiles"];
    assert_eq!(tiles["band"], 64, "{good}");

    // Tiles that do not fit the chunk, and too few checksums: refused naming the file.
    let mut zero = good.clone();
    zero["entries"][1]["stored"]["tiles"]["band"] = serde_json::json!(0);
    let mut few = good.clone();
    few["entries"][1]["stored"]["tiles"]["checksums"] = serde_json::json!([1, 2]);
    for (manifest, expected) in [(zero, "tiles of 0 bytes"), (few, "checksums for")] {
        forge_manifest(&dir, &serde_json::to_vec(&manifest).unwrap());
        let err = load_columns(&dir).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { file, .. } if file.to_string().ends_with("rank-1.manifest.json")),
            "{err}"
        );
        assert!(err.to_string().contains(expected), "{err}");
    }

    // A wrong tile checksum: the column load fails naming the key, `verify` reports it,
    // and a load of whole rows, which checks blocks, is unaffected.
    let mut wrong = good.clone();
    // Tile 10 holds bytes 640..704 of each row: columns 160..176, which the load needs.
    let sum = wrong["entries"][1]["stored"]["tiles"]["checksums"][10]
        .as_u64()
        .unwrap();
    wrong["entries"][1]["stored"]["tiles"]["checksums"][10] = serde_json::json!(sum ^ 1);
    forge_manifest(&dir, &serde_json::to_vec(&wrong).unwrap());
    let err = load_columns(&dir).unwrap_err();
    assert!(
        matches!(&err, Error::Damaged { key, .. } if key == "w"),
        "{err}"
    );
    let verified = distributed::verify(&dir).unwrap();
    assert_eq!(verified.damaged.len(), 1, "{:?}", verified.damaged);
    assert_eq!(verified.damaged[0].key, "w");
    let mut rows = Net {
        w: zeros(&[64, 512], vec![Chunk::whole(vec![64, 512]).unwrap()]),
        b: Tensor::zeros(DType::F32, &[16]).unwrap(),
    };
    distributed::load(&mut rows, &dir, &StateDictOptions::new()).unwrap();
    assert!(super::holds(&rows.w, 5));
}

#[test]
fn a_damaged_byte_fails_a_load_checked_by_tiles() {
    let (_tmp, dir) = saved_wide();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rank-1.manifest.json")).unwrap()).unwrap();
    let offset = manifest["entries"][1]["stored"]["offset"].as_u64().unwrap() as usize;
    let file = dir.join("rank-1.ckpt");
    let mut bytes = std::fs::read(&file).unwrap();
    // Row 3 of rank 1's rows, column 150 (byte 600 of the row): inside the columns loaded.
    bytes[offset + 3 * 2048 + 600] ^= 0x10;
    std::fs::write(&file, bytes).unwrap();
    let err = load_columns(&dir).unwrap_err();
    assert!(
        matches!(&err, Error::Damaged { key, .. } if key == "w"),
        "{err}"
    );
}
