//! [`KeyMapError`]: why a key map could not be built or applied.

use regex::Regex;

/// Why a key map could not be built or applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyMapError {
    /// A rule's regular expression does not parse.
    #[error("invalid key pattern /{pattern}/: {message}")]
    Pattern {
        /// The expression.
        pattern: String,
        /// What the `regex` crate said.
        message: String,
    },
    /// The rule loses information, so a key map holding it cannot be run backwards for a save.
    #[error(
        "the key rule {rule} cannot be inverted: regular expressions and filters lose \
         information; save with a key map of prefixes and renames only"
    )]
    NotInvertible {
        /// The rule, as displayed.
        rule: String,
    },
    /// Two keys map to one.
    #[error("the keys \"{first}\" and \"{second}\" both map to \"{key}\"")]
    Collision {
        /// The key both map to.
        key: String,
        /// The first key, in the source's order.
        first: String,
        /// The second key.
        second: String,
    },
}

pub(super) fn regex(pattern: &str) -> Result<Regex, KeyMapError> {
    Regex::new(pattern).map_err(|e| KeyMapError::Pattern {
        pattern: pattern.to_owned(),
        message: e.to_string(),
    })
}
