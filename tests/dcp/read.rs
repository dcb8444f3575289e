//! Reading what `torch.distributed.checkpoint.save` wrote, consolidated into one process.

use std::collections::{BTreeMap, HashMap};

use ckpt::keymap::KeyMap;
use ckpt::{LoadFrom, LoadOptions, StateDictOptions, Tensor, Value};

use crate::common::dcp::{FIXTURES, assert_matches, entries, fixture, manifest};

/// Every fixture loads whole, every tensor assembled from the chunks of every rank and every
/// value where `planner_data` nests it, bit for bit as PyTorch saved them.
#[test]
fn every_fixture_loads_as_pytorch_saved_it() {
    for name in FIXTURES {
        let checkpoint = ckpt::load(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(checkpoint.format().name(), "dcp");
        assert_matches(checkpoint.value(), name);
    }
}

/// The `.metadata` itself names the checkpoint too, and a load without memory mapping reads
/// the same.
#[test]
fn the_metadata_file_and_unmapped_reads_load_the_same() {
    let name = "world4_2d";
    let by_dir = ckpt::load(fixture(name)).unwrap();
    let by_file = ckpt::load(fixture(name).join(".metadata")).unwrap();
    let unmapped = ckpt::load_with(
        fixture(name),
        &LoadOptions::new().mmap(false).verify_checksums(false),
    )
    .unwrap();
    assert_eq!(by_dir.value(), by_file.value());
    assert_eq!(by_dir.value(), unmapped.value());
}

/// `inspect` lists every tensor with its global shape, and the plain values, from the
/// metadata and the value items alone.
#[test]
fn inspect_lists_global_shapes() {
    for name in FIXTURES {
        let header = ckpt::inspect(fixture(name)).unwrap();
        assert_eq!(header.format, "dcp");
        let manifest = manifest(name);
        let tensors: Vec<(String, Vec<usize>)> = entries(&manifest)
            .iter()
            .filter(|e| e["kind"] == "tensor")
            .map(|e| {
                let shape = e["shape"].as_array().unwrap();
                let shape = shape.iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (e["key"].as_str().unwrap().to_owned(), shape)
            })
            .collect();
        let listed: Vec<(String, Vec<usize>)> = header
            .tensors
            .iter()
            .map(|t| (t.key.clone(), t.shape.clone()))
            .collect();
        assert_eq!(listed, tensors, "{name}");
        let values = entries(&manifest).iter().filter(|e| e["kind"] == "value");
        for entry in values {
            let key = entry["key"].as_str().unwrap();
            assert!(
                header
                    .values
                    .iter()
                    .any(|(k, _)| k == key || k.starts_with(&format!("{key}."))),
                "{name}: {key} not among {:?}",
                header.values
            );
        }
    }
}

/// A model loads straight from a DCP directory: the FSDP2 MLP's four parameters, sharded
/// over four ranks (one rank's share of a bias is empty), strictly, from under `model.`.
#[test]
fn a_model_loads_from_a_sharded_directory() {
    let manifest = manifest("world4_fsdp2");
    let mut model: BTreeMap<String, Tensor> = BTreeMap::new();
    for entry in entries(&manifest) {
        let key = entry["key"].as_str().unwrap();
        if let Some(param) = key.strip_prefix("model.") {
            let shape: Vec<usize> = entry["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            model.insert(
                param.to_owned(),
                Tensor::zeros(ckpt::DType::F32, &shape).unwrap(),
            );
        }
    }
    assert_eq!(model.len(), 4);
    // The model's keys are the checkpoint's under `model.`; the optimizer's are left aside.
    let options = StateDictOptions::new().key_map(KeyMap::new().select_prefix("model."));
    let report = model
        .load_from_with(fixture("world4_fsdp2"), &LoadOptions::new(), &options)
        .unwrap();
    assert_eq!(report.loaded_keys.len(), 4, "{report:?}");
    let checkpoint = ckpt::load(fixture("world4_fsdp2")).unwrap();
    for (key, tensor) in &model {
        let Value::Tensor(saved) = &checkpoint["model"][key.as_str()] else {
            panic!("{key}")
        };
        assert_eq!(tensor.view(), saved.view(), "{key}");
    }
}

/// Resharded loads: every tensor of every fixture loaded by each of 3 ranks, split along a
/// dimension of its own (rows or columns, unevenly, across the saved chunks' boundaries), is
/// the matching part of the consolidated tensor; the ranks' parts together are all of it.
#[test]
fn every_fixture_reshards_into_three_ranks() {
    use ckpt::shard::{Chunk, copy_overlap};
    for name in FIXTURES {
        let whole = ckpt::load(fixture(name)).unwrap();
        for (i, (key, tensor)) in whole.tensors().into_iter().enumerate() {
            let global: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
            let parts = if global.is_empty() {
                vec![Chunk::whole(global.clone()).unwrap()]
            } else {
                Chunk::split(&global, i % global.len(), 3).unwrap()
            };
            let all = Chunk::whole(global).unwrap();
            let bytes = tensor.to_le_bytes().unwrap();
            for part in parts {
                let wanted = HashMap::from([(key.clone(), part.clone())]);
                let local = ckpt::dcp::load_shards(fixture(name), &wanted, &LoadOptions::new())
                    .unwrap_or_else(|e| panic!("{name} {key}: {e}"));
                let mut expected = vec![0u8; part.buffer_len(tensor.dtype()).unwrap()];
                copy_overlap(tensor.dtype(), &all, &bytes, &part, &mut expected).unwrap();
                let got = local[&key].to_le_bytes().unwrap();
                assert!(*got == expected[..], "{name} {key} {part:?}");
            }
        }
    }
}

/// A rank asking for a tensor of another global shape is refused as `dcp.load` refuses it.
#[test]
fn a_resharded_load_checks_the_global_shape() {
    let wanted = HashMap::from([(
        "model.0.weight".to_owned(),
        ckpt::shard::Chunk::whole(vec![5, 4]).unwrap(),
    )]);
    let err = ckpt::dcp::load_shards(fixture("world2_dtensor"), &wanted, &LoadOptions::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"model.0.weight\": invalid DCP metadata: size mismatch"),
        "{err}"
    );
    assert!(err.contains(".metadata"), "{err}");
}
