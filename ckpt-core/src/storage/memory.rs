//! Sources whose whole object is in memory: a buffer, or a local file mapped into memory.

use std::io;
use std::sync::Arc;

use super::{Location, Source};
use crate::tensor::Backing;

/// An object held whole in memory, which tensors may borrow from.
pub(crate) struct Held {
    location: Location,
    bytes: Arc<dyn Backing>,
}

impl Held {
    pub(crate) fn new(location: Location, bytes: Arc<dyn Backing>) -> Self {
        Held { location, bytes }
    }

    /// Bytes given by the caller, named for messages.
    pub(crate) fn from_vec(name: &str, bytes: Vec<u8>) -> Self {
        Held::new(Location::Memory(name.to_owned()), Arc::new(bytes))
    }
}

impl Source for Held {
    fn location(&self) -> &Location {
        &self.location
    }

    fn len(&self) -> u64 {
        self.bytes.bytes().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let bytes = self.bytes.bytes();
        let part = usize::try_from(offset)
            .ok()
            .and_then(|start| bytes.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} bytes at offset {offset} run past the end ({} bytes)",
                        buf.len(),
                        bytes.len()
                    ),
                )
            })?;
        buf.copy_from_slice(part);
        Ok(())
    }

    fn backing(&self) -> Option<Arc<dyn Backing>> {
        Some(Arc::clone(&self.bytes))
    }
}
