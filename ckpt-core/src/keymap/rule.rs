//! [`KeyRule`]: one step of a key map.

use std::borrow::Cow;
use std::fmt;

use regex::Regex;

/// One rule of a [`KeyMap`](super::KeyMap).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum KeyRule {
    /// Removes the prefix from the keys that have it; other keys pass unchanged.
    StripPrefix(String),
    /// Keeps only the keys that have the prefix, with the prefix removed: one sub-module out of
    /// a bigger checkpoint.
    SelectPrefix(String),
    /// Removes the prefix if every key has it, and otherwise changes nothing: PyTorch's
    /// `consume_prefix_in_state_dict_if_present`, made all-or-nothing.
    ConsumePrefix(String),
    /// Puts the prefix before every key.
    AddPrefix(String),
    /// Renames one key.
    Rename {
        /// The key as it is.
        from: String,
        /// The key it becomes.
        to: String,
    },
    /// Replaces every match of a regular expression in each key.
    Replace {
        /// The expression.
        pattern: Regex,
        /// The replacement, where `$1` or `${name}` stand for capture groups.
        replacement: String,
    },
    /// Keeps only the keys that match.
    Keep(Regex),
    /// Leaves out the keys that match.
    Drop(Regex),
}

impl fmt::Display for KeyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRule::StripPrefix(p) => write!(f, "strip_prefix({p:?})"),
            KeyRule::SelectPrefix(p) => write!(f, "select_prefix({p:?})"),
            KeyRule::ConsumePrefix(p) => write!(f, "consume_prefix({p:?})"),
            KeyRule::AddPrefix(p) => write!(f, "add_prefix({p:?})"),
            KeyRule::Rename { from, to } => write!(f, "rename({from:?} -> {to:?})"),
            KeyRule::Replace {
                pattern,
                replacement,
            } => write!(f, "replace(/{pattern}/ -> {replacement:?})"),
            KeyRule::Keep(pattern) => write!(f, "keep(/{pattern}/)"),
            KeyRule::Drop(pattern) => write!(f, "drop(/{pattern}/)"),
        }
    }
}

impl KeyRule {
    /// Applies the rule to every live `(source key, current key)`; whether it matched any.
    pub(super) fn apply(&self, live: &mut Vec<(String, String)>) -> bool {
        let has = |key: &str, p: &str| key.len() > p.len() && key.starts_with(p);
        match self {
            KeyRule::StripPrefix(p) => {
                let mut matched = false;
                for (_, key) in live.iter_mut() {
                    if has(key, p) {
                        key.drain(..p.len());
                        matched = true;
                    }
                }
                matched
            }
            KeyRule::SelectPrefix(p) => {
                live.retain(|(_, key)| has(key, p));
                for (_, key) in live.iter_mut() {
                    key.drain(..p.len());
                }
                !live.is_empty()
            }
            KeyRule::ConsumePrefix(p) => {
                if live.is_empty() || !live.iter().all(|(_, key)| has(key, p)) {
                    return false;
                }
                for (_, key) in live.iter_mut() {
                    key.drain(..p.len());
                }
                true
            }
            KeyRule::AddPrefix(p) => {
                for (_, key) in live.iter_mut() {
                    key.insert_str(0, p);
                }
                !live.is_empty()
            }
            KeyRule::Rename { from, to } => {
                let mut matched = false;
                for (_, key) in live.iter_mut() {
                    if key == from {
                        key.clone_from(to);
                        matched = true;
                    }
                }
                matched
            }
            KeyRule::Replace {
                pattern,
                replacement,
            } => {
                let mut matched = false;
                for (_, key) in live.iter_mut() {
                    if let Cow::Owned(new) = pattern.replace_all(key, replacement.as_str()) {
                        *key = new;
                        matched = true;
                    }
                }
                matched
            }
            KeyRule::Keep(pattern) => {
                live.retain(|(_, key)| pattern.is_match(key));
                !live.is_empty()
            }
            KeyRule::Drop(pattern) => {
                let before = live.len();
                live.retain(|(_, key)| !pattern.is_match(key));
                live.len() < before
            }
        }
    }
}
