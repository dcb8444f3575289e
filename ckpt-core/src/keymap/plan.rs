//! [`KeyPlan`]: what a key map makes of a list of keys.

use super::KeyMapError;

/// What a [`KeyMap`](super::KeyMap) makes of a list of keys: see
/// [`KeyMap::plan`](super::KeyMap::plan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPlan {
    pub(super) pairs: Vec<(String, String)>,
    pub(super) unmatched_rules: Vec<String>,
    pub(super) collisions: Vec<KeyMapError>,
}

impl KeyPlan {
    /// `(original key, mapped key)` for every key that was not left out, in the original order;
    /// of colliding keys, only the first.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The rules, as displayed, that matched no key.
    pub fn unmatched_rules(&self) -> &[String] {
        &self.unmatched_rules
    }

    /// Every [`KeyMapError::Collision`]: two keys that map to one.
    pub fn collisions(&self) -> &[KeyMapError] {
        &self.collisions
    }
}
