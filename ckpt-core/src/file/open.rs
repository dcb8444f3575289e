//! Opening a location for reading: its bytes through the storage seam, its format detected in
//! the registry, its structure checked by the format.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Error, LoadOptions};
use crate::device::Device;
use crate::format::dcp;
use crate::format::safetensors::sharded;
use crate::format::{Corruption, DETECT_LEN, Format, Header, Opened, Registry, SafeTensors};
use crate::storage::{self, Location, Source};
use crate::value::Value;

/// A location opened for reading, its data not yet read.
pub(crate) struct File {
    pub(crate) location: Location,
    pub(crate) format: Arc<dyn Format>,
    pub(crate) contents: Contents,
}

pub(crate) enum Contents {
    /// One file, its structure checked.
    One {
        source: Arc<dyn Source>,
        opened: Box<dyn Opened>,
    },
    /// A sharded checkpoint: each shard's structure checked against the index.
    Sharded { shards: Vec<sharded::Shard> },
}

/// Opens `location` as `options` say: the format given, or detected.
pub(crate) fn open(location: &Location, options: &LoadOptions) -> Result<File, Error> {
    let dcp_allowed = options
        .format
        .as_ref()
        .is_none_or(|f| f.name() == dcp::NAME);
    if let Some(metadata) = dcp::metadata_of(location).filter(|_| dcp_allowed) {
        return open_dcp(location, &metadata, options);
    }
    if options.format.is_none() && sharded::is_index(location) {
        let shards = sharded::open(location, options.mmap, &options.object_store)?;
        return Ok(File {
            location: location.clone(),
            format: Arc::new(SafeTensors),
            contents: Contents::Sharded { shards },
        });
    }
    let source = storage::open(location, options.mmap, &options.object_store)
        .map_err(|e| Error::io(location, e))?;
    open_source(source, options)
}

/// Opens the PyTorch Distributed Checkpoint whose `.metadata` is `metadata`: the directory
/// `location`, or the `.metadata` itself.
fn open_dcp(
    location: &Location,
    metadata: &Location,
    options: &LoadOptions,
) -> Result<File, Error> {
    let source = storage::open(metadata, options.mmap, &options.object_store).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            let problem = format!(
                "no {} in it, so not a complete PyTorch Distributed Checkpoint (an unfinished \
                 save leaves none)",
                dcp::METADATA
            );
            Error::io(location, std::io::Error::new(e.kind(), problem))
        } else {
            Error::io(metadata, e)
        }
    })?;
    let opened = dcp::open(Arc::clone(&source), options.mmap, &options.object_store)?;
    Ok(File {
        location: location.clone(),
        format: Arc::new(dcp::Dcp),
        contents: Contents::One {
            source,
            opened: Box::new(opened),
        },
    })
}

/// Opens bytes already at hand.
pub(crate) fn open_source(source: Arc<dyn Source>, options: &LoadOptions) -> Result<File, Error> {
    let location = source.location().clone();
    let format = match &options.format {
        Some(format) => Arc::clone(format),
        None => detect(&*source, &options.formats)?,
    };
    let opened = format.open(Arc::clone(&source))?;
    Ok(File {
        location,
        format,
        contents: Contents::One { source, opened },
    })
}

/// The format of `source`, from its first bytes.
fn detect(source: &dyn Source, formats: &Registry) -> Result<Arc<dyn Format>, Error> {
    let location = source.location();
    let len = source.len();
    let mut head = vec![0; len.min(DETECT_LEN as u64) as usize];
    source
        .read_at(0, &mut head)
        .map_err(|e| Error::io(location, e))?;
    if let Some(format) = formats.detect(&head, len) {
        return Ok(Arc::clone(format));
    }
    // Every format's signature fits in 8 bytes: a shorter file is one cut off.
    let problem = if len < 8 {
        Corruption::Truncated {
            len,
            needed: 8,
            what: "a format's signature",
        }
    } else {
        Corruption::BadMagic {
            found: head.iter().take(8).copied().collect(),
            formats: formats.names(),
        }
    };
    Err(Error::corrupt(location, None, problem))
}

impl File {
    /// What the file holds, from its structure alone.
    pub(crate) fn header(&self) -> Header {
        match &self.contents {
            Contents::One { opened, .. } => opened.header(),
            Contents::Sharded { shards } => Header {
                format: self.format.name(),
                tensors: shards
                    .iter()
                    .flat_map(|(_, opened)| opened.header().tensors)
                    .collect(),
                values: Vec::new(),
            },
        }
    }

    /// Checks every checksum; with `release`, lets the pages go once checked.
    pub(crate) fn verify(&self, release: bool) -> Result<(), Error> {
        match &self.contents {
            Contents::One { opened, .. } => Ok(opened.verify(release)?),
            Contents::Sharded { shards } => shards
                .iter()
                .try_for_each(|(_, opened)| Ok(opened.verify(release)?)),
        }
    }

    /// The saved value, its tensors on the CPU, reading the file in place where they can.
    pub(crate) fn value(&self) -> Result<Value<'static>, Error> {
        match &self.contents {
            Contents::One { opened, .. } => Ok(opened.value()?),
            Contents::Sharded { shards } => Ok(sharded::value(shards)?),
        }
    }

    /// Every file's bytes and structure: one, or each shard.
    pub(crate) fn parts(&self) -> Vec<(&Arc<dyn Source>, &dyn Opened)> {
        match &self.contents {
            Contents::One { source, opened } => vec![(source, &**opened)],
            Contents::Sharded { shards } => shards.iter().map(|(s, o)| (s, &**o)).collect(),
        }
    }

    /// The sources the value's tensors read, for page hints.
    pub(crate) fn sources(&self) -> Vec<Arc<dyn Source>> {
        self.parts()
            .into_iter()
            .map(|(s, _)| Arc::clone(s))
            .collect()
    }

    /// Brings every file into memory where it is not (an object in a store, fetched with
    /// several ranged GETs in flight), for a load that reads everything.
    pub(crate) fn fetch_whole(&self) -> Result<(), Error> {
        self.parts().into_iter().try_for_each(|(source, _)| {
            source
                .fetch_whole()
                .map_err(|e| Error::io(source.location(), e))
        })
    }

    /// The device each tensor was saved on, by its first key; tensors not listed were saved
    /// on the CPU.
    pub(crate) fn saved_devices(&self) -> HashMap<String, Device> {
        self.header()
            .tensors
            .into_iter()
            .filter(|t| t.device != Device::Cpu)
            .map(|t| (t.key, t.device))
            .collect()
    }
}
