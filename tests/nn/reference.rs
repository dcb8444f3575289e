//! The references of `tests/python/make_nn_fixtures.py`: for each, `NAME.pt` (the module's
//! state dict as PyTorch saved it) and `NAME.json` (the same tensors, the inputs and the
//! outputs).

use ckpt::StateDict;

use crate::common::fixtures::{self, Fixture};

/// Loads `tests/fixtures/layers/NAME.pt`, PyTorch's own file, strictly into `layer` after
/// checking that the fresh layer has exactly its keys, dtypes and shapes in PyTorch's order,
/// and that the file holds what the JSON does; returns the JSON.
pub(crate) fn load_strictly(layer: &mut dyn StateDict, name: &str) -> Fixture {
    let fixture = fixtures::load(name);
    let layout: Vec<_> = layer
        .state_dict()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.dtype().to_string(), v.shape().to_vec()))
        .collect();
    assert_eq!(
        layout,
        fixture.layout("state"),
        "{name}: keys, dtypes, shapes"
    );
    let path = format!(
        "{}/tests/fixtures/layers/{name}.pt",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = ckpt::load(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let report = layer.load_state_dict(&file, true).unwrap();
    assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
    let expected = fixture.state("state");
    for (key, tensor) in layer.state_dict().iter() {
        assert_eq!(*tensor, expected[key].view(), "{name}: {key} as loaded");
    }
    fixture
}
