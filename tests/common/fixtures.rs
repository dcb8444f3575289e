//! Reading the PyTorch reference fixtures in `tests/fixtures/layers/` and comparing against them.

use ckpt::Tensor;
use indexmap::IndexMap;
use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};
use serde::Deserialize;

/// One `NAME.json` written by `make_layer_fixtures.py`.
#[derive(Deserialize)]
pub(crate) struct Fixture {
    pub(crate) about: String,
    pub(crate) config: serde_json::Value,
    tensors: IndexMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data: Vec<f64>,
}

/// `tests/fixtures/layers/NAME.json`, the copies of the shared PyTorch layer fixtures.
pub(crate) fn load(name: &str) -> Fixture {
    load_file(&format!("layers/{name}.json"))
}

/// A fixture file under `tests/fixtures/`.
pub(crate) fn load_file(relative: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/{relative}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

impl Fixture {
    pub(crate) fn tensor(&self, key: &str) -> Tensor {
        let entry = self
            .tensors
            .get(key)
            .unwrap_or_else(|| panic!("no tensor {key:?} in the fixture"));
        match entry.dtype.as_str() {
            "F32" => Tensor::from_vec(entry.data.iter().map(|&x| x as f32).collect(), &entry.shape),
            "I64" => Tensor::from_vec(entry.data.iter().map(|&x| x as i64).collect(), &entry.shape),
            other => panic!("{key}: unexpected dtype {other}"),
        }
        .unwrap()
    }

    pub(crate) fn array<D: Dimension>(&self, key: &str) -> ndarray::Array<f32, D> {
        self.tensor(key).to_array().unwrap()
    }

    /// The tensors under `prefix.`, with the prefix removed, in file (state-dict) order.
    pub(crate) fn state(&self, prefix: &str) -> IndexMap<String, Tensor> {
        let prefix = format!("{prefix}.");
        self.tensors
            .keys()
            .filter_map(|k| Some((k.strip_prefix(&prefix)?.to_owned(), self.tensor(k))))
            .collect()
    }

    /// Keys, dtypes and shapes of the tensors under `prefix.`, in state-dict order.
    pub(crate) fn layout(&self, prefix: &str) -> Vec<(String, String, Vec<usize>)> {
        let prefix = format!("{prefix}.");
        self.tensors
            .iter()
            .filter_map(|(k, e)| {
                Some((
                    k.strip_prefix(&prefix)?.to_owned(),
                    e.dtype.clone(),
                    e.shape.clone(),
                ))
            })
            .collect()
    }

    pub(crate) fn f64(&self, key: &str) -> f64 {
        self.config[key]
            .as_f64()
            .unwrap_or_else(|| panic!("config has no number {key:?}"))
    }
}

/// The largest absolute difference, after checking the shapes are equal.
pub(crate) fn max_abs_diff<S1, S2, D1, D2>(
    actual: &ArrayBase<S1, D1>,
    expected: &ArrayBase<S2, D2>,
) -> f32
where
    S1: Data<Elem = f32>,
    S2: Data<Elem = f32>,
    D1: Dimension,
    D2: Dimension,
{
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    actual
        .iter()
        .zip(expected.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Asserts `actual` is within `tol` of `expected` elementwise; prints the difference, which
/// `cargo test -- --nocapture` shows.
pub(crate) fn assert_close<S1, S2, D1, D2>(
    what: &str,
    actual: &ArrayBase<S1, D1>,
    expected: &ArrayBase<S2, D2>,
    tol: f32,
) where
    S1: Data<Elem = f32>,
    S2: Data<Elem = f32>,
    D1: Dimension,
    D2: Dimension,
{
    let diff = max_abs_diff(actual, expected);
    println!("{what}: max abs diff {diff:e}");
    assert!(
        diff <= tol,
        "{what}: max abs difference {diff} above {tol}\nactual {actual}\nexpected {expected}"
    );
}

/// A tensor's values as `f32` (any dtype).
pub(crate) fn values(t: &ckpt::tensor::TensorView<'_>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(
        IxDyn(t.shape()),
        t.to_f64_vec()
            .unwrap()
            .into_iter()
            .map(|x| x as f32)
            .collect(),
    )
    .unwrap()
}
