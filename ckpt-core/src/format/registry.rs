//! [`Registry`]: the formats a load detects among and a save picks from.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::{Dcp, Format, Native, PyTorch, SafeTensors};

/// A list of formats: detection by a file's first bytes on load, by a file name's extension on
/// save. [`Registry::builtin`] (the default) has ckpt's own, safetensors, PyTorch
/// Distributed Checkpoint and PyTorch's.
#[derive(Clone)]
pub struct Registry {
    formats: Vec<Arc<dyn Format>>,
}

impl Registry {
    /// The formats ckpt implements, in the order detection tries them.
    pub fn builtin() -> Self {
        Registry {
            // DCP's `.metadata` is a pickle, which PyTorch's legacy format would claim: it is tried
            // first.
            formats: vec![
                Arc::new(Native),
                Arc::new(SafeTensors),
                Arc::new(Dcp),
                Arc::new(PyTorch),
            ],
        }
    }

    /// No formats at all: build a registry of only your own with [`with`](Registry::with).
    pub fn empty() -> Self {
        Registry {
            formats: Vec::new(),
        }
    }

    /// This registry and `format`, tried after the ones already in it.
    #[must_use]
    pub fn with(mut self, format: impl Format + 'static) -> Self {
        self.formats.push(Arc::new(format));
        self
    }

    /// Every format, in the order detection tries them.
    pub fn formats(&self) -> impl Iterator<Item = &dyn Format> + '_ {
        self.formats.iter().map(|f| &**f)
    }

    /// The first format that recognises a file starting with `head` and `len` bytes long.
    pub fn detect(&self, head: &[u8], len: u64) -> Option<&Arc<dyn Format>> {
        let head = &head[..head.len().min(super::DETECT_LEN)];
        self.formats.iter().find(|f| f.detect(head, len))
    }

    /// The format a file name's extension asks for (`.ckpt`, `.safetensors`, `.pt`).
    pub fn by_extension(&self, path: &Path) -> Option<&Arc<dyn Format>> {
        let extension = path.extension()?.to_str()?;
        self.formats
            .iter()
            .find(|f| f.extensions().contains(&extension))
    }

    /// The format named `name` (`"pytorch"`).
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn Format>> {
        self.formats.iter().find(|f| f.name() == name)
    }

    /// The formats' names joined by `", "`, for messages.
    pub(crate) fn names(&self) -> String {
        self.formats
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.formats.iter().map(|f| f.name()))
            .finish()
    }
}
