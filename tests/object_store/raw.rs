//! `Raw`: a format whose file is the bytes of one `u8` tensor, so that the tests put and get
//! any bytes at a URL through ckpt's own storage seam, on every backend alike.

use std::sync::Arc;

use ckpt::format::{Format, FormatError, FormatErrorKind, Header, Opened};
use ckpt::storage::{Sink, Source};
use ckpt::{LoadOptions, SaveOptions, Tensor, Value, dict};

pub(crate) struct Raw;

impl Format for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn extensions(&self) -> &'static [&'static str] {
        &[]
    }

    fn detect(&self, _: &[u8], _: u64) -> bool {
        false
    }

    fn open(&self, source: Arc<dyn Source>) -> Result<Box<dyn Opened>, FormatError> {
        let mut bytes = vec![0; source.len() as usize];
        source
            .read_at(0, &mut bytes)
            .map_err(|e| FormatError::new(source.location(), "raw", e))?;
        Ok(Box::new(RawFile(bytes)))
    }

    fn write(&self, value: &Value<'_>, sink: &mut dyn Sink) -> Result<(), FormatError> {
        let bytes = value["bytes"].as_tensor().expect("a `bytes` tensor");
        let bytes = bytes
            .to_le_bytes()
            .map_err(|e| FormatError::writing("raw", FormatErrorKind::Device(e)))?;
        sink.write_all(&bytes)
            .map_err(|e| FormatError::writing("raw", e))
    }
}

struct RawFile(Vec<u8>);

impl Opened for RawFile {
    fn header(&self) -> Header {
        Header::new("raw", Vec::new(), Vec::new())
    }

    fn value(&self) -> Result<Value<'static>, FormatError> {
        let n = self.0.len();
        Ok(
            dict! { "bytes" => Tensor::from_le_bytes(ckpt::DType::U8, &[n], &self.0).unwrap() }
                .to_owned_value(),
        )
    }
}

/// The object's bytes at `url`.
pub(crate) fn get(url: &str, options: &LoadOptions) -> Vec<u8> {
    let checkpoint = ckpt::load_with(url, &options.clone().format(Raw)).unwrap();
    checkpoint["bytes"]
        .as_tensor()
        .unwrap()
        .to_le_bytes()
        .unwrap()
        .into_owned()
}

/// Puts `bytes` at `url`, as a save would.
pub(crate) fn put(url: &str, bytes: &[u8], options: &SaveOptions) {
    let tensor = Tensor::from_le_bytes(ckpt::DType::U8, &[bytes.len()], bytes).unwrap();
    ckpt::save_with(
        dict! { "bytes" => tensor },
        url,
        &options.clone().format(Raw),
    )
    .unwrap();
}
