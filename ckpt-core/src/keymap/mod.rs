//! Key maps: a declarative, checked pipeline of [`KeyRule`]s that rename a checkpoint's keys
//! ([`KeyMap`]), what running one over keys gives ([`KeyPlan`]) and what can go wrong
//! ([`KeyMapError`]).

mod error;
mod mapped;
mod plan;
mod rule;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

pub use self::error::KeyMapError;
use self::error::regex;
pub(crate) use self::mapped::MappedSource;
pub use self::plan::KeyPlan;
pub use self::rule::KeyRule;
use crate::state::{TensorMap, TensorSource};

/// Rules applied, in order, to a checkpoint's keys before they are matched with the model's:
/// PyTorch's "edit the dict by hand" for warm starts and DataParallel, made declarative and
/// checked.
///
/// Give it to a load with [`StateDictOptions::key_map`](crate::StateDictOptions::key_map). Two checkpoint
/// keys that land on one key are an error naming both, and rules that matched no key are listed
/// in [`LoadReport::unmatched_rules`](crate::LoadReport::unmatched_rules), so a typo in a rule
/// shows. `Display` and `Debug` show the rules.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::keymap::KeyMap;
///
/// let map = KeyMap::new()
///     .strip_prefix("module.")
///     .rename("fc.weight", "head.weight")
///     .replace(r"^layer(\d+)\.", "layers.$1.")?
///     .drop(r"num_batches_tracked$")?;
/// assert_eq!(
///     map.to_string(),
///     r#"strip_prefix("module.") | rename("fc.weight" -> "head.weight") | replace(/^layer(\d+)\./ -> "layers.$1.") | drop(/num_batches_tracked$/)"#
/// );
///
/// let plan = map.plan(["module.fc.weight", "module.layer1.bias", "module.bn.num_batches_tracked"]);
/// assert_eq!(plan.pairs(), [
///     ("module.fc.weight".to_owned(), "head.weight".to_owned()),
///     ("module.layer1.bias".to_owned(), "layers.1.bias".to_owned()),
/// ]);
/// assert!(plan.unmatched_rules().is_empty());
/// # Ok::<(), ckpt::keymap::KeyMapError>(())
/// ```
#[derive(Clone, Default)]
pub struct KeyMap {
    rules: Vec<KeyRule>,
}

impl KeyMap {
    /// The identity: no rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Strips DataParallel's `module.` when every key carries it.
    pub fn data_parallel() -> Self {
        Self::new().consume_prefix("module.")
    }

    /// Strips `torch.compile`'s `_orig_mod.` when every key carries it.
    pub fn compiled() -> Self {
        Self::new().consume_prefix("_orig_mod.")
    }

    /// Adds a rule.
    #[must_use]
    pub fn rule(mut self, rule: KeyRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds [`KeyRule::StripPrefix`]: removes `prefix` from the keys that have it.
    #[must_use]
    pub fn strip_prefix(self, prefix: impl Into<String>) -> Self {
        self.rule(KeyRule::StripPrefix(prefix.into()))
    }

    /// Adds [`KeyRule::SelectPrefix`]: keeps only the keys under `prefix`, with it removed.
    /// Loads the encoder of a bigger model's checkpoint with `select_prefix("encoder.")`.
    #[must_use]
    pub fn select_prefix(self, prefix: impl Into<String>) -> Self {
        self.rule(KeyRule::SelectPrefix(prefix.into()))
    }

    /// Adds [`KeyRule::ConsumePrefix`]: removes `prefix` if every key has it.
    ///
    /// PyTorch's `consume_prefix_in_state_dict_if_present` strips it from whichever keys have
    /// it; this strips all or nothing, so a checkpoint that only partly carries the prefix is
    /// left for the load to report.
    #[must_use]
    pub fn consume_prefix(self, prefix: impl Into<String>) -> Self {
        self.rule(KeyRule::ConsumePrefix(prefix.into()))
    }

    /// Adds [`KeyRule::AddPrefix`]: puts `prefix` before every key.
    #[must_use]
    pub fn add_prefix(self, prefix: impl Into<String>) -> Self {
        self.rule(KeyRule::AddPrefix(prefix.into()))
    }

    /// Adds [`KeyRule::Rename`]: renames the key `from` to `to`.
    #[must_use]
    pub fn rename(self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.rule(KeyRule::Rename {
            from: from.into(),
            to: to.into(),
        })
    }

    /// Adds [`KeyRule::Replace`]: replaces every match of `pattern` (the `regex` crate's syntax)
    /// with `replacement`, where `$1` and `${name}` stand for capture groups.
    pub fn replace(
        self,
        pattern: &str,
        replacement: impl Into<String>,
    ) -> Result<Self, KeyMapError> {
        Ok(self.rule(KeyRule::Replace {
            pattern: regex(pattern)?,
            replacement: replacement.into(),
        }))
    }

    /// Adds [`KeyRule::Keep`]: keeps only the keys that `pattern` matches.
    pub fn keep(self, pattern: &str) -> Result<Self, KeyMapError> {
        Ok(self.rule(KeyRule::Keep(regex(pattern)?)))
    }

    /// Adds [`KeyRule::Drop`]: leaves out the keys that `pattern` matches.
    pub fn drop(self, pattern: &str) -> Result<Self, KeyMapError> {
        Ok(self.rule(KeyRule::Drop(regex(pattern)?)))
    }

    /// This map's rules followed by `other`'s.
    #[must_use]
    pub fn then(mut self, other: KeyMap) -> Self {
        self.rules.extend(other.rules);
        self
    }

    /// The rules, in the order they apply.
    pub fn rules(&self) -> &[KeyRule] {
        &self.rules
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The map that undoes this one, for saving: rules in reverse order, prefixes added where
    /// they were stripped (and stripped where added), renames reversed.
    ///
    /// Regular expressions and filters lose information and make this an error. A stripped
    /// prefix comes back on every key, including any that lacked it.
    pub fn inverse(&self) -> Result<KeyMap, KeyMapError> {
        let rules = self
            .rules
            .iter()
            .rev()
            .map(|rule| match rule {
                KeyRule::StripPrefix(p) | KeyRule::SelectPrefix(p) | KeyRule::ConsumePrefix(p) => {
                    Ok(KeyRule::AddPrefix(p.clone()))
                }
                KeyRule::AddPrefix(p) => Ok(KeyRule::StripPrefix(p.clone())),
                KeyRule::Rename { from, to } => Ok(KeyRule::Rename {
                    from: to.clone(),
                    to: from.clone(),
                }),
                KeyRule::Replace { .. } | KeyRule::Keep(_) | KeyRule::Drop(_) => {
                    Err(KeyMapError::NotInvertible {
                        rule: rule.to_string(),
                    })
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(KeyMap { rules })
    }

    /// Runs the rules over `keys`: which key becomes which, which were left out, which rules
    /// matched nothing and which keys collide.
    pub fn plan<K: AsRef<str>>(&self, keys: impl IntoIterator<Item = K>) -> KeyPlan {
        let mut live: Vec<(String, String)> = keys
            .into_iter()
            .map(|k| (k.as_ref().to_owned(), k.as_ref().to_owned()))
            .collect();
        let mut unmatched = Vec::new();
        for rule in &self.rules {
            if !rule.apply(&mut live) {
                unmatched.push(rule.to_string());
            }
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut pairs = Vec::with_capacity(live.len());
        let mut collisions = Vec::new();
        for (source, target) in live {
            if let Some(first) = seen.get(&target) {
                collisions.push(KeyMapError::Collision {
                    key: target,
                    first: first.clone(),
                    second: source,
                });
            } else {
                seen.insert(target.clone(), source.clone());
                pairs.push((source, target));
            }
        }
        KeyPlan {
            pairs,
            unmatched_rules: unmatched,
            collisions,
        }
    }

    /// The tensors of `source` under their mapped keys, borrowed, in the source's order: a state
    /// dict renamed for another model. Collisions are an error.
    pub fn apply<'s>(&self, source: &'s dyn TensorSource) -> Result<TensorMap<'s>, KeyMapError> {
        let keys: Vec<Cow<'_, str>> = source.tensor_keys().collect();
        let plan = self.plan(&keys);
        if let Some(collision) = plan.collisions.into_iter().next() {
            return Err(collision);
        }
        let mut map = TensorMap::new();
        for (from, to) in plan.pairs {
            if let Some(tensor) = source.get_tensor(&from) {
                map.insert(to, tensor);
            }
        }
        Ok(map)
    }

    /// A state dict (usually `model.state_dict()`) with this map run backwards, so that loading
    /// the saved file with this map gives the model's keys back: [`inverse`](KeyMap::inverse),
    /// then the renamed tensors, still borrowed from the model, in the state dict's order.
    ///
    /// ```
    /// # use ckpt_core as ckpt;
    /// use ckpt::Tensor;
    /// use ckpt::keymap::KeyMap;
    /// use ndarray::array;
    ///
    /// let head = Tensor::from(array![1.0f32, 2.0]);
    /// let mut state = ckpt::state::TensorMap::new();
    /// state.insert("head.weight", &head);
    /// let map = KeyMap::new().strip_prefix("module.").rename("fc.weight", "head.weight");
    /// let saved = map.apply_to_save(state)?;
    /// assert_eq!(saved.keys().collect::<Vec<_>>(), ["module.fc.weight"]);
    /// # Ok::<(), ckpt::keymap::KeyMapError>(())
    /// ```
    pub fn apply_to_save<'a>(&self, state: TensorMap<'a>) -> Result<TensorMap<'a>, KeyMapError> {
        let inverse = self.inverse()?;
        let plan = inverse.plan(state.keys());
        if let Some(collision) = plan.collisions.into_iter().next() {
            return Err(collision);
        }
        let mut targets: HashMap<String, String> = plan.pairs.into_iter().collect();
        Ok(state
            .into_iter()
            .filter_map(|(key, tensor)| Some((targets.remove(&key)?, tensor)))
            .collect())
    }
}

impl fmt::Display for KeyMap {
    /// The rules joined by ` | `, or `identity` when there are none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rules.is_empty() {
            return f.write_str("identity");
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyMap {
    /// `KeyMap[strip_prefix("module."), keep(/^encoder\./)]`: the rules as displayed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Shown<'r>(&'r KeyRule);
        impl fmt::Debug for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self.0, f)
            }
        }
        f.write_str("KeyMap")?;
        f.debug_list()
            .entries(self.rules.iter().map(Shown))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_rules() {
        let map = KeyMap::new().add_prefix("module.").keep("^a").unwrap();
        assert_eq!(
            format!("{map:?}"),
            r#"KeyMap[add_prefix("module."), keep(/^a/)]"#
        );
        assert_eq!(KeyMap::new().to_string(), "identity");
    }
}
