//! `ckpt convert`: one format to another, with the keys of every state dict renamed by the
//! library's key map, optionally one sub-tree of the file only, and what is not a tensor
//! dropped or kept as safetensors metadata.

use std::collections::BTreeMap;
use std::path::Path;

use ckpt::format::Registry;
use ckpt::keymap::KeyMap;
use ckpt::state::KeyPath;
use ckpt::value::Key;
use ckpt::{SaveOptions, Value};

/// What `convert` does with the values of the file that are not tensors (`epoch`, `lr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PlainValues {
    /// Leave them out: the output holds the tensors alone.
    Drop,
    /// Keep each in the safetensors header's `__metadata__`, under its flattened key: a string
    /// as itself, anything else as JSON (`"30"`, `"0.001"`, `"[1,2]"`). safetensors only.
    Metadata,
}

/// How `convert` writes its output.
pub(crate) struct Plan<'a> {
    /// Prefixes removed from the keys of every state dict that carries them.
    pub strip: &'a [String],
    /// The output format, by name; else by the output's extension.
    pub format: Option<&'a str>,
    /// The flattened key of the one sub-tree to write (`model_state_dict`).
    pub select: Option<&'a str>,
    /// What to do with values that are not tensors; `None`: keep them, where the format can.
    pub plain_values: Option<PlainValues>,
}

/// Writes `root`, the value of the file or directory `location`, to `output` as `plan` says.
pub(crate) fn convert(
    root: &Value<'_>,
    location: &str,
    output: &Path,
    plan: &Plan<'_>,
) -> Result<(), Box<dyn std::error::Error>> {
    prepared(root, location, plan, |value| write(value, output, plan))
}

/// Calls `f` with what `plan` keeps of `root`: its `--select`ed sub-tree, with the
/// `--strip-prefix` rules applied to the keys of every state dict in it. A sub-tree is
/// found nested (`{"model_state_dict": {...}}`) or flattened (`"model_state_dict.fc.weight"`,
/// as safetensors and sharded checkpoints keep keys).
pub(crate) fn prepared<R>(
    root: &Value<'_>,
    location: &str,
    plan: &Plan<'_>,
    f: impl FnOnce(&Value<'_>) -> Result<R, Box<dyn std::error::Error>>,
) -> Result<R, Box<dyn std::error::Error>> {
    let selected = match plan.select {
        None => root.reborrow(),
        Some(key) => match root.lookup(key) {
            Some(found) => found.reborrow(),
            None => flattened_subtree(root, key).ok_or_else(|| {
                format!(
                    "{location}: --select {key:?}: the file has no such key (its top-level keys: {})",
                    top_level_keys(root)
                )
            })?,
        },
    };
    let map = plan.strip.iter().fold(KeyMap::new(), |map, prefix| {
        map.strip_prefix(prefix.as_str())
    });
    let mut matched = vec![false; map.rules().len()];
    let value = rename(&selected, &map, &mut matched)?;
    let unmatched: Vec<String> = map
        .rules()
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(rule, _)| rule.to_string())
        .collect();
    if !unmatched.is_empty() {
        return Err(format!(
            "{location}: the key rule(s) {} matched no key of any state dict in the file",
            unmatched.join(", ")
        )
        .into());
    }
    f(&value)
}

/// The entries of the map `root` whose keys start with `key.`, without that prefix: the
/// sub-tree `key` of a checkpoint whose keys were flattened.
fn flattened_subtree<'v>(root: &'v Value<'_>, key: &str) -> Option<Value<'v>> {
    let prefix = format!("{key}.");
    let mut out = Value::map();
    for (k, v) in root.as_map()? {
        if let Some(rest) = k.to_string().strip_prefix(&prefix) {
            out.insert(rest.to_owned(), v.reborrow());
        }
    }
    out.as_map().is_some_and(|m| !m.is_empty()).then_some(out)
}

/// Writes `value` to `output` in the format `plan` names or the extension says, with its
/// plain values as `plan` says.
fn write(
    value: &Value<'_>,
    output: &Path,
    plan: &Plan<'_>,
) -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::builtin();
    let mut options = SaveOptions::new();
    if let Some(name) = plan.format {
        let format = registry
            .by_name(name)
            .ok_or_else(|| format!("no format named {name:?}"))?;
        options.format = Some(format.clone());
    }
    let value = match plan.plain_values {
        None => value.reborrow(),
        Some(PlainValues::Drop) => tensors_only(value, None),
        Some(PlainValues::Metadata) => {
            let format = options
                .format
                .as_ref()
                .or_else(|| registry.by_extension(output))
                .map(|f| f.name());
            if format != Some("safetensors") {
                return Err(format!(
                    "--plain-values metadata is for safetensors output; {} is {}: \
                     that format keeps plain values as they are",
                    output.display(),
                    format.unwrap_or("of no known format")
                )
                .into());
            }
            let mut metadata = BTreeMap::new();
            let mut value = tensors_only(value, Some(&mut metadata));
            if !metadata.is_empty() {
                let entries: Value<'_> = metadata
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect();
                value.insert("__metadata__", entries);
            }
            value
        }
    };
    ckpt::save_with(value, output, &options).map_err(|e| {
        let hint = plan.plain_values.is_none() && e.to_string().contains("holds only tensors");
        if hint {
            format!(
                "{e}\n(or write only the tensors: --select KEY for one sub-tree such as \
                 \"model_state_dict\", --plain-values drop|metadata for the values)"
            )
            .into()
        } else {
            Box::<dyn std::error::Error>::from(e)
        }
    })?;
    Ok(())
}

/// The top-level keys of `value`, for an error message: `"a", "b"`, or what it is instead.
fn top_level_keys(value: &Value<'_>) -> String {
    match value.as_map() {
        Some(map) => map
            .keys()
            .map(|k| format!("{:?}", k.to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        None => format!("none: it is {}", value.kind()),
    }
}

/// The tensors of `value`, each under its flattened key, the way safetensors stores them;
/// every other leaf goes into `metadata` (a string as itself, anything else as JSON), if given.
fn tensors_only<'v>(
    value: &'v Value<'_>,
    mut metadata: Option<&mut BTreeMap<String, String>>,
) -> Value<'v> {
    let mut out = Value::map();
    value.walk(&mut KeyPath::new(), &mut |key, leaf| match leaf {
        Value::Tensor(_) => {
            out.insert(key, leaf.reborrow());
        }
        Value::String(s) => {
            if let Some(m) = metadata.as_deref_mut() {
                m.insert(key.to_owned(), s.to_string());
            }
        }
        other => {
            if let Some(m) = metadata.as_deref_mut() {
                m.insert(key.to_owned(), crate::entries::plain(other).to_string());
            }
        }
    });
    out
}

/// `value` with `map` applied to the keys of every state dict (a map of tensors) in it,
/// recording in `matched` which rules matched a key of one.
fn rename<'v>(
    value: &'v Value<'_>,
    map: &KeyMap,
    matched: &mut [bool],
) -> Result<Value<'v>, Box<dyn std::error::Error>> {
    if map.is_empty() {
        return Ok(value.reborrow());
    }
    Ok(match value {
        Value::Map(entries)
            if !entries.is_empty() && entries.values().all(|v| v.as_tensor().is_some()) =>
        {
            let keys: Vec<String> = entries.keys().map(Key::to_string).collect();
            let plan = map.plan(&keys);
            if let Some(collision) = plan.collisions().first() {
                return Err(collision.to_string().into());
            }
            for (rule, m) in map.rules().iter().zip(matched.iter_mut()) {
                *m |= !plan.unmatched_rules().contains(&rule.to_string());
            }
            let by_key: std::collections::HashMap<String, &Value<'_>> =
                keys.iter().cloned().zip(entries.values()).collect();
            plan.pairs()
                .iter()
                .map(|(from, to)| (to.clone(), by_key[from].reborrow()))
                .collect()
        }
        Value::Map(entries) => {
            let mut out = Value::map();
            for (key, v) in entries {
                out.insert(key.clone(), rename(v, map, matched)?);
            }
            out
        }
        Value::List(items) => Value::List(
            items
                .iter()
                .map(|v| rename(v, map, matched))
                .collect::<Result<_, _>>()?,
        ),
        other => other.reborrow(),
    })
}
