//! A format outside ckpt: written here with only the `Format` trait, then registered, and every
//! entry point (save by extension, load by detection, inspect, `load_from`, the errors) works.

use std::sync::Arc;

use ckpt::format::{Format, FormatError, FormatErrorKind, Header, Opened, Registry, TensorInfo};
use ckpt::storage::{Sink, Source};
use ckpt::{DType, LoadFrom, LoadOptions, SaveOptions, StateDict, Tensor, Value, dict};

use crate::common::models::{Net, bytes_of};

/// `TOY1`, then one line per tensor: `key dtype dim,dim,... hex`.
struct Toy;

const MAGIC: &[u8] = b"TOY1\n";

fn error(source: &dyn Source, message: String) -> FormatError {
    FormatError::new(
        source.location(),
        "toy",
        FormatErrorKind::Other(message.into()),
    )
}

impl Format for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn extensions(&self) -> &'static [&'static str] {
        &["toy"]
    }

    fn detect(&self, head: &[u8], _: u64) -> bool {
        head.starts_with(MAGIC)
    }

    fn open(&self, source: Arc<dyn Source>) -> Result<Box<dyn Opened>, FormatError> {
        let mut bytes = vec![0; source.len() as usize];
        source
            .read_at(0, &mut bytes)
            .map_err(|e| FormatError::new(source.location(), "toy", e))?;
        let text = String::from_utf8(bytes).map_err(|e| error(&*source, e.to_string()))?;
        let mut tensors = Vec::new();
        for (number, line) in text.lines().skip(1).enumerate() {
            let bad = || error(&*source, format!("line {}: {line:?}", number + 2));
            let fields: Vec<&str> = line.split(' ').collect();
            let [key, dtype, shape, hex] = fields[..] else {
                return Err(bad());
            };
            let dtype: DType = dtype.parse().map_err(|_| bad())?;
            let shape: Vec<usize> = shape
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            let data: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            let tensor = Tensor::from_le_bytes(dtype, &shape, &data)
                .map_err(|e| error(&*source, e.to_string()).at_key(key))?;
            tensors.push((key.to_owned(), tensor));
        }
        Ok(Box::new(ToyFile { tensors }))
    }

    fn write(&self, value: &Value<'_>, sink: &mut dyn Sink) -> Result<(), FormatError> {
        let io = |e| FormatError::writing("toy", e);
        sink.write_all(MAGIC).map_err(io)?;
        for (key, tensor) in value.tensors() {
            let shape: Vec<String> = tensor.shape().iter().map(ToString::to_string).collect();
            let bytes = tensor
                .to_le_bytes()
                .map_err(|e| FormatError::writing("toy", FormatErrorKind::Device(e)))?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(sink, "{key} {} {} {hex}", tensor.dtype(), shape.join(",")).map_err(io)?;
        }
        Ok(())
    }
}

struct ToyFile {
    tensors: Vec<(String, Tensor)>,
}

impl Opened for ToyFile {
    fn header(&self) -> Header {
        let tensors = self
            .tensors
            .iter()
            .map(|(key, t)| TensorInfo::new(key.as_str(), t.dtype(), t.shape().to_vec()).unwrap())
            .collect();
        Header::new("toy", tensors, Vec::new())
    }

    fn value(&self) -> Result<Value<'static>, FormatError> {
        Ok(self
            .tensors
            .iter()
            .map(|(key, t)| (key.as_str(), t.clone()))
            .collect())
    }
}

fn registry() -> Registry {
    Registry::builtin().with(Toy)
}

#[test]
fn a_registered_format_saves_loads_and_inspects_like_the_built_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.toy");
    let model = Net::new(1.0);
    // Chosen by the extension, once registered.
    ckpt::save_with(
        model.state_dict(),
        &path,
        &SaveOptions::new().formats(registry()),
    )
    .unwrap();
    assert!(std::fs::read(&path).unwrap().starts_with(MAGIC));
    // Detected by its first bytes, once registered.
    let options = LoadOptions::new().formats(registry());
    let checkpoint = ckpt::load_with(&path, &options).unwrap();
    assert_eq!(checkpoint.format().name(), "toy");
    let mut restored = Net::new(0.0);
    let _ = restored.load_state_dict(&checkpoint, true).unwrap();
    assert_eq!(bytes_of(&restored), bytes_of(&model));
    // Streamed into a model, and inspected, through the same registry.
    let mut streamed = Net::new(0.0);
    let _ = streamed
        .load_from_with(&path, &options, &ckpt::StateDictOptions::new())
        .unwrap();
    assert_eq!(bytes_of(&streamed), bytes_of(&model));
    let header = ckpt::inspect_with(&path, &options).unwrap();
    assert_eq!(header.format, "toy");
    assert_eq!(header.tensors[0].key, "fc1.weight");

    // Without the registration, the file is no checkpoint ckpt knows.
    let err = ckpt::load(&path).unwrap_err();
    assert!(
        err.to_string().contains(
            "not a checkpoint in any format ckpt reads (ckpt, safetensors, dcp, pytorch)"
        ),
        "{err}"
    );
    // And the format's own errors name the file and the key, as ckpt's do.
    std::fs::write(&path, b"TOY1\nw F32 2 0000803f\n").unwrap();
    let err = ckpt::load_with(&path, &options).unwrap_err();
    assert!(
        matches!(err, ckpt::Error::Format { format: "toy", .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: \"w\": F32 tensor of shape [2] needs 8 bytes, got 4",
            path.display()
        )
    );
    // Any format can be asked for by name.
    let forced = dir.path().join("forced.ckpt");
    ckpt::save_with(
        dict! { "w" => Tensor::scalar(1.0f32) },
        &forced,
        &SaveOptions::new().format(Toy),
    )
    .unwrap();
    assert_eq!(
        ckpt::load_with(&forced, &options).unwrap().format().name(),
        "toy"
    );
}
