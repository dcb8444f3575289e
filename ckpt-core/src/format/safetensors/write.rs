//! Writing: the header laid out by the `safetensors` crate (so the bytes are the crate's),
//! then every tensor's data streamed into the sink, a GPU's one staging buffer at a time.

use std::collections::HashMap;

use safetensors::tensor::{Metadata, TensorInfo};

use super::{METADATA, NAME, dtype_to};
use crate::format::{FormatError, FormatErrorKind};
use crate::state::KeyPath;
use crate::storage::Sink;
use crate::tensor::TensorView;
use crate::value::{Key, Value};

/// Writes `value`, a map of tensors (nested maps flattened with dots) and an optional
/// `__metadata__` map of strings, as one safetensors file.
pub(super) fn write(value: &Value<'_>, sink: &mut dyn Sink) -> Result<(), FormatError> {
    let flat = flatten(value)?;
    write_flat(&flat.tensors, flat.metadata.clone(), sink)
}

/// Writes `tensors` and `metadata` as one safetensors file.
pub(super) fn write_flat(
    tensors: &[(String, TensorView<'_>)],
    metadata: Option<HashMap<String, String>>,
    sink: &mut dyn Sink,
) -> Result<(), FormatError> {
    let io = |e: std::io::Error| FormatError::writing(NAME, e);
    if let Some((name, t)) = tensors.iter().find(|(_, t)| dtype_to(t.dtype()).is_none()) {
        let dtype = t.dtype();
        return Err(FormatError::writing(
            NAME,
            FormatErrorKind::Unsupported(format!(
                "safetensors has no dtype for {dtype} (torch.{}); save it as .ckpt or .pt",
                dtype.torch_name()
            )),
        )
        .at_key(name));
    }
    // The crate's order: by descending dtype, then by name.
    let mut order: Vec<&(String, TensorView<'_>)> = tensors.iter().collect();
    order.sort_by(|(a, x), (b, y)| {
        dtype_to(y.dtype())
            .cmp(&dtype_to(x.dtype()))
            .then_with(|| a.cmp(b))
    });
    let mut offset = 0;
    let infos = order
        .iter()
        .map(|(name, t)| {
            let start = offset;
            offset += t.nbytes();
            let info = TensorInfo {
                // Checked above.
                dtype: dtype_to(t.dtype()).unwrap_or(safetensors::Dtype::U8),
                shape: t.shape().to_vec(),
                data_offsets: (start, offset),
            };
            (name.clone(), info)
        })
        .collect();
    let unsupported = |e: &dyn std::fmt::Display| {
        FormatError::writing(
            NAME,
            FormatErrorKind::Unsupported(format!("safetensors: {e}")),
        )
    };
    let metadata = Metadata::new(metadata, infos).map_err(|e| unsupported(&e))?;
    let mut header = serde_json::to_vec(&metadata).map_err(|e| unsupported(&e))?;
    // Aligned to 8 bytes with spaces, as the crate does.
    header.resize(header.len().next_multiple_of(8), b' ');
    sink.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    sink.write_all(&header).map_err(io)?;
    for (name, t) in order {
        let mut written = Ok(());
        t.stream_le_bytes(&mut |chunk| {
            if written.is_ok() {
                written = sink.write_all(chunk);
            }
        })
        .map_err(|e| FormatError::writing(NAME, FormatErrorKind::Device(e)).at_key(name))?;
        written.map_err(io)?;
    }
    sink.flush().map_err(io)
}

/// The tensors and metadata of a value that safetensors can hold: a map of tensors, nested maps
/// flattened with dots, and an optional `__metadata__` map of strings.
pub(super) struct Flat<'v> {
    pub(super) tensors: Vec<(String, TensorView<'v>)>,
    pub(super) metadata: Option<HashMap<String, String>>,
}

pub(super) fn flatten<'v>(value: &'v Value<'_>) -> Result<Flat<'v>, FormatError> {
    let unsupported = |key: Option<&str>, problem: String| {
        let e = FormatError::writing(NAME, FormatErrorKind::Unsupported(problem));
        match key {
            Some(key) => e.at_key(key),
            None => e,
        }
    };
    let Value::Map(map) = value else {
        return Err(unsupported(
            None,
            format!("safetensors holds a map of tensors, not a {}", value.kind()),
        ));
    };
    let mut metadata = None;
    let mut tensors = Vec::new();
    for (key, entry) in map {
        if matches!(key, Key::Str(k) if k == METADATA) {
            let strings = entry
                .as_map()
                .and_then(|m| {
                    m.iter()
                        .map(|(k, v)| Some((k.to_string(), v.as_str()?.to_owned())))
                        .collect::<Option<HashMap<_, _>>>()
                })
                .ok_or_else(|| {
                    unsupported(
                        Some(METADATA),
                        "safetensors metadata must map strings to strings".to_owned(),
                    )
                })?;
            metadata = Some(strings);
            continue;
        }
        let mut problem = None;
        let mut path = KeyPath::new();
        path.push(key);
        entry.walk(&mut path, &mut |k, leaf| match leaf {
            Value::Tensor(t) => tensors.push((k.to_owned(), t.view())),
            other if problem.is_none() => problem = Some((k.to_owned(), other.kind())),
            _ => {}
        });
        if let Some((k, kind)) = problem {
            return Err(unsupported(
                Some(&k),
                format!(
                    "safetensors holds only tensors, and this is {}; save it as .ckpt or .pt",
                    with_article(kind)
                ),
            ));
        }
    }
    Ok(Flat { tensors, metadata })
}

/// `a map`, `an int`.
fn with_article(kind: &str) -> String {
    let vowel = kind.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {kind}", if vowel { "an" } else { "a" })
}
