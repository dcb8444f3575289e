//! safetensors files, read and written with the `safetensors` crate, and sharded checkpoints
//! (`model.safetensors.index.json` + shards) as Hugging Face writes them.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, View};

use crate::dtype::DType;
use crate::error::{Corruption, Error};
use crate::module::KeyPath;
use crate::tensor::{Backing, Tensor, TensorView};
use crate::value::{Key, TensorCow, Value};

/// The key under which a file's `__metadata__` strings appear in the loaded value.
pub(crate) const METADATA: &str = "__metadata__";

fn dtype_from(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::F64 => DType::F64,
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

fn dtype_to(dtype: DType) -> Dtype {
    match dtype {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
    }
}

/// Whether `bytes` look like a safetensors file: a little-endian header length, then a JSON
/// object that fits in the file.
pub(crate) fn sniff(bytes: &[u8]) -> bool {
    let Some(len) = bytes.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)) else {
        return false;
    };
    bytes.get(8) == Some(&b'{')
        && len
            .checked_add(8)
            .is_some_and(|end| end <= bytes.len() as u64)
}

/// Reads a safetensors file: a flat map of tensors in file order, reading `backing` in place,
/// plus `__metadata__` as a map of strings when the file has one.
pub(crate) fn read(path: &Path, backing: Arc<dyn Backing>) -> Result<Value<'static>, Error> {
    let bytes = backing.bytes();
    let corrupt =
        |key: Option<&str>, message: String| Error::corrupt(path, key, Corruption::Header(message));
    let (n, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| {
        let truncated = matches!(
            e,
            safetensors::SafeTensorError::HeaderTooSmall
                | safetensors::SafeTensorError::InvalidHeaderLength
                | safetensors::SafeTensorError::MetadataIncompleteBuffer
        );
        if truncated {
            Error::corrupt(
                path,
                None,
                Corruption::Truncated {
                    len: bytes.len() as u64,
                    needed: 0,
                },
            )
        } else {
            corrupt(None, format!("safetensors: {e}"))
        }
    })?;
    let data_start = 8 + n;
    let mut infos: Vec<(String, &safetensors::tensor::TensorInfo)> =
        metadata.tensors().into_iter().collect();
    infos.sort_by(|(a, x), (b, y)| (x.data_offsets.0, a).cmp(&(y.data_offsets.0, b)));
    let mut map = IndexMap::new();
    for (name, info) in infos {
        let dtype = dtype_from(info.dtype).ok_or_else(|| {
            Error::corrupt(
                path,
                Some(&name),
                Corruption::Unknown {
                    what: "dtype",
                    name: format!("{:?}", info.dtype),
                },
            )
        })?;
        // `read_metadata` checked that the offsets lie inside the file and match the shape.
        let range = data_start + info.data_offsets.0..data_start + info.data_offsets.1;
        let tensor = Tensor::mapped(Arc::clone(&backing), range, dtype, &info.shape)
            .map_err(|e| Error::corrupt(path, Some(&name), e.into()))?;
        map.insert(Key::Str(name), Value::Tensor(TensorCow::Owned(tensor)));
    }
    if let Some(strings) = metadata.metadata() {
        let sorted: BTreeMap<&String, &String> = strings.iter().collect();
        let entries: IndexMap<Key, Value<'static>> = sorted
            .into_iter()
            .map(|(k, v)| (Key::Str(k.clone()), Value::String(v.clone())))
            .collect();
        map.insert(Key::Str(METADATA.to_owned()), Value::Map(entries));
    }
    Ok(Value::Map(map))
}

/// One tensor as the `safetensors` crate wants it.
struct Entry<'v> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: std::borrow::Cow<'v, [u8]>,
}

impl View for &Entry<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The tensors and metadata of a value that safetensors can hold: a map of tensors, nested maps
/// flattened with dots, and an optional `__metadata__` map of strings.
struct Flat<'v> {
    tensors: Vec<(String, TensorView<'v>)>,
    metadata: Option<HashMap<String, String>>,
}

fn flatten<'v>(path: &Path, value: &'v Value<'_>) -> Result<Flat<'v>, Error> {
    let unsupported = |key: Option<&str>, problem: String| Error::Unsupported {
        path: path.to_owned(),
        key: key.map(str::to_owned),
        problem,
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
                    "safetensors holds only tensors, and this is a {kind}; save it as .ckpt or .pt"
                ),
            ));
        }
    }
    Ok(Flat { tensors, metadata })
}

/// A value checked and laid out for writing as safetensors.
pub(crate) struct Prepared<'v> {
    entries: Vec<(String, Entry<'v>)>,
    metadata: Option<HashMap<String, String>>,
}

/// Checks that safetensors can hold `value` (errors name `path`) and lays it out.
pub(crate) fn prepare<'v>(path: &Path, value: &'v Value<'_>) -> Result<Prepared<'v>, Error> {
    let flat = flatten(path, value)?;
    let entries = flat
        .tensors
        .iter()
        .map(|(k, t)| {
            let data = t.try_le_bytes().map_err(|source| Error::Device {
                path: path.to_owned(),
                key: k.clone(),
                source,
            })?;
            let entry = Entry {
                dtype: dtype_to(t.dtype()),
                shape: t.shape().to_vec(),
                data,
            };
            Ok((k.clone(), entry))
        })
        .collect::<Result<_, Error>>()?;
    Ok(Prepared {
        entries,
        metadata: flat.metadata,
    })
}

impl Prepared<'_> {
    /// Writes the file at `target`.
    pub(crate) fn write_to(self, target: &Path) -> io::Result<()> {
        let entries = self.entries.iter().map(|(k, e)| (k, e));
        safetensors::serialize_to_file(entries, self.metadata, target).map_err(io::Error::other)
    }
}

/// Whether `path` names a sharded checkpoint's index.
pub(crate) fn is_index(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.ends_with(".index.json"))
}

/// `model.safetensors.index.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
    weight_map: BTreeMap<String, String>,
}

/// Reads a sharded checkpoint: every shard named in the index, merged in shard order, each
/// tensor checked to be in the shard the index names.
pub(crate) fn read_sharded(
    index_path: &Path,
    mmap: bool,
) -> Result<(Value<'static>, Vec<Arc<dyn Backing>>), Error> {
    let text = std::fs::read(index_path).map_err(|e| Error::io(index_path, e))?;
    let index: Index = serde_json::from_slice(&text)
        .map_err(|e| Error::corrupt(index_path, None, Corruption::Index(e.to_string())))?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut shards: Vec<&String> = index.weight_map.values().collect();
    shards.sort();
    shards.dedup();
    let mut merged = IndexMap::new();
    let mut backings = Vec::new();
    for shard in shards {
        let shard_path = safe_join(dir, shard).ok_or_else(|| {
            Error::corrupt(
                index_path,
                None,
                Corruption::Index(format!("shard name {shard:?} leaves the directory")),
            )
        })?;
        let backing = crate::backing::open(&shard_path, mmap)?;
        let Value::Map(tensors) = read(&shard_path, Arc::clone(&backing))? else {
            unreachable!("safetensors files read as maps")
        };
        for (key, value) in tensors {
            let name = key.to_string();
            if name == METADATA {
                continue;
            }
            if index.weight_map.get(&name) != Some(shard) {
                return Err(Error::corrupt(
                    index_path,
                    Some(&name),
                    Corruption::Index(format!(
                        "found in {shard}, but the index does not put it there"
                    )),
                ));
            }
            merged.insert(key, value);
        }
        backings.push(backing);
    }
    if let Some(missing) = index
        .weight_map
        .keys()
        .find(|k| !merged.contains_key(&Key::Str((*k).clone())))
    {
        return Err(Error::corrupt(
            index_path,
            Some(missing),
            Corruption::Index(format!(
                "listed but absent from {}",
                index.weight_map[missing]
            )),
        ));
    }
    Ok((Value::Map(merged), backings))
}

/// `dir/name` if `name` is a plain file name: an index cannot point outside its directory.
fn safe_join(dir: &Path, name: &str) -> Option<PathBuf> {
    let candidate = Path::new(name);
    let plain = candidate.components().count() == 1
        && matches!(
            candidate.components().next(),
            Some(std::path::Component::Normal(_))
        );
    plain.then(|| dir.join(candidate))
}

/// Writes `value` as shards of at most `max_shard_bytes` of tensor data (a larger tensor gets
/// a shard of its own) and the index, next to `index_path`, which must end in `.index.json`.
/// Shards are named after the index: `model.safetensors.index.json` gets
/// `model-00001-of-00003.safetensors`, …
pub(crate) fn write_sharded(
    index_path: &Path,
    value: &Value<'_>,
    max_shard_bytes: usize,
    fsync: bool,
    write_file: &dyn Fn(&Path, &Value<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let flat = flatten(index_path, value)?;
    let mut shards: Vec<Vec<&(String, TensorView<'_>)>> = vec![Vec::new()];
    let mut size = 0;
    for entry in &flat.tensors {
        let bytes = entry.1.nbytes();
        if size > 0 && size + bytes > max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        shards.last_mut().expect("one shard at least").push(entry);
    }
    let name = index_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".index.json"))
        .and_then(|n| n.strip_suffix(".safetensors"))
        .ok_or_else(|| Error::Unsupported {
            path: index_path.to_owned(),
            key: None,
            problem: "a sharded checkpoint's index must be named NAME.safetensors.index.json"
                .to_owned(),
        })?;
    let dir = index_path.parent().unwrap_or(Path::new(""));
    let count = shards.len();
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("{name}-{:05}-of-{count:05}.safetensors", i + 1);
        let mut map: Value<'_> = shard.iter().map(|(k, t)| (k.as_str(), t.view())).collect();
        if let Some(meta) = &flat.metadata {
            let meta: Value<'_> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            map.insert(METADATA, meta);
        }
        write_file(&dir.join(&file), &map)?;
        for (key, _) in shard {
            weight_map.insert(key.clone(), file.clone());
        }
    }
    let total: usize = flat.tensors.iter().map(|(_, t)| t.nbytes()).sum();
    let index = Index {
        metadata: BTreeMap::from([("total_size".to_owned(), serde_json::Value::from(total))]),
        weight_map,
    };
    let json = serde_json::to_vec_pretty(&index)
        .map_err(|e| Error::io(index_path, io::Error::other(e)))?;
    crate::atomic::write_atomically(index_path, fsync, |file, _| {
        use std::io::Write;
        file.write_all(&json).map_err(|e| Error::io(index_path, e))
    })
}
