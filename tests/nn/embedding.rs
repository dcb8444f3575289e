//! `Embedding` with `padding_idx`, positive and negative, against PyTorch.

use ckpt::StateDict;
use ckpt::model::Model;
use ckpt::nn::{Embedding, Rng};
use ndarray::{Ix2, Ix3};

use crate::common::fixtures::assert_close;
use crate::reference::load_strictly;

#[test]
fn embedding_with_padding_idx_matches_pytorch() {
    let mut emb = Embedding::new(10, 4, &mut Rng::seed(1))
        .with_padding_idx(0)
        .unwrap();
    assert!(emb.weight.row(0).iter().all(|&v| v == 0.0), "a zero row");
    let f = load_strictly(&mut emb, "embedding_padding_idx");
    let y = emb.forward(&f.indices::<Ix2>("idx")).unwrap();
    assert_close("embedding padding_idx", &y, &f.array::<Ix3>("y"), 0.0);
    assert_eq!(emb.padding_idx(), Some(0));
}

/// `padding_idx=-1` is stored as `num_embeddings - 1`, as PyTorch's `m.padding_idx` is.
#[test]
fn a_negative_padding_idx_counts_from_the_end() {
    let f = crate::common::fixtures::load("embedding_padding_idx_negative");
    let normalized = f.config["padding_idx_normalized"].as_u64().unwrap() as usize;
    let mut emb = Embedding::new(6, 3, &mut Rng::seed(1))
        .with_padding_idx(-1)
        .unwrap();
    assert_eq!(emb.padding_idx(), Some(normalized));
    let f = load_strictly(&mut emb, "embedding_padding_idx_negative");
    let y = emb.forward(&f.indices::<Ix2>("idx")).unwrap();
    assert_close("embedding padding_idx -1", &y, &f.array::<Ix3>("y"), 0.0);

    for bad in [6, -7] {
        assert_eq!(
            Embedding::new(6, 3, &mut Rng::seed(1))
                .with_padding_idx(bad)
                .unwrap_err()
                .to_string(),
            "Embedding: Padding_idx must be within num_embeddings"
        );
    }
    assert_eq!(
        Embedding::new(6, 3, &mut Rng::seed(1))
            .with_padding_idx(-6)
            .unwrap()
            .padding_idx(),
        Some(0)
    );
}

/// The padding row survives a whole-model save and load.
#[test]
fn padding_idx_is_part_of_the_whole_model_config() {
    let emb = Embedding::new(6, 3, &mut Rng::seed(1))
        .with_padding_idx(2)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("embedding.ckpt");
    ckpt::model::save_model(&emb, &path).unwrap();
    let back: Embedding = ckpt::model::load_model(&path).unwrap();
    assert_eq!(back.padding_idx(), Some(2));
    assert_eq!(back.config(), emb.config());
    assert_eq!(back.state_dict(), emb.state_dict());
}
