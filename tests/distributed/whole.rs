//! `Whole`: a committed sharded checkpoint read one global tensor at a time, whole, and
//! consolidated into one value through a scratch file.

use std::time::Duration;

use ckpt::distributed::{self, Error, Job, Whole};
use ckpt::shard::Chunk;
use ckpt::{SaveOptions, StateDict};

use super::reshard::{Net, save_job};
use super::{parts, whole};

/// A job of 4 ranks holding 2-D blocks of `w` and the replicated `b`.
fn blocks(dir: &std::path::Path) {
    let shape = [9u64, 7];
    let saved: Vec<Net> = Chunk::grid(&shape, &[2, 2])
        .unwrap()
        .into_iter()
        .map(|c| Net {
            w: parts(3, &shape, vec![c]),
            b: whole(4, &[7]),
        })
        .collect();
    for result in save_job(dir, &saved) {
        result.unwrap();
    }
}

#[test]
fn every_tensor_is_read_whole_once_and_consolidated_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-1");
    blocks(&dir);
    let mut reader = Whole::open(&dir).unwrap();
    assert_eq!(reader.world_size(), 4);
    let keys: Vec<&str> = reader.tensors().iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["b", "w"]);
    assert_eq!(reader.read("w").unwrap(), whole(3, &[9, 7]));
    assert_eq!(reader.read("b").unwrap(), whole(4, &[7]));
    // Each stored chunk read once, whole: the bytes of the two tensors, nothing more.
    assert_eq!(reader.bytes_read(), (9 * 7 + 7) * 4);
    assert_eq!(
        reader.read_le_bytes("w").unwrap(),
        whole(3, &[9, 7]).view().to_le_bytes().unwrap().as_ref()
    );

    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let value = reader.consolidate(&["w", "b"], &scratch).unwrap();
    let tensors = value.tensors();
    let keys: Vec<&str> = tensors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["w", "b"]);
    assert_eq!(tensors[0].1, whole(3, &[9, 7]).view());
    assert_eq!(tensors[1].1, whole(4, &[7]).view());
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "the scratch file has no name"
    );

    let err = reader.read("nope").unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { .. })
            && err
                .to_string()
                .ends_with("the checkpoint holds no tensor \"nope\""),
        "{err}"
    );
}

#[test]
fn damaged_and_incomplete_checkpoints_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-1");
    blocks(&dir);
    let data = dir.join("rank-3.ckpt");
    let mut bytes = std::fs::read(&data).unwrap();
    // Rank 3's entries: `b`, declared (rank 0 stores it), then its block of `w`.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rank-3.manifest.json")).unwrap()).unwrap();
    let offset = manifest["entries"][1]["stored"]["offset"].as_u64().unwrap() as usize;
    bytes[offset] ^= 1;
    std::fs::write(&data, &bytes).unwrap();
    let mut reader = Whole::open(&dir).unwrap();
    assert_eq!(
        reader.read("b").unwrap(),
        whole(4, &[7]),
        "rank 0's data is sound"
    );
    match reader.read("w").unwrap_err() {
        Error::Damaged {
            file, key, start, ..
        } => {
            assert_eq!(file.to_string(), data.display().to_string());
            assert_eq!(key, "w");
            assert_eq!(start, offset as u64);
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        reader.consolidate(&["b", "w"], tmp.path()).unwrap_err(),
        Error::Damaged { .. }
    ));

    // Rank 1 of 2 alone: rank 0 never commits, and rank 1 gives up waiting.
    let partial = tmp.path().join("step-2");
    let net = Net {
        w: parts(
            3,
            &[4, 2],
            vec![Chunk::split(&[4, 2], 0, 2).unwrap().remove(1)],
        ),
        b: whole(4, &[2]),
    };
    let job = Job::new(1, 2).timeout(Duration::from_millis(100));
    assert!(distributed::save(&net.state_dict(), &partial, &job, &SaveOptions::new()).is_err());
    match Whole::open(&partial) {
        Err(Error::Incomplete {
            present,
            world_size,
            missing,
            ..
        }) => {
            assert_eq!(present, [1]);
            assert_eq!(world_size, Some(2));
            assert_eq!(missing, [0]);
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("an incomplete checkpoint opened"),
    }
}
