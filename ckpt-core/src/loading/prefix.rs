//! The prefixes wrappers put before a model's keys (`nn.DataParallel`'s `module.`,
//! `torch.compile`'s `_orig_mod.`): applied by `auto_prefix`, or explained in a hint.

use std::collections::HashSet;

use indexmap::IndexMap;

use super::{LoadReport, Slot};
use crate::keymap::KeyMap;
use crate::state::TensorSource;

/// The prefixes that wrappers put before a model's keys: `nn.DataParallel`'s and
/// `torch.compile`'s.
const WRAPPER_PREFIXES: [&str; 2] = ["module.", "_orig_mod."];

/// Strips a wrapper's prefix from the source's keys (`pairs` maps source keys to the keys the
/// model will see) when all carry it and the model's keys do not, or adds it when all of the
/// model's keys carry it and none of the source's do; returns the rule applied. Either happens
/// only if more source keys then match the model's, so a model that has a field called
/// `module` is not mistaken for a wrapper.
pub(super) fn auto_prefix(
    pairs: &mut [(String, String)],
    slots: &IndexMap<String, Slot>,
) -> Option<String> {
    let targets = || pairs.iter().map(|(_, to)| to.as_str());
    let matching = |keys: &mut dyn Iterator<Item = String>| -> usize {
        keys.filter(|key| slots.contains_key(key)).count()
    };
    let now = matching(&mut targets().map(str::to_owned));
    let model_has = |prefix| all_have(slots.keys().map(String::as_str), prefix);
    for prefix in WRAPPER_PREFIXES {
        if all_have(targets(), prefix)
            && !model_has(prefix)
            && matching(&mut targets().map(|key| key[prefix.len()..].to_owned())) > now
        {
            for (_, key) in pairs.iter_mut() {
                key.drain(..prefix.len());
            }
            return Some(KeyMap::new().strip_prefix(prefix).to_string());
        }
    }
    for prefix in WRAPPER_PREFIXES {
        if model_has(prefix)
            && !targets().any(|key| key.starts_with(prefix))
            && matching(&mut targets().map(|key| format!("{prefix}{key}"))) > now
        {
            for (_, key) in pairs.iter_mut() {
                key.insert_str(0, prefix);
            }
            return Some(KeyMap::new().add_prefix(prefix).to_string());
        }
    }
    None
}

/// Whether there are keys and every one has `prefix` and more.
fn all_have<'k>(mut keys: impl Iterator<Item = &'k str>, prefix: &str) -> bool {
    let mut any = false;
    let every = keys.all(|key| {
        any = true;
        key.len() > prefix.len() && key.starts_with(prefix)
    });
    any && every
}

/// The load options that strip `prefix` from a checkpoint's keys, as a hint shows them.
fn strip_option(prefix: &str) -> String {
    match prefix {
        "module." => "StateDictOptions::new().key_map(KeyMap::data_parallel())".to_owned(),
        "_orig_mod." => "StateDictOptions::new().key_map(KeyMap::compiled())".to_owned(),
        _ => format!("StateDictOptions::new().key_map(KeyMap::new().strip_prefix(\"{prefix}\"))"),
    }
}

/// The load options that add `prefix` to a checkpoint's keys, as a hint shows them.
fn add_option(prefix: &str) -> String {
    if WRAPPER_PREFIXES.contains(&prefix) {
        "StateDictOptions::new().auto_prefix(true)".to_owned()
    } else {
        format!("StateDictOptions::new().key_map(KeyMap::new().add_prefix(\"{prefix}\"))")
    }
}

/// Explains a prefix that, stripped from the source's keys or added to them, would make the
/// load succeed: DataParallel's `module.`, `torch.compile`'s `_orig_mod.`, or a checkpoint's
/// `model_state_dict.`.
pub(super) fn prefix_hints(
    slots: &IndexMap<String, Slot>,
    report: &LoadReport,
    source: &dyn TensorSource,
) -> Vec<String> {
    let (missing, unexpected) = (&report.missing_keys, &report.unexpected_keys);
    if missing.is_empty() || unexpected.is_empty() || missing.len() != unexpected.len() {
        return Vec::new();
    }
    let fits = |model_key: &str, source_key: &str| {
        let slot = &slots[model_key];
        source.get_tensor(source_key).is_some_and(|t| {
            t.shape() == slot.shape.as_slice()
                && (t.dtype() == slot.dtype || t.dtype().kind() == slot.dtype.kind())
        })
    };
    let origin = |prefix: &str| match prefix {
        "module." => " (the prefix nn.DataParallel adds)",
        "_orig_mod." => " (the prefix torch.compile adds)",
        _ => "",
    };

    if let Some(prefix) = common_prefix(unexpected) {
        let wanted: HashSet<&str> = missing.iter().map(String::as_str).collect();
        if unexpected.iter().all(|key| {
            let stripped = &key[prefix.len()..];
            wanted.contains(stripped) && fits(stripped, key)
        }) {
            return vec![format!(
                "every unexpected key starts with \"{prefix}\"{}; with that prefix stripped \
                 the load succeeds: load with `{}`.",
                origin(prefix),
                strip_option(prefix),
            )];
        }
    }
    if let Some(prefix) = common_prefix(missing) {
        let present: HashSet<&str> = unexpected.iter().map(String::as_str).collect();
        if missing.iter().all(|key| {
            let stripped = &key[prefix.len()..];
            present.contains(stripped) && fits(key, stripped)
        }) {
            return vec![format!(
                "every missing key starts with \"{prefix}\"{} and the checkpoint has them \
                 without it; load the checkpoint into the wrapped module instead, or load with \
                 `{}`.",
                origin(prefix),
                add_option(prefix),
            )];
        }
    }
    Vec::new()
}

/// The first segment (with its dot) that every key starts with.
fn common_prefix(keys: &[String]) -> Option<&str> {
    let first = keys.first()?;
    let end = first.find('.')? + 1;
    let prefix = &first[..end];
    keys.iter()
        .all(|key| key.len() > end && key.starts_with(prefix))
        .then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefixes() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            common_prefix(&keys(&["module.a", "module.b.c"])),
            Some("module.")
        );
        assert_eq!(common_prefix(&keys(&["module.a", "other.b"])), None);
        assert_eq!(common_prefix(&keys(&["module.", "module.b"])), None);
        assert_eq!(common_prefix(&keys(&["plain"])), None);
    }
}
