//! Reading the optimizer and scheduler fixtures that `tests/python/make_scheduler_fixtures.py`
//! made with PyTorch: `tests/fixtures/pytorch/optim_groups/` and `tests/fixtures/schedulers/`.

use std::path::PathBuf;

use ckpt::{Tensor, Value};
use serde_json::Value as Json;

pub(crate) fn fixture_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// A JSON fixture under `tests/fixtures/`.
pub(crate) fn json(relative: &str) -> Json {
    let path = fixture_path(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// A `.pt` fixture under `tests/fixtures/`, read by ckpt.
pub(crate) fn pt(relative: &str) -> Value<'static> {
    ckpt::load(fixture_path(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .into_value()
}

/// A tensor of a fixture's `tensors` table, stored as `{dtype, shape, data}`.
pub(crate) fn tensor(fixture: &Json, key: &str) -> Tensor {
    let entry = &fixture["tensors"][key];
    let shape: Vec<usize> = entry["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("no tensor {key:?} in the fixture"))
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(entry["dtype"], "F32", "{key}");
    let data = entry["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_vec(data, &shape).unwrap()
}

/// A JSON array of numbers.
pub(crate) fn floats(json: &Json) -> Vec<f64> {
    json.as_array()
        .unwrap_or_else(|| panic!("not a list: {json}"))
        .iter()
        .map(|x| number(x).unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

/// A number, `{"$float": "inf"}` included.
pub(crate) fn number(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::Object(tag) => match tag.get("$float")?.as_str()? {
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            "nan" => Some(f64::NAN),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `actual` is PyTorch's `expected`: bit for bit where the C library is the one the
/// fixtures were made with (glibc, whose `cos` and `pow` both Python and Rust call), within
/// 1e-12 of it elsewhere.
pub(crate) fn same_float(actual: f64, expected: f64) -> bool {
    if actual.to_bits() == expected.to_bits() {
        return true;
    }
    let exact_libm = cfg!(all(target_os = "linux", target_env = "gnu"));
    !exact_libm && (actual - expected).abs() <= 1e-12 * expected.abs()
}

/// Asserts every float of `actual` is [`same_float`] as `expected`'s.
pub(crate) fn assert_floats(what: &str, actual: &[f64], expected: &[f64]) {
    let same = actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(a, e)| same_float(*a, *e));
    assert!(same, "{what}: {actual:?} != PyTorch's {expected:?}");
}

/// A JSON tree in file order (`serde_json::Value` sorts object keys): the fixtures' "typed"
/// state dicts, whose key order is PyTorch's.
#[derive(serde::Deserialize, Debug)]
#[serde(untagged)]
pub(crate) enum Tree {
    Null(()),
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<Tree>),
    Map(indexmap::IndexMap<String, Tree>),
}

impl Tree {
    /// The subtree at `path` (object keys, or list indices as strings) of a JSON fixture.
    pub(crate) fn at(relative: &str, path: &[&str]) -> Tree {
        let text = std::fs::read_to_string(fixture_path(relative)).unwrap();
        let mut tree: Tree = serde_json::from_str(&text).unwrap();
        for segment in path {
            tree = match tree {
                Tree::Map(mut map) => map
                    .shift_remove(*segment)
                    .unwrap_or_else(|| panic!("{relative}: no {segment:?}")),
                Tree::List(mut items) => items.swap_remove(segment.parse().unwrap()),
                other => panic!("{relative}: {segment:?} in {other:?}"),
            };
        }
        tree
    }

    fn tag(&self, name: &str) -> Option<&Tree> {
        match self {
            Tree::Map(map) if map.len() == 1 => map.get(name),
            _ => None,
        }
    }
}

/// Where `value` differs from what the fixture's typed tree says, type for type: ints are ints,
/// floats are floats and [`same_float`] (`{"$float": "inf"}` too), keys come in the same order,
/// a `{"$counter": [[k, n], …]}` is a `Value::Counter` of int keys and a `{"$tuple": […]}` a
/// list (ckpt's values have no tuples).
pub(crate) fn typed_mismatch(path: &str, value: &Value<'_>, typed: &Tree) -> Option<String> {
    let differ = |why: String| Some(format!("{path}: {why}"));
    if let Some(Tree::String(name)) = typed.tag("$float") {
        let expected = match name.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => f64::NAN,
        };
        return match value {
            Value::Float(x) if same_float(*x, expected) => None,
            other => differ(format!("{other:?} != {name}")),
        };
    }
    if let Some(Tree::List(items)) = typed.tag("$tuple") {
        return match value {
            Value::List(values) => list_mismatch(path, values, items),
            other => differ(format!("{other:?} is not a tuple")),
        };
    }
    if let Some(Tree::List(pairs)) = typed.tag("$counter") {
        let expected: Vec<(i64, i64)> = pairs
            .iter()
            .map(|pair| match pair {
                Tree::List(kv) => match kv.as_slice() {
                    [Tree::Int(k), Tree::Int(n)] => (*k, *n),
                    other => panic!("a counter entry {other:?}"),
                },
                other => panic!("a counter entry {other:?}"),
            })
            .collect();
        let counter = match value {
            Value::Counter(map) => Some(map),
            _ => None,
        };
        let actual: Option<Vec<(i64, i64)>> = counter.map(|map| {
            map.iter()
                .filter_map(|(k, v)| match k {
                    ckpt::value::Key::Int(k) => Some((*k, v.as_i64()?)),
                    ckpt::value::Key::Str(_) => None,
                })
                .collect()
        });
        return (actual.as_ref() != Some(&expected))
            .then(|| format!("{path}: {actual:?} != {expected:?}"));
    }
    match (value, typed) {
        (Value::None, Tree::Null(())) => None,
        (Value::Bool(a), Tree::Bool(b)) if a == b => None,
        (Value::Int(a), Tree::Int(b)) if a == b => None,
        (Value::Float(a), Tree::Float(b)) if same_float(*a, *b) => None,
        (Value::String(a), Tree::String(b)) if a == b => None,
        (Value::List(items), Tree::List(expected)) => list_mismatch(path, items, expected),
        (Value::Map(map), Tree::Map(expected)) => {
            let keys: Vec<String> = map.keys().map(ToString::to_string).collect();
            let want: Vec<&String> = expected.keys().collect();
            if keys.iter().ne(want.iter().copied()) {
                return differ(format!("keys {keys:?} != {want:?}"));
            }
            map.iter()
                .zip(expected.values())
                .find_map(|((k, v), e)| typed_mismatch(&format!("{path}.{k}"), v, e))
        }
        (a, b) => differ(format!("{a:?} != {b:?}")),
    }
}

fn list_mismatch(path: &str, items: &[Value<'_>], expected: &[Tree]) -> Option<String> {
    if items.len() != expected.len() {
        return Some(format!(
            "{path}: {} items, expected {}",
            items.len(),
            expected.len()
        ));
    }
    items
        .iter()
        .zip(expected)
        .enumerate()
        .find_map(|(i, (v, e))| typed_mismatch(&format!("{path}.{i}"), v, e))
}
