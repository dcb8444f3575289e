//! The `weights_only` allow-list, entry by entry against PyTorch 2.15's own
//! (`globals/allowed_globals.txt`), and the objects its globals build, read from files real
//! PyTorch wrote (`globals/*.pt`) and written back as PyTorch reads them.

use std::io::Cursor;

use crate::common::pytorch::*;
use ckpt::dtype::TorchDType;
use ckpt::format::pytorch::PtErrorKind;
use ckpt::value::{Complex64, Key};
use ckpt::{DType, Value};

fn archive_of(pickle: &[u8]) -> Vec<u8> {
    zip_of(&[("a/data.pkl", pickle), ("a/version", b"3\n")])
}

fn global_pickle(module: &str, name: &str) -> Vec<u8> {
    format!("\u{80}\u{02}c{module}\n{name}\n.")
        .chars()
        .map(|c| c as u8)
        .collect()
}

fn allowed() -> Vec<String> {
    let text = String::from_utf8(fixture("globals/allowed_globals.txt")).unwrap();
    text.lines().map(str::to_owned).collect()
}

#[test]
fn every_global_pytorch_allows_is_allowed() {
    let names = allowed();
    assert_eq!(names.len(), 144, "PyTorch 2.15 allows 144 globals");
    let mut dtypes = 0;
    for full in &names {
        let (module, name) = full.rsplit_once('.').unwrap();
        // The bare global as the whole pickle: allowed, so never "not an allowed global"; what
        // it builds is a value (a dtype) or an error saying what it is.
        match read(&archive_of(&global_pickle(module, name))) {
            Ok(Value::DType(dtype)) => {
                assert_eq!(format!("torch.{}", dtype.name()), *full);
                dtypes += 1;
            }
            Ok(other) => panic!("{full} read as {other:?}"),
            Err(e) => assert!(
                !matches!(e.kind(), PtErrorKind::UnsupportedGlobal { .. }),
                "{full}: {e}"
            ),
        }
    }
    assert_eq!(dtypes, 47, "every torch.dtype is a value");
    // Protocol 2 spells builtins as Python 2 did, and PyTorch maps the names back.
    for name in ["set", "complex", "bytearray"] {
        let err = read(&archive_of(&global_pickle("__builtin__", name))).unwrap_err();
        assert!(
            !matches!(err.kind(), PtErrorKind::UnsupportedGlobal { .. }),
            "{err}"
        );
    }
}

#[test]
fn every_global_pytorch_refuses_is_refused_by_its_name() {
    let names = allowed();
    for (module, name, shown) in [
        ("torch", "UntypedStorage", "torch.UntypedStorage"),
        ("__builtin__", "bytes", "builtins.bytes"),
        ("__builtin__", "long", "builtins.int"),
        ("builtins", "dict", "builtins.dict"),
        ("builtins", "eval", "builtins.eval"),
        ("collections", "defaultdict", "collections.defaultdict"),
        ("torch.cuda", "QInt8Storage", "torch.cuda.QInt8Storage"),
        ("torch.sparse", "BoolTensor", "torch.sparse.BoolTensor"),
        ("torch", "ComplexFloatTensor", "torch.ComplexFloatTensor"),
        (
            "torch.nn.modules.linear",
            "Linear",
            "torch.nn.modules.linear.Linear",
        ),
        (
            "torch._utils",
            "_rebuild_tensor_v4",
            "torch._utils._rebuild_tensor_v4",
        ),
    ] {
        assert!(!names.contains(&shown.to_owned()), "{shown}");
        let err = read(&archive_of(&global_pickle(module, name))).unwrap_err();
        assert!(
            matches!(err.kind(), PtErrorKind::UnsupportedGlobal { name } if name == shown),
            "{module}.{name}: {err}"
        );
    }
}

fn int_map(entries: &[(i64, i64)]) -> indexmap::IndexMap<Key, Value<'static>> {
    entries
        .iter()
        .map(|&(k, v)| (Key::Int(k), Value::Int(v)))
        .collect()
}

#[test]
fn counters_sets_complex_numbers_bytes_and_dtypes_read_as_pytorch_builds_them() {
    let counter = read(&fixture("globals/counter.pt")).unwrap();
    assert_eq!(
        counter["milestones"],
        Value::Counter(int_map(&[(10, 1), (25, 2), (40, 1)]))
    );
    assert_eq!(counter["empty"], Value::Counter(int_map(&[])));
    let set = read(&fixture("globals/set.pt")).unwrap();
    assert_eq!(
        set["ids"],
        Value::Set(vec![Value::Int(1), Value::Int(2), Value::Int(3)])
    );
    assert_eq!(set["empty"], Value::Set(vec![]));
    let complex = read(&fixture("globals/complex.pt")).unwrap();
    assert_eq!(complex["z"], Value::Complex(Complex64::new(1.5, -2.0)));
    assert_eq!(complex["j"], Value::Complex(Complex64::new(0.0, 1.0)));
    let bytes = read(&fixture("globals/bytes.pt")).unwrap();
    assert_eq!(bytes["raw"], Value::Bytes(b"\x00ab\xff".to_vec()));
    assert_eq!(bytes["one"], Value::Bytes(b"\x80".to_vec()));
    let bytearray = read(&fixture("globals/bytearray.pt")).unwrap();
    assert_eq!(bytearray["buf"], Value::ByteArray(vec![0, 1, 0xfe, 0xff]));
    let dtypes = read(&fixture("globals/dtype_objects.pt")).unwrap();
    assert_eq!(dtypes["dtype"], Value::DType(TorchDType::from(DType::F32)));
    let names: Vec<&str> = dtypes["dtypes"]
        .as_list()
        .unwrap()
        .iter()
        .map(|v| match v {
            Value::DType(d) => d.name(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["bfloat16", "float8_e4m3fn", "uint16", "bool"]);
    for name in [
        "counter",
        "set",
        "complex",
        "bytes",
        "bytearray",
        "dtype_objects",
        "size_device",
        "parameter_with_state",
        "tensor_with_state",
    ] {
        let value = read(&fixture(&format!("globals/{name}.pt"))).unwrap();
        assert_matches_manifest(&value, &format!("globals/{name}.pt.manifest.json"));
    }
}

/// A tensor carrying Python attributes (`_rebuild_parameter_with_state`,
/// `_rebuild_from_type_v2`) reads as its tensor; the attributes are not kept.
#[test]
fn tensors_with_python_attributes_read_as_their_tensors() {
    let parameter = read(&fixture("globals/parameter_with_state.pt")).unwrap();
    assert_eq!(parameter["weight"].as_tensor().unwrap().shape(), &[3]);
    let tensor = read(&fixture("globals/tensor_with_state.pt")).unwrap();
    assert_eq!(tensor["t"].as_tensor().unwrap().shape(), &[2]);
}

#[test]
fn what_pytorch_refuses_or_ckpt_cannot_hold_is_an_error_saying_what() {
    // `b''` pickles as `builtins.bytes()`, which PyTorch's own loader refuses.
    let err = read(&fixture("globals/bytes_empty.pt")).unwrap_err();
    assert!(
        matches!(err.kind(), PtErrorKind::UnsupportedGlobal { name } if name == "builtins.bytes"),
        "{err}"
    );
    let err = read(&fixture("globals/meta_tensor.pt")).unwrap_err();
    assert!(
        err.to_string().contains("a tensor on the meta device"),
        "{err}"
    );
    let err = read(&fixture("globals/sparse_coo.pt")).unwrap_err();
    assert!(
        err.to_string().contains("sparse tensors is not supported")
            || err.to_string().contains("a sparse tensor"),
        "{err}"
    );
}

/// Pickles against the rules PyTorch's unpickler enforces, each refused as it refuses them.
#[test]
fn the_rules_of_pytorchs_unpickler_hold() {
    let cases: [(&[u8], &str); 9] = [
        // set(list) of a list: Python cannot hash a list.
        (
            b"\x80\x02c__builtin__\nset\n]]a\x85R.",
            "a set item that is a list, which Python cannot hash",
        ),
        // bytearray(n) would allocate n bytes.
        (
            b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x7f\x85R.",
            "builtins.bytearray of an int",
        ),
        // U+0100 has no latin1 byte.
        (
            b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00\xc4\x80X\x06\x00\x00\x00latin1\x86R.",
            "has a character beyond latin1",
        ),
        // BUILD on a plain dict: only OrderedDicts (and allow-listed types) may be built.
        (b"\x80\x02}}b.", "BUILD of a dict"),
        // SETITEM on a list.
        (
            b"\x80\x02]K\x01K\x02s.",
            "SETITEM on something that is not a dict",
        ),
        // APPEND to a dict.
        (
            b"\x80\x02}K\x01a.",
            "APPEND to something that is not a list",
        ),
        // NEWOBJ of anything but nn.Parameter.
        (
            b"\x80\x02ccollections\nOrderedDict\n)\x81.",
            "ckpt creates only nn.Parameter objects",
        ),
        // Protocol 4's strings.
        (
            b"\x80\x04\x8c\x01a.",
            "unsupported pickle opcode 0x8c (SHORT_BINUNICODE)",
        ),
        // A SHORT_BINSTRING that is not UTF-8, torch.load's encoding.
        (b"\x80\x02U\x01\xff.", "string is not valid UTF-8"),
    ];
    for (pickle, expected) in cases {
        let err = read(&archive_of(pickle)).unwrap_err();
        assert!(err.to_string().contains(expected), "{pickle:?}: {err}");
    }
    // Duplicates of a set's items are one item, as `set([1, 1.0, True])` is `{1}`.
    let set = read(&archive_of(
        b"\x80\x02c__builtin__\nset\n](K\x01G?\xf0\x00\x00\x00\x00\x00\x00\x88K\x02e\x85R.",
    ))
    .unwrap();
    assert_eq!(set, Value::Set(vec![Value::Int(1), Value::Int(2)]));
    // SETITEMS on a Counter, and nn.Parameter by NEWOBJ, are allowed.
    let counter = read(&archive_of(
        b"\x80\x02ccollections\nCounter\n}\x85R(K\x07K\x02u.",
    ))
    .unwrap();
    assert_eq!(counter, Value::Counter(int_map(&[(7, 2)])));
}

#[test]
fn nn_parameter_by_newobj_is_its_tensor() {
    let mut pickle = tensor_pickle(2, 0, &[2], &[1]);
    // `{"w": Parameter(rebuilt)}`: the class and its args tuple around the rebuilt tensor.
    let at = pickle.iter().position(|&b| b == b'c').unwrap();
    pickle.splice(at..at, b"ctorch.nn.parameter\nParameter\n".iter().copied());
    let end = pickle.len() - 2; // before SETITEMS and STOP
    pickle.splice(end..end, [0x85, 0x81]);
    let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let value = read(&zip_of(&[("a/data.pkl", &pickle), ("a/data/0", &data)])).unwrap();
    assert_eq!(
        value["w"].as_tensor().unwrap().to_f64_vec().unwrap(),
        [1.0, 2.0]
    );
}

#[test]
fn every_new_kind_of_value_survives_a_round_trip_through_pt() {
    for name in [
        "counter",
        "set",
        "complex",
        "bytes",
        "bytearray",
        "dtype_objects",
    ] {
        let value = read(&fixture(&format!("globals/{name}.pt"))).unwrap();
        let mut out = Cursor::new(Vec::new());
        write(&value, &mut out).unwrap();
        assert_eq!(read(&out.into_inner()).unwrap(), value, "{name}");
    }
    // ckpt's own format holds them too, as the same values.
    for name in [
        "counter",
        "set",
        "complex",
        "bytes",
        "bytearray",
        "dtype_objects",
    ] {
        use ckpt::format::Format;
        let value = read(&fixture(&format!("globals/{name}.pt"))).unwrap();
        let mut out = Cursor::new(Vec::new());
        ckpt::format::Native.write(&value, &mut out).unwrap();
        let back = ckpt::Checkpoint::from_bytes(out.into_inner(), &ckpt::LoadOptions::new())
            .unwrap()
            .into_value();
        assert_eq!(back, value, "{name} in ckpt's format");
    }
    // `b''` too, which ckpt writes as `_codecs.encode('', 'latin1')` so that PyTorch reads it.
    let empty = ckpt::dict! { "b" => Value::Bytes(vec![]) };
    let mut out = Cursor::new(Vec::new());
    write(&empty, &mut out).unwrap();
    assert_eq!(read(&out.into_inner()).unwrap(), empty);
}

/// A set's items are compared part by part, and every part is charged to the file's memory
/// budget: a tuple of 10 000 references to one tuple of 10 000 ints is 10^8 parts to compare
/// in 60 kB of pickle, refused quickly rather than compared.
#[test]
fn comparing_a_sets_items_cannot_multiply_the_file() {
    let mut p = b"\x80\x02c__builtin__\nset\n((".to_vec();
    for i in 0..10_000u32 {
        p.push(b'M');
        p.extend_from_slice(&(i as u16).to_le_bytes());
    }
    p.extend_from_slice(b"tq\x00");
    for _ in 1..10_000 {
        p.extend_from_slice(b"h\x00");
    }
    p.extend_from_slice(b"t\x85\x85R.");
    let start = std::time::Instant::now();
    let err = read(&archive_of(&p)).unwrap_err();
    assert!(
        err.to_string()
            .contains("comparing a set's items would take more"),
        "{err}"
    );
    assert!(start.elapsed().as_secs() < 5);
}

/// `_rebuild_tensor_v2`'s 7th argument is real: `x.conj().imag` is saved as the raw imaginary
/// parts with `{'neg': True}`, and its values are their negations ([-2, 4], not [2, -4]).
#[test]
fn a_neg_bit_tensor_reads_its_logical_values() {
    let value = read(&fixture("globals/neg_bit.pt")).unwrap();
    assert_eq!(
        value["neg"].as_tensor().unwrap().to_f64_vec().unwrap(),
        [-2.0, 4.0]
    );
    assert_matches_manifest(&value, "globals/neg_bit.pt.manifest.json");
    // Written back, the values are plain: PyTorch reads the same numbers without the bit.
    let mut out = Cursor::new(Vec::new());
    write(&value, &mut out).unwrap();
    assert_eq!(read(&out.into_inner()).unwrap(), value);
}

/// `{"w": rebuilt, "n": rebuilt with metadata}` over one storage of `data`.
fn with_metadata(dtype_storage: &str, metadata: &[u8], data: &[u8], numel: u8) -> Vec<u8> {
    let rebuild = |key: &str, metadata: &[u8]| {
        let mut p = format!("X\x01\x00\x00\x00{key}").into_bytes();
        p.extend_from_slice(
            b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n",
        );
        p.extend_from_slice(dtype_storage.as_bytes());
        p.extend_from_slice(b"\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK");
        p.push(numel);
        p.extend_from_slice(b"tQK\x00(K");
        p.push(numel);
        p.extend_from_slice(b"t(K\x01t\x89ccollections\nOrderedDict\n)R");
        p.extend_from_slice(metadata);
        p.extend_from_slice(b"tR");
        p
    };
    let mut pickle = b"\x80\x02}(".to_vec();
    pickle.extend(rebuild("w", b""));
    pickle.extend(rebuild("n", metadata));
    pickle.extend_from_slice(b"u.");
    zip_of(&[("a/data.pkl", &pickle), ("a/data/0", data)])
}

#[test]
fn neg_bits_negate_every_dtype_as_pytorch_does_and_conj_bits_need_complex() {
    let neg = b"}X\x03\x00\x00\x00neg\x88s";
    // Integers wrap, as `-x` does in PyTorch; the plain view of the same storage stays plain.
    let data: Vec<u8> = [5i64, i64::MIN]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let value = read(&with_metadata("LongStorage", neg, &data, 2)).unwrap();
    assert_eq!(
        value["n"].as_tensor().unwrap().to_tensor().unwrap(),
        ckpt::Tensor::from(ndarray::array![-5i64, i64::MIN])
    );
    assert_eq!(
        value["w"].as_tensor().unwrap().to_tensor().unwrap(),
        ckpt::Tensor::from(ndarray::array![5i64, i64::MIN])
    );
    // Floats flip their sign bit: zeros and NaNs too.
    let data: Vec<u8> = [0.0f32, f32::NAN]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let value = read(&with_metadata("FloatStorage", neg, &data, 2)).unwrap();
    let bits: Vec<u32> = value["n"]
        .as_tensor()
        .unwrap()
        .to_le_bytes()
        .unwrap()
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(bits, [0x8000_0000, f32::NAN.to_bits() ^ 0x8000_0000]);
    // Any other key is ignored, as PyTorch ignores it; a conj bit on real numbers is an error
    // (PyTorch's own load fails an internal assertion).
    let other = b"}X\x03\x00\x00\x00fooK\x01s";
    let value = read(&with_metadata("FloatStorage", other, &data, 2)).unwrap();
    assert_eq!(value["n"].as_tensor().unwrap().to_le_bytes().unwrap(), data);
    let conj = b"}X\x04\x00\x00\x00conj\x88s";
    let err = read(&with_metadata("FloatStorage", conj, &data, 2)).unwrap_err();
    assert!(err.to_string().contains("conj bit"), "{err}");
}
