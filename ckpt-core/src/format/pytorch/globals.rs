//! The globals a pickle may name: exactly the default allow-list of PyTorch's
//! `torch._weights_only_unpickler` (144 names in PyTorch 2.15), after the Python 2 names that
//! protocol 2 writes (`__builtin__.set`) are mapped as its `_read_global_instruction` maps them.
//!
//! A global is a tag here, never a function: what `REDUCE` does with one is in the unpickler.
//! Some allowed globals build objects ckpt has no value for (a meta or a sparse tensor); they
//! are recognised, so that the error says what the file holds rather than that the global is
//! refused.

use super::error::{PtError, PtErrorKind};
use crate::dtype::TorchDType;

/// An allowed global, as `REDUCE`, `NEWOBJ`, `BUILD` and `BINPERSID` dispatch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `collections.Counter(dict)`.
    Counter,
    /// `builtins.set(list)`.
    Set,
    /// `builtins.complex(re, im)`.
    Complex,
    /// `builtins.bytearray(bytes)`.
    ByteArray,
    /// `_codecs.encode(str, encoding)`: how protocol 2 pickles `bytes`.
    Encode,
    /// `torch.Size(tuple)`.
    Size,
    /// `torch.device(type[, index])`.
    Device,
    /// The class `torch.Tensor`: the type argument of `_rebuild_from_type_v2`.
    TensorClass,
    /// The class `torch.nn.parameter.Parameter`, which `NEWOBJ` may instantiate.
    ParameterClass,
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)`.
    RebuildTensor,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[,
    /// metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks,
    /// dtype[, metadata])`.
    RebuildTensorV3,
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks)`.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state(data, requires_grad, hooks, state)`.
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2(func, type, args, state)`.
    RebuildFromTypeV2,
    /// A typed storage class (`torch.FloatStorage`, `torch.cuda.HalfStorage`), naming the
    /// dtype of a persistent storage.
    TypedStorage(TorchDType),
    /// `torch.storage.UntypedStorage`: bytes.
    UntypedStorage,
    /// A dtype object, `torch.float32`.
    DType(TorchDType),
    /// `_io.BytesIO`, which only a DCP item's pickle may name
    /// ([`Dialect::DcpItem`](super::unpickle::Dialect::DcpItem)), never a `.pt` file's.
    BytesIo,
    /// An allowed global that builds something ckpt has no value for; what it builds.
    Unrepresentable(&'static str),
}

/// Python 2's module names that protocol 2 writes, as `torch._utils.IMPORT_MAPPING` maps them.
const IMPORT_MAPPING: &[(&str, &str)] = &[
    ("__builtin__", "builtins"),
    ("copy_reg", "copyreg"),
    ("Queue", "queue"),
    ("repr", "reprlib"),
    ("_abcoll", "collections.abc"),
    ("UserDict", "collections"),
    ("UserList", "collections"),
    ("UserString", "collections"),
    ("whichdb", "dbm"),
    ("StringIO", "io"),
    ("cStringIO", "io"),
];

/// A global's module and name.
type Name = (&'static str, &'static str);

/// Python 2's names, as `torch._utils.NAME_MAPPING` maps them; consulted before the modules.
const NAME_MAPPING: &[(Name, Name)] = &[
    (("__builtin__", "xrange"), ("builtins", "range")),
    (("__builtin__", "reduce"), ("functools", "reduce")),
    (("__builtin__", "intern"), ("sys", "intern")),
    (("__builtin__", "unichr"), ("builtins", "chr")),
    (("__builtin__", "unicode"), ("builtins", "str")),
    (("__builtin__", "long"), ("builtins", "int")),
    (("itertools", "izip"), ("builtins", "zip")),
    (("itertools", "imap"), ("builtins", "map")),
    (("itertools", "ifilter"), ("builtins", "filter")),
    (("itertools", "ifilterfalse"), ("itertools", "filterfalse")),
    (("itertools", "izip_longest"), ("itertools", "zip_longest")),
    (
        ("UserDict", "IterableUserDict"),
        ("collections", "UserDict"),
    ),
    (("UserList", "UserList"), ("collections", "UserList")),
    (("UserString", "UserString"), ("collections", "UserString")),
    (("__builtin__", "basestring"), ("builtins", "str")),
    (("exceptions", "StandardError"), ("builtins", "Exception")),
    (("UserDict", "UserDict"), ("collections", "UserDict")),
];

/// The typed storage classes, by the part of their name before `Storage`, and their dtypes.
/// The quantized ones exist only in the `torch` module, the others also in `torch.cuda`.
const STORAGES: &[(&str, &str)] = &[
    ("Double", "float64"),
    ("Float", "float32"),
    ("Half", "float16"),
    ("BFloat16", "bfloat16"),
    ("Long", "int64"),
    ("Int", "int32"),
    ("Short", "int16"),
    ("Char", "int8"),
    ("Byte", "uint8"),
    ("Bool", "bool"),
    ("ComplexFloat", "complex64"),
    ("ComplexDouble", "complex128"),
    ("QInt8", "qint8"),
    ("QInt32", "qint32"),
    ("QUInt8", "quint8"),
    ("QUInt4x2", "quint4x2"),
    ("QUInt2x4", "quint2x4"),
];

/// The legacy tensor classes (`torch.FloatTensor`), by the part of their name before `Tensor`;
/// all but `Bool` also in `torch.sparse` and `torch.cuda.sparse`.
const TENSOR_CLASSES: &[&str] = &[
    "Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
];

/// The quantization schemes, for `_rebuild_qtensor`.
const QSCHEMES: &[&str] = &[
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
];

/// The global `module.name` names, mapped as PyTorch maps Python 2's names, if the allow-list
/// has it; else PyTorch's own error, naming it as PyTorch would.
pub(crate) fn resolve(module: &str, name: &str) -> Result<Global, PtError> {
    let (module, name) = map_python2(module, name);
    lookup(module, name).ok_or_else(|| {
        PtErrorKind::UnsupportedGlobal {
            name: format!("{module}.{name}"),
        }
        .into()
    })
}

fn map_python2<'a>(module: &'a str, name: &'a str) -> (&'a str, &'a str) {
    if let Some((_, to)) = NAME_MAPPING
        .iter()
        .find(|(from, _)| *from == (module, name))
    {
        return *to;
    }
    match IMPORT_MAPPING.iter().find(|(from, _)| *from == module) {
        Some((_, to)) => (to, name),
        None => (module, name),
    }
}

fn lookup(module: &str, name: &str) -> Option<Global> {
    let global = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("collections", "Counter") => Global::Counter,
        ("builtins", "set") => Global::Set,
        ("builtins", "complex") => Global::Complex,
        ("builtins", "bytearray") => Global::ByteArray,
        ("_codecs", "encode") => Global::Encode,
        ("torch", "Size") => Global::Size,
        ("torch", "device") => Global::Device,
        ("torch", "Tensor") => Global::TensorClass,
        ("torch.nn.parameter", "Parameter") => Global::ParameterClass,
        ("torch.storage", "UntypedStorage") => Global::UntypedStorage,
        ("torch.storage", "TypedStorage") => {
            Global::Unrepresentable("torch.storage.TypedStorage, which names no dtype")
        }
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch._utils", "_rebuild_meta_tensor_no_storage") => Global::Unrepresentable(
            "a tensor on the meta device (torch._utils._rebuild_meta_tensor_no_storage), \
             which has no data",
        ),
        ("torch._utils", "_rebuild_sparse_tensor") => {
            Global::Unrepresentable("a sparse tensor (torch._utils._rebuild_sparse_tensor)")
        }
        ("torch.serialization", "_get_layout") => Global::Unrepresentable(
            "a tensor layout (torch.serialization._get_layout), used by sparse tensors",
        ),
        ("torch._utils", "_rebuild_qtensor") => {
            Global::Unrepresentable("a quantized tensor (torch._utils._rebuild_qtensor)")
        }
        ("torch._utils", "_rebuild_wrapper_subclass") => Global::Unrepresentable(
            "a wrapper tensor subclass (torch._utils._rebuild_wrapper_subclass)",
        ),
        ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor") => Global::Unrepresentable(
            "a tensor of a device without storage \
             (torch._utils._rebuild_device_tensor_from_cpu_tensor)",
        ),
        ("torch._utils", "_rebuild_device_tensor_from_numpy") => Global::Unrepresentable(
            "a tensor of a device without storage \
             (torch._utils._rebuild_device_tensor_from_numpy)",
        ),
        ("torch", qscheme) if QSCHEMES.contains(&qscheme) => Global::Unrepresentable(
            "a quantization scheme (torch.per_tensor_affine and the like), used by quantized \
             tensors",
        ),
        ("torch", dtype) if TorchDType::from_name(dtype).is_some() => {
            Global::DType(TorchDType::from_name(dtype)?)
        }
        ("torch" | "torch.cuda", class) if class.ends_with("Storage") => {
            let base = class.strip_suffix("Storage")?;
            let (_, dtype) = STORAGES.iter().find(|(b, _)| *b == base)?;
            if module == "torch.cuda" && base.starts_with('Q') {
                return None;
            }
            Global::TypedStorage(TorchDType::from_name(dtype)?)
        }
        ("torch" | "torch.cuda" | "torch.sparse" | "torch.cuda.sparse", class)
            if class.ends_with("Tensor") =>
        {
            let base = class.strip_suffix("Tensor")?;
            if !TENSOR_CLASSES.contains(&base) || (module.ends_with("sparse") && base == "Bool") {
                return None;
            }
            Global::Unrepresentable("a legacy tensor class (torch.FloatTensor and the like)")
        }
        _ => return None,
    };
    Some(global)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python2_names_are_mapped_first() {
        assert_eq!(resolve("__builtin__", "set").unwrap(), Global::Set);
        assert_eq!(
            resolve("__builtin__", "bytearray").unwrap(),
            Global::ByteArray
        );
        let err = resolve("__builtin__", "long").unwrap_err();
        assert!(
            err.to_string().contains("GLOBAL builtins.int was not"),
            "{err}"
        );
    }

    #[test]
    fn near_misses_are_refused() {
        for (module, name) in [
            ("torch", "UntypedStorage"),
            ("torch.cuda", "QInt8Storage"),
            ("torch.sparse", "BoolTensor"),
            ("torch", "ComplexFloatTensor"),
            ("torch", "float128"),
            ("builtins", "bytes"),
            ("torch._utils", "_rebuild_tensor_v4"),
        ] {
            assert!(resolve(module, name).is_err(), "{module}.{name}");
        }
    }
}
