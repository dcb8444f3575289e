//! Reading the PyTorch reference fixtures in `tests/fixtures/layers/` and comparing against them.

use ckpt::Tensor;
use indexmap::IndexMap;
use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};
use serde::Deserialize;

/// One `NAME.json` written by `make_layer_fixtures.py`, `make_forward_fixtures.py` or
/// `tests/python/make_nn_fixtures.py`.
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
    data: Vec<Scalar>,
}

/// One element: a number, a mask's boolean, or a non-finite float written as `"nan"`, `"inf"`
/// or `"-inf"` (JSON has no literal for them).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Number(f64),
    Bool(bool),
    NonFinite(String),
}

impl Scalar {
    fn f64(&self, key: &str) -> f64 {
        match self {
            Scalar::Number(x) => *x,
            Scalar::NonFinite(s) if s == "nan" => f64::NAN,
            Scalar::NonFinite(s) if s == "inf" => f64::INFINITY,
            Scalar::NonFinite(s) if s == "-inf" => f64::NEG_INFINITY,
            _ => panic!("{key}: a number was expected"),
        }
    }

    fn bool(&self, key: &str) -> bool {
        match self {
            Scalar::Bool(b) => *b,
            _ => panic!("{key}: a boolean was expected"),
        }
    }
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
        let data = &entry.data;
        match entry.dtype.as_str() {
            "F32" => Tensor::from_vec(
                data.iter().map(|x| x.f64(key) as f32).collect(),
                &entry.shape,
            ),
            "I64" => Tensor::from_vec(
                data.iter().map(|x| x.f64(key) as i64).collect(),
                &entry.shape,
            ),
            "BOOL" => Tensor::from_vec(data.iter().map(|x| x.bool(key)).collect(), &entry.shape),
            other => panic!("{key}: unexpected dtype {other}"),
        }
        .unwrap()
    }

    pub(crate) fn array<D: Dimension>(&self, key: &str) -> ndarray::Array<f32, D> {
        self.tensor(key).to_array().unwrap()
    }

    /// A `BOOL` tensor (an attention or padding mask) of any dimensionality.
    pub(crate) fn mask(&self, key: &str) -> ArrayD<bool> {
        self.tensor(key).to_array().unwrap()
    }

    /// An `I64` tensor (embedding indices).
    pub(crate) fn indices<D: Dimension>(&self, key: &str) -> ndarray::Array<i64, D> {
        self.tensor(key).to_array().unwrap()
    }

    /// Whether the fixture has the tensor `key`.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
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

/// The largest absolute difference, after checking the shapes are equal. NaN matches only NaN
/// (PyTorch's fully masked attention rows): NaN on one side is an infinite difference.
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
        .map(|(a, b)| match (a.is_nan(), b.is_nan()) {
            (true, true) => 0.0,
            (false, false) => (a - b).abs(),
            _ => f32::INFINITY,
        })
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
