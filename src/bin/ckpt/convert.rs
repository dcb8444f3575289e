//! `ckpt convert`: one format to another, with the keys of every state dict renamed by the
//! library's key map.

use std::path::Path;

use ckpt::format::Registry;
use ckpt::keymap::KeyMap;
use ckpt::value::Key;
use ckpt::{Checkpoint, SaveOptions, Value};

/// Writes `checkpoint` to `output` in `format` (by name; else by extension), each prefix of
/// `strip` removed from the keys of every state dict that carries it.
pub(crate) fn convert(
    checkpoint: &Checkpoint,
    output: &Path,
    strip: &[String],
    format: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    let map = strip.iter().fold(KeyMap::new(), |map, prefix| {
        map.strip_prefix(prefix.as_str())
    });
    let mut matched = vec![false; map.rules().len()];
    let value = rename(checkpoint.value(), &map, &mut matched)?;
    let unmatched: Vec<String> = map
        .rules()
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(rule, _)| rule.to_string())
        .collect();
    if !unmatched.is_empty() {
        return Err(format!(
            "{}: the key rule(s) {} matched no key of any state dict in the file",
            checkpoint.location(),
            unmatched.join(", ")
        )
        .into());
    }
    let mut options = SaveOptions::new();
    if let Some(name) = format {
        let registry = Registry::builtin();
        let format = registry
            .by_name(name)
            .ok_or_else(|| format!("no format named {name:?}"))?;
        options.format = Some(format.clone());
    }
    ckpt::save_with(value, output, &options)?;
    Ok(())
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
