//! Reading `.pt` files: PyTorch's own files match their manifests, and hostile or damaged files
//! are refused with errors that say what and where.

use std::time::Instant;

use crate::common::pytorch::*;
use ckpt::Value;
use ckpt::format::pytorch::PtErrorKind;

const FIXTURES: [&str; 8] = [
    "mlp_state_dict.pt",
    "cnn_bn_state_dict.pt",
    "checkpoint_adam.pt",
    "gan_checkpoint.pt",
    "dataparallel_state_dict.pt",
    "dtypes.pt",
    "views.pt",
    "mlp_legacy_format.pt",
];

#[test]
fn every_fixture_matches_its_manifest() {
    for name in FIXTURES {
        let value = read_file(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_matches_manifest(&value, &format!("{name}.manifest.json"));
    }
}

#[test]
fn legacy_and_zip_formats_load_the_same_layout() {
    let zip = read(&fixture("mlp_state_dict.pt")).unwrap();
    let legacy = read(&fixture("mlp_legacy_format.pt")).unwrap();
    let layout = |v: &Value<'_>| -> Vec<(String, Vec<usize>)> {
        v.tensors()
            .into_iter()
            .map(|(k, t)| (k, t.shape().to_vec()))
            .collect()
    };
    assert_eq!(layout(&zip), layout(&legacy));
    assert_eq!(layout(&zip).len(), 4);
}

/// A bare pickle as the `data.pkl` of an archive.
fn archive_of(pickle: &[u8]) -> Vec<u8> {
    zip_of(&[("a/data.pkl", pickle)])
}

#[test]
fn checkpoints_keep_types_order_and_integer_keys() {
    let v = read(&fixture("checkpoint_adam.pt")).unwrap();
    let keys: Vec<String> = v.as_map().unwrap().keys().map(|k| k.to_string()).collect();
    assert_eq!(
        keys,
        ["epoch", "model_state_dict", "optimizer_state_dict", "loss"]
    );
    assert_eq!(v["epoch"], Value::Int(7));
    assert_eq!(v["loss"], Value::Float(0.125));
    let opt = &v["optimizer_state_dict"];
    assert!(matches!(
        opt["state"].as_map().unwrap().keys().next(),
        Some(ckpt::value::Key::Int(0))
    ));
    assert_eq!(
        opt["state"][0]["step"].as_tensor().unwrap().shape(),
        &[] as &[usize]
    );
    let group = &opt["param_groups"][0];
    assert_eq!(
        group["betas"],
        Value::List(vec![Value::Float(0.9), Value::Float(0.999)])
    );
    assert_eq!(group["foreach"], Value::None);
    assert_eq!(group["amsgrad"], Value::Bool(false));
}

#[test]
fn views_come_out_with_the_right_values_and_tied_tensors_share() {
    let data = fixture("views.pt");
    // PyTorch ends its archives with zip64 records, so every fixture exercises them.
    assert!(data.windows(4).any(|w| w == b"PK\x06\x06"));
    let v = read(&data).unwrap();
    let get = |k: &str| v[k].as_tensor().unwrap();
    let tied_a = get("tied_a");
    assert!(tied_a.shares_storage(&get("tied_b")));
    assert!(!tied_a.shares_storage(&get("transposed")));
    // tied_a is the whole storage of 24 floats, 4 rows of 6.
    let storage = tied_a.to_f64_vec().unwrap();
    assert_eq!(storage.len(), 24);
    let transposed = get("transposed");
    assert_eq!(transposed.shape(), &[6, 4]);
    assert!(transposed.is_contiguous());
    let t = transposed.to_f64_vec().unwrap();
    for i in 0..6 {
        for j in 0..4 {
            assert_eq!(t[i * 4 + j], storage[j * 6 + i]);
        }
    }
    assert_eq!(get("row_slice").to_f64_vec().unwrap(), storage[6..18]);
    let col: Vec<f64> = (0..4).map(|r| storage[r * 6 + 2]).collect();
    assert_eq!(get("col_slice").to_f64_vec().unwrap(), col);
}

#[test]
fn dtypes_all_load() {
    let v = read(&fixture("dtypes.pt")).unwrap();
    for (key, dtype) in [
        ("f64", "F64"),
        ("f16", "F16"),
        ("bf16", "BF16"),
        ("i64", "I64"),
        ("i32", "I32"),
        ("i8", "I8"),
        ("u8", "U8"),
        ("bool", "BOOL"),
    ] {
        assert_eq!(v[key].as_tensor().unwrap().dtype().as_str(), dtype);
    }
    assert_eq!(v["empty"].as_tensor().unwrap().shape(), &[0, 4]);
}

#[test]
fn os_system_is_refused_by_name_and_never_runs() {
    let marker = std::env::temp_dir().join(format!("ckpt-pwned-{}", std::process::id()));
    let command = format!("touch {}", marker.display());
    let mut pickle = b"\x80\x02cos\nsystem\nX".to_vec();
    pickle.extend_from_slice(&(command.len() as u32).to_le_bytes());
    pickle.extend_from_slice(command.as_bytes());
    pickle.extend_from_slice(b"\x85R.");
    let in_zip = zip_of(&[("archive/data.pkl", &pickle), ("archive/version", b"3\n")]);
    for bytes in [&pickle, &in_zip] {
        let err = read(bytes).unwrap_err();
        assert!(
            matches!(err.kind(), PtErrorKind::UnsupportedGlobal { name } if name == "os.system"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("GLOBAL os.system was not an allowed global")
        );
    }
    // Protocol 4 spells it with STACK_GLOBAL, and the module as posix on Linux: refused at
    // its first string, as PyTorch's weights_only unpickler refuses it.
    let stack = b"\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x02ls\x85R.";
    let err = read(stack).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            PtErrorKind::UnsupportedOpcode { opcode: 0x8c, .. }
        ),
        "{err}"
    );
    let eval = b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.";
    assert!(
        read(eval)
            .unwrap_err()
            .to_string()
            .contains("builtins.eval")
    );
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn whole_pickled_models_are_refused_with_a_hint() {
    for (name, global) in [
        (
            "hostile/whole_model_linear.pt",
            "torch.nn.modules.linear.Linear",
        ),
        ("hostile/whole_model_main.pt", "__main__.Net"),
    ] {
        let err = read_file(fixture_path(name)).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("GLOBAL {global} was not")),
            "{message}"
        );
        assert!(
            message.contains("save model.state_dict() instead"),
            "{message}"
        );
        assert!(message.contains(name), "the file is named: {message}");
        assert!(
            message.contains("data.pkl"),
            "the record is named: {message}"
        );
    }
}

#[test]
fn truncated_files_say_so_at_every_cut() {
    for name in ["views.pt", "mlp_legacy_format.pt", "dtypes.pt"] {
        let data = fixture(name);
        for cut in 0..data.len() {
            let err = read(&data[..cut])
                .err()
                .unwrap_or_else(|| panic!("{name} cut at {cut} loaded"));
            assert!(
                err.to_string().contains("truncated or incomplete file"),
                "{name} cut at {cut}: {err}"
            );
            assert!(err.is_truncated());
        }
    }
}

#[test]
fn a_flipped_storage_bit_is_a_crc_error_naming_the_record_and_its_tensor() {
    let mut data = fixture("mlp_state_dict.pt");
    let at = record_offset(&data, "mlp_state_dict/data/0") + 5;
    data[at] ^= 0x10;
    let err = read(&data).unwrap_err();
    assert!(matches!(err.kind(), PtErrorKind::Crc { .. }), "{err}");
    assert_eq!(err.entry(), Some("mlp_state_dict/data/0"));
    assert_eq!(err.tensor_keys(), ["0.weight"]);
    assert!(
        err.to_string()
            .starts_with("mlp_state_dict/data/0 (storage of `0.weight`): CRC-32 mismatch"),
        "{err}"
    );
    // So do `ckpt::load` and `load_from`, on a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.pt");
    std::fs::write(&path, &data).unwrap();
    let err = ckpt::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("mlp_state_dict/data/0 (storage of `0.weight`): CRC-32"),
        "{err}"
    );
    let mut model = read(&fixture("mlp_state_dict.pt"))
        .unwrap()
        .tensors()
        .into_iter()
        .map(|(key, t)| (key, t.to_tensor().unwrap()))
        .collect::<indexmap::IndexMap<String, ckpt::Tensor>>();
    let err = ckpt::LoadFrom::load_from(&mut model, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("(storage of `0.weight`): CRC-32"), "{err}");
    // Trusted files can skip the check, and then the damage goes through, as in PyTorch.
    let v = read_with(&data, false).unwrap();
    let good = read(&fixture("mlp_state_dict.pt")).unwrap();
    assert_ne!(v["0.weight"], good["0.weight"]);
    assert_eq!(v["0.bias"], good["0.bias"]);
}

#[test]
fn lying_storage_lengths_are_refused() {
    // The pickle says 24 floats; the record holds 23.
    let pickle = tensor_pickle(24, 0, &[24], &[1]);
    let data = zip_of(&[("a/data.pkl", &pickle), ("a/data/0", &[0u8; 92])]);
    let err = read(&data).unwrap_err();
    assert!(
        matches!(err.kind(), PtErrorKind::StorageLength { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "a/data/0: storage 0 of 24 F32 elements needs 96 bytes, the file holds 92"
    );
    // A legacy file whose element count disagrees with its pickle.
    let mut legacy = fixture("mlp_legacy_format.pt");
    // The first storage follows the key list (`APPENDS`, `STOP`) and holds 4 floats.
    let at = legacy
        .windows(10)
        .position(|w| w == b"e.\x04\0\0\0\0\0\0\0")
        .unwrap()
        + 2;
    legacy[at] = 5;
    let err = read(&legacy).unwrap_err();
    assert!(
        err.to_string()
            .contains("the file gives 5 elements, the pickle 4"),
        "{err}"
    );
}

#[test]
fn views_past_their_storage_are_refused() {
    for (shape, stride, offset) in [(&[4u8][..], &[1u8][..], 2u8), (&[2, 3], &[3, 2], 0)] {
        let pickle = tensor_pickle(5, offset, shape, stride);
        let data = zip_of(&[("a/data.pkl", &pickle), ("a/data/0", &[0u8; 20])]);
        let err = read(&data).unwrap_err();
        assert!(matches!(err.kind(), PtErrorKind::Tensor { .. }), "{err}");
        assert_eq!(err.key(), Some("w"));
        assert!(
            err.to_string()
                .starts_with("a/data.pkl: at key \"w\": invalid tensor on storage 0: "),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("past the end of its storage of 5 elements"),
            "{err}"
        );
    }
    // The same view inside the storage reads fine.
    let pickle = tensor_pickle(6, 2, &[4], &[1]);
    let mut storage = Vec::new();
    for x in 0..6 {
        storage.extend_from_slice(&(x as f32).to_le_bytes());
    }
    let data = zip_of(&[("a/data.pkl", &pickle), ("a/data/0", &storage)]);
    let v = read(&data).unwrap();
    assert_eq!(
        v["w"].as_tensor().unwrap().to_f64_vec().unwrap(),
        [2.0, 3.0, 4.0, 5.0]
    );
}

#[test]
fn absurd_nesting_and_self_reference_are_refused() {
    let depth = 100_000;
    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b']', depth));
    deep.extend(std::iter::repeat_n(b'a', depth - 1));
    deep.push(b'.');
    let err = read(&archive_of(&deep)).unwrap_err();
    assert!(matches!(err.kind(), PtErrorKind::Limit { .. }), "{err}");
    // A list that contains itself.
    let cycle = b"\x80\x02]q\x00h\x00a.";
    let err = read(&archive_of(cycle)).unwrap_err();
    assert!(err.to_string().contains("nesting deeper than"), "{err}");
    // A billion laughs: each list holds the previous one twice.
    let mut laughs = b"\x80\x02]q\x00".to_vec();
    for i in 0..60u8 {
        laughs.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
    }
    laughs.push(b'.');
    let err = read(&archive_of(&laughs)).unwrap_err();
    assert!(matches!(err.kind(), PtErrorKind::Limit { .. }), "{err}");
}

#[test]
fn other_refusals_are_precise() {
    let files: [(&[u8], &str); 4] = [
        (
            b"",
            "truncated or incomplete file: the file has only 0 bytes",
        ),
        (b"PK\x03", "truncated or incomplete file"),
        (
            b"hello world",
            "not a PyTorch file: starts with [68, 65, 6c, 6c]",
        ),
        (
            b"\x80\x02K\x07.",
            "not a PyTorch file: a pickle without PyTorch's magic number",
        ),
    ];
    for (bytes, expected) in files {
        let err = read(bytes).unwrap_err();
        assert!(err.to_string().contains(expected), "{bytes:?}: {err}");
    }
    let pickles: [(&[u8], &str); 6] = [
        (
            b"\x80\x02ctorch\nUntypedStorage\n.",
            "a/data.pkl: Unsupported global: GLOBAL torch.UntypedStorage was not an allowed",
        ),
        (
            b"\x80\x02\x93.",
            "a/data.pkl: unsupported pickle opcode 0x93 (STACK_GLOBAL) at byte 2",
        ),
        (
            b"\x80\x02X\xff\xff\xff\x7fab.",
            "a/data.pkl: truncated or incomplete file",
        ),
        (
            b"\x80\x02h\x07.",
            "a/data.pkl: invalid pickle at byte 2: memo key 7 was never stored",
        ),
        (
            b"\x80\x02}(K\x01u.",
            "a/data.pkl: invalid pickle at byte 6: odd number of items",
        ),
        (
            b"\x80\x02}K\x01K\x02u.",
            "a/data.pkl: invalid pickle at byte 7: no MARK on the stack",
        ),
    ];
    for (pickle, expected) in pickles {
        let err = read(&archive_of(pickle)).unwrap_err();
        assert!(err.to_string().starts_with(expected), "{pickle:?}: {err}");
    }
}

/// A deterministic generator, so that failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Every truncation and every bit flip of a small fixture, then random mutations of all of
/// them: none may panic. `CKPT_MUTATIONS` sets how many random mutations (default 20 000).
#[test]
fn no_input_panics() {
    let small = fixture("views.pt");
    let mut runs = 0u64;
    let start = Instant::now();
    for cut in 0..small.len() {
        let _ = read(&small[..cut]);
        runs += 1;
    }
    let mut flipped = small.clone();
    for i in 0..flipped.len() {
        for bit in 0..8 {
            flipped[i] ^= 1 << bit;
            let _ = read(&flipped);
            let _ = read_with(&flipped, false);
            flipped[i] ^= 1 << bit;
            runs += 2;
        }
    }
    let seeds: Vec<Vec<u8>> = FIXTURES.iter().map(|n| fixture(n)).collect();
    let count: u64 = std::env::var("CKPT_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..count {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(data.len());
            match rng.below(5) {
                0 => data.truncate(at),
                1 => {
                    let last = data.len() - 1;
                    data[at.min(last)] ^= 1 << rng.below(8);
                }
                2 => data.insert(at, rng.next() as u8),
                3 => {
                    let other = &seeds[rng.below(seeds.len())];
                    let from = rng.below(other.len());
                    let len = rng.below(64).min(other.len() - from);
                    data.splice(at..at, other[from..from + len].iter().copied());
                }
                _ => {
                    // Interesting integers where lengths and counts live.
                    let v = [0u8, 0x7f, 0x80, 0xff][rng.below(4)];
                    let end = (at + 4).min(data.len());
                    data[at..end].fill(v);
                }
            }
            if data.is_empty() {
                break;
            }
        }
        let _ = read_with(&data, false);
        runs += 1;
    }
    eprintln!("no_input_panics: {runs} reads in {:.1?}", start.elapsed());
}

/// PyTorch's `weights_only` unpickler implements protocol 2's opcodes only: a file saved with
/// `pickle_protocol=4` fails in `torch.load(weights_only=True)` at its first FRAME
/// ("Unsupported operand 149"), and ckpt refuses it at the same opcode.
#[test]
fn pickle_protocol_4_is_refused_as_pytorch_refuses_it() {
    let p2 = read(&fixture("extra/protocol2.pt")).unwrap();
    assert_eq!(p2.tensors().len(), 4);
    let err = read(&fixture("extra/protocol4.pt")).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            PtErrorKind::UnsupportedOpcode {
                opcode: 0x95,
                name: "FRAME",
                offset: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn parameters_sizes_and_devices_load_as_data() {
    let v = read(&fixture("extra/parameters.pt")).unwrap();
    let weight = v["weight"].as_tensor().unwrap();
    assert_eq!(weight.shape(), &[2, 3]);
    assert_eq!(weight.to_f64_vec().unwrap(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(
        v["frozen"].as_tensor().unwrap().to_f64_vec().unwrap(),
        [1.0, 1.0]
    );
    assert_eq!(v["size"], Value::List(vec![Value::Int(2), Value::Int(3)]));
    assert_eq!(v["device"], Value::String("cpu".into()));
}

#[test]
fn big_endian_files_are_byte_swapped() {
    let little = fixture("views.pt");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&little)).unwrap();
    let mut records = Vec::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut data).unwrap();
        let name = file.name().unwrap().into_owned();
        if name.ends_with("/byteorder") {
            data = b"big".to_vec();
        } else if name.contains("/data/") {
            data.chunks_exact_mut(4).for_each(<[u8]>::reverse);
        }
        records.push((name, data));
    }
    let records: Vec<(&str, &[u8])> = records
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let big = read(&zip_of(&records)).unwrap();
    assert_eq!(big, read(&little).unwrap());
    let bogus: Vec<(&str, &[u8])> = records
        .iter()
        .map(|&(n, d)| {
            if n.ends_with("/byteorder") {
                (n, &b"middle"[..])
            } else {
                (n, d)
            }
        })
        .collect();
    let err = read(&zip_of(&bogus)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "views/byteorder: unknown byte order \"middle\": expected \"little\" or \"big\""
    );
}

#[test]
fn objects_fetched_again_from_the_memo_cannot_multiply_the_file() {
    // A 100 kB string referenced 20 000 times would be 2 GB of strings.
    let mut p = b"\x80\x02X".to_vec();
    p.extend_from_slice(&100_000u32.to_le_bytes());
    p.extend(std::iter::repeat_n(b'x', 100_000));
    p.extend_from_slice(b"q\x00(");
    for _ in 0..20_000 {
        p.extend_from_slice(b"h\x00");
    }
    p.extend_from_slice(b"t.");
    let start = Instant::now();
    let err = read(&archive_of(&p)).unwrap_err();
    assert!(
        err.to_string()
            .contains("of memory a file of this size may (6 × its size + 48 MiB)"),
        "{err}"
    );
    assert!(start.elapsed().as_secs() < 5);
    // No allowed callable takes more than 8 arguments, nor a tensor more than 64 dimensions.
    let err = read(&archive_of(
        b"\x80\x02ccollections\nOrderedDict\n(NNNNNNNNNtR.",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("REDUCE with 9 arguments"), "{err}");
    let pickle = tensor_pickle(1, 0, &[1; 65], &[1; 65]);
    let err = read(&zip_of(&[("a/data.pkl", &pickle), ("a/data/0", &[0; 4])])).unwrap_err();
    assert!(
        err.to_string()
            .contains("tensor size has 65 dimensions (at most 64)"),
        "{err}"
    );
}
