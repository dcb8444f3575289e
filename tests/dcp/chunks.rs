//! `Chunk::split_like_torch` gives the chunks real PyTorch gave each rank of a `DTensor`
//! sharded by `Shard(0)` (FSDP2 over 4 ranks, uneven and empty parts; `DTensor` over 2), as
//! the DCP fixtures' manifests record them.

use std::collections::BTreeSet;

use ckpt::shard::Chunk;

#[test]
fn torch_chunk_rule_matches_pytorchs_shards() {
    let mut checked = 0;
    for name in ["world4_fsdp2", "world2_dtensor"] {
        let path = format!(
            "{}/tests/fixtures/dcp/{name}.manifest.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for entry in manifest["entries"].as_array().unwrap() {
            if entry["placements"] != serde_json::json!(["S(0)"]) {
                continue;
            }
            let numbers = |v: &serde_json::Value| -> Vec<u64> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_u64().unwrap())
                    .collect()
            };
            let shape = numbers(&entry["shape"]);
            let ranks = entry["mesh_shape"][0].as_u64().unwrap();
            let pytorch: BTreeSet<(Vec<u64>, Vec<u64>)> = entry["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (numbers(&c["offsets"]), numbers(&c["sizes"])))
                .collect();
            let ours: BTreeSet<(Vec<u64>, Vec<u64>)> = Chunk::split_like_torch(&shape, 0, ranks)
                .unwrap()
                .into_iter()
                .map(|c| (c.offsets().to_vec(), c.sizes().to_vec()))
                .collect();
            assert_eq!(ours, pytorch, "{name}: {}", entry["key"]);
            checked += 1;
        }
    }
    assert!(checked >= 16, "{checked} sharded entries");
}
