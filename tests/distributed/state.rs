//! `Sharded` as a field of a model: the derive, `state_dict()` and `load_state_dict`.

use ckpt::loading::LoadProblem;
use ckpt::shard::{Chunk, Sharded};
use ckpt::{DType, StateDict, Tensor};

use super::{holds, parts, whole, zeros};

#[derive(StateDict)]
struct Net {
    w: Sharded,
    b: Tensor,
}

#[test]
fn a_sharded_field_is_one_key_of_the_state_dict() {
    let rows = Chunk::split(&[6, 4], 0, 3).unwrap();
    let net = Net {
        w: parts(1, &[6, 4], vec![rows[1].clone()]),
        b: whole(2, &[4]),
    };
    let state = net.state_dict();
    assert_eq!(state.keys().collect::<Vec<_>>(), ["b"]);
    let sharded: Vec<_> = state
        .sharded()
        .map(|(k, s)| (k, s.global_shape()))
        .collect();
    assert_eq!(sharded, [("w", &[6u64, 4][..])]);
    // One process holds only part of w: a plain save is refused, naming it.
    let dir = tempfile::tempdir().unwrap();
    let err = ckpt::save(state, dir.path().join("x.ckpt")).unwrap_err();
    assert!(err.to_string().contains("\"w\" is sharded"), "{err}");
}

#[test]
fn load_state_dict_fills_parts_from_a_whole_tensor_and_from_other_parts() {
    let cols = Chunk::split(&[6, 4], 1, 2).unwrap();
    let mut net = Net {
        w: zeros(&[6, 4], vec![cols[1].clone()]),
        b: Tensor::zeros(DType::F32, &[4]).unwrap(),
    };
    // Whole → sharded.
    let mut source = indexmap::IndexMap::new();
    source.insert("w".to_owned(), whole(1, &[6, 4]));
    source.insert("b".to_owned(), whole(2, &[4]));
    let report = net.load_state_dict(&source, true).unwrap();
    assert_eq!(report.loaded_keys, ["w", "b"]);
    assert!(holds(&net.w, 1));

    // Sharded (rows) → sharded (columns): another model's parts that cover them.
    let rows = Chunk::split(&[6, 4], 0, 2).unwrap();
    let saved = Net {
        w: parts(3, &[6, 4], rows),
        b: whole(4, &[4]),
    };
    let report = net.load_state_dict(&saved.state_dict(), true).unwrap();
    assert!(report.is_complete());
    assert!(holds(&net.w, 3));

    // Sharded → whole in one process.
    #[derive(StateDict)]
    struct Whole {
        w: Tensor,
        b: Tensor,
    }
    let mut one = Whole {
        w: Tensor::zeros(DType::F32, &[6, 4]).unwrap(),
        b: Tensor::zeros(DType::F32, &[4]).unwrap(),
    };
    let report = one.load_state_dict(&saved.state_dict(), true).unwrap();
    assert_eq!(report.loaded_keys, ["w", "b"]);
    assert_eq!(one.w, whole(3, &[6, 4]));
}

#[test]
fn parts_the_source_lacks_and_global_shape_mismatches_are_refused_before_any_write() {
    let rows = Chunk::split(&[6, 4], 0, 3).unwrap();
    let before = zeros(&[6, 4], vec![rows[2].clone()]);
    let mut net = Net {
        w: before.clone(),
        b: Tensor::zeros(DType::F32, &[4]).unwrap(),
    };
    let other = Net {
        w: parts(1, &[6, 4], vec![rows[0].clone()]),
        b: whole(2, &[4]),
    };
    let err = net.load_state_dict(&other.state_dict(), true).unwrap_err();
    assert!(
        matches!(&err.problems()[0], LoadProblem::NotHeld { key, .. } if key == "w"),
        "{err}"
    );
    assert!(err.to_string().contains("holds only parts of w"), "{err}");
    assert_eq!(net.w, before, "untouched");
    assert_eq!(net.b, Tensor::zeros(DType::F32, &[4]).unwrap(), "untouched");

    let mut source = indexmap::IndexMap::new();
    source.insert("w".to_owned(), whole(1, &[6, 5]));
    source.insert("b".to_owned(), whole(2, &[4]));
    let err = net.load_state_dict(&source, true).unwrap_err();
    assert!(
        err.to_string().contains(
            "size mismatch for w: copying a param with shape [6, 5] from checkpoint, the shape in current model is [6, 4]"
        ),
        "{err}"
    );
    assert_eq!(net.w, before, "untouched");
}
