//! [`KeyPath`]: the dotted key of a tensor, built as a walk descends.

use std::fmt;

/// A dotted key path under construction (`encoder.layers.0.weight`).
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::state::KeyPath;
///
/// let mut path = KeyPath::new();
/// path.push("layers");
/// path.push_index(3);
/// path.push("weight");
/// assert_eq!(path.as_str(), "layers.3.weight");
/// path.pop();
/// path.pop();
/// assert_eq!(path.as_str(), "layers");
/// ```
#[derive(Clone, Debug, Default)]
pub struct KeyPath {
    key: String,
    marks: Vec<usize>,
}

impl KeyPath {
    /// An empty path.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one segment: a field name, a map key, an index.
    pub fn push(&mut self, segment: impl fmt::Display) {
        use std::fmt::Write;
        self.marks.push(self.key.len());
        if !self.key.is_empty() {
            self.key.push('.');
        }
        // Writing to a String cannot fail.
        let _ = write!(self.key, "{segment}");
    }

    /// Appends a list index as a segment.
    pub fn push_index(&mut self, index: usize) {
        self.push(index);
    }

    /// Removes the segment pushed last.
    pub fn pop(&mut self) {
        if let Some(len) = self.marks.pop() {
            self.key.truncate(len);
        }
    }

    /// The path so far.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}
