//! Hostile checkpoint files, generated in memory (issue 12): no committed binaries.
//!
//! Self-contained on purpose: it uses std and `xxhash-rust` (feature `xxh3`) only, and none
//! of ckpt's API, so it survives refactors of the crate. Every container is hand-built here
//! (CBOR, zip with CRC-32, pickle opcodes, safetensors JSON) so that each file is valid in
//! every respect but the one under test: checksums, CRCs, offsets and lengths are right, and
//! the reader reaches the code the case is aimed at. Each class has a `control` case (a
//! valid file holding `weight: F32 [2, 2]` and `bias: F32 [2]`) proving the generators right.
//!
//! Use: `cases(scale)` for scale = 1, 2, 4, 8, ...; inputs of the growing classes grow
//! linearly with `scale` (so a harness sees time and memory per size step); fixed-size cases
//! are returned only for `scale == 1`. Write `Case::bytes` to `dir/Case::file_name` and each
//! of `Case::siblings` next to it, then run the path through `load`, `inspect`, `load_from`
//! and a strict `load_state_dict`. `special_paths` gives the inputs that are paths, not bytes
//! (endless and non-regular files). Each case says what a correct reader does (`Expect`) and
//! `memory_bound` gives the target bound on peak memory.
//!
//! Used by `tests/hostile`, `benches/hostile` and the fuzz targets (`fuzz/src/lib.rs`).

use std::path::{Path, PathBuf};

/// One hostile input.
#[derive(Clone, Debug)]
pub struct Case {
    /// The class: `zero-dim`, `eocd-flood`, `pickle-memory`, `ckpt-memory`, ...
    pub class: &'static str,
    /// `ckpt`, `safetensors`, `sharded`, `pt-zip`, `pt-legacy` or `dcp`.
    pub format: &'static str,
    /// What is special about this input, unique within a class and format.
    pub name: String,
    /// The file to write `bytes` to, with the extension its format uses; the path to load.
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// Files that must sit next to `file_name` (the shards of a sharded index).
    pub siblings: Vec<(String, Vec<u8>)>,
    /// The scale it was generated at (1 for the fixed-size cases).
    pub scale: usize,
    /// What a correct reader does with it.
    pub expect: Expect,
}

impl Case {
    /// Bytes of the input, siblings included.
    pub fn total_len(&self) -> usize {
        self.bytes.len() + self.siblings.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Writes the case into `dir` (created if needed); returns the path to load.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        for (name, bytes) in &self.siblings {
            std::fs::write(dir.join(name), bytes)?;
        }
        let path = dir.join(&self.file_name);
        std::fs::write(&path, &self.bytes)?;
        Ok(path)
    }
}

/// What a correct reader does with a case (with any entry point; `load_state_dict` into a
/// model whose keys differ is an error regardless).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Loads; the tensors are `weight: F32 [2, 2]` = 0, 1, 2, 3 and `bias: F32 [2]` = 4, 5.
    Valid,
    /// A typed error (never a panic); the message contains this text, if any.
    Error(Option<&'static str>),
    /// Loads, or a typed error (a limit); either way within `memory_bound` and in time
    /// linear in the input.
    Bounded,
}

/// The target: peak memory at most 8 × the input plus 64 MiB, whatever the input.
pub fn memory_bound(input_len: usize) -> usize {
    input_len.saturating_mul(8).saturating_add(64 << 20)
}

/// Every case at `scale`: the growing classes at that scale, plus the fixed-size ones when
/// `scale == 1`.
pub fn cases(scale: usize) -> Vec<Case> {
    let mut out = if scale == 1 {
        fixed_cases()
    } else {
        Vec::new()
    };
    out.extend(growing_cases(scale));
    out
}

/// The cases whose size does not depend on a scale: controls, shapes, truncations, duplicates.
pub fn fixed_cases() -> Vec<Case> {
    let mut out = control_cases();
    out.extend(zero_dim_cases());
    out.extend(truncated_safetensors_cases());
    out.extend(duplicate_zip_cases());
    out.extend(dcp_cases());
    out
}

/// The cases whose input grows linearly with `scale` (1, 2, 4, 8, ...).
pub fn growing_cases(scale: usize) -> Vec<Case> {
    assert!(scale >= 1);
    let mut out = Vec::new();
    out.extend(eocd_flood_cases(scale));
    out.extend(pickle_memory_cases(scale));
    out.extend(ckpt_memory_cases(scale));
    out.extend(safetensors_memory_cases(scale));
    out.extend(did_you_mean_cases(scale));
    out.extend(dcp_memory_cases(scale));
    out
}

// ---------------------------------------------------------------------------------------------
// Shapes with a zero dimension beside huge ones.

/// A shape whose element count is zero (or overflows) although its other dimensions are huge.
#[derive(Clone, Debug)]
pub struct HostileShape {
    pub label: &'static str,
    /// safetensors' dtype name: `F32`, `U8`.
    pub dtype: &'static str,
    pub shape: Vec<u64>,
    /// The same for pickles, whose integers are `i64`: 2^63 becomes [2^62, 2].
    pub pickle_shape: Vec<i64>,
}

/// The shapes of class 1. The first three hide, behind the zero, a product of the non-zero
/// dimensions beyond `isize::MAX` that ndarray refuses; the last two overflow visibly (an
/// item size of 4 times 2^62 overflows before the zero is reached; 2^93 elements).
pub fn zero_dim_shapes() -> Vec<HostileShape> {
    let p = |e: u32| 1u64 << e;
    vec![
        HostileShape {
            label: "[0,2^40,2^40] F32",
            dtype: "F32",
            shape: vec![0, p(40), p(40)],
            pickle_shape: vec![0, 1 << 40, 1 << 40],
        },
        HostileShape {
            label: "[0,2^63] F32 (pickle: [0,2^62,2])",
            dtype: "F32",
            shape: vec![0, p(63)],
            pickle_shape: vec![0, 1 << 62, 2],
        },
        HostileShape {
            label: "[2^62,0,4] U8",
            dtype: "U8",
            shape: vec![p(62), 0, 4],
            pickle_shape: vec![1 << 62, 0, 4],
        },
        HostileShape {
            label: "[2^62,0,4] F32",
            dtype: "F32",
            shape: vec![p(62), 0, 4],
            pickle_shape: vec![1 << 62, 0, 4],
        },
        HostileShape {
            label: "[2^31,2^31,2^31] F32",
            dtype: "F32",
            shape: vec![p(31), p(31), p(31)],
            pickle_shape: vec![1 << 31, 1 << 31, 1 << 31],
        },
    ]
}

fn zero_dim_cases() -> Vec<Case> {
    let mut out = Vec::new();
    let expect = Expect::Error(None);
    for s in zero_dim_shapes() {
        let t = |name: &'static str| TensorSpec {
            key: name.to_owned(),
            dtype: s.dtype,
            shape: s.shape.clone(),
            pickle_shape: s.pickle_shape.clone(),
            data: Vec::new(),
        };
        let tensors = [t("weight")];
        let name = s.label.to_owned();
        out.push(case(
            "zero-dim",
            "ckpt",
            &name,
            "t.ckpt",
            ckpt_state_dict(&tensors),
            1,
            expect,
        ));
        out.push(case(
            "zero-dim",
            "safetensors",
            &name,
            "t.safetensors",
            safetensors(&tensors, true),
            1,
            expect,
        ));
        out.push(case(
            "zero-dim",
            "pt-zip",
            &name,
            "t.pt",
            pt_zip_state_dict(&tensors),
            1,
            expect,
        ));
        out.push(case(
            "zero-dim",
            "pt-legacy",
            &name,
            "t.pt",
            pt_legacy_state_dict(&tensors),
            1,
            expect,
        ));
        let (index, shards) = sharded(&tensors);
        let mut c = case("zero-dim", "sharded", &name, INDEX_NAME, index, 1, expect);
        c.siblings = shards;
        out.push(c);
    }
    // The data of a safetensors file starting at an odd offset: a copy instead of a map, so
    // another code path (`Tensor::from_le_bytes`) meets the same shape.
    let s = &zero_dim_shapes()[0];
    let tensors = [TensorSpec {
        key: "weight".to_owned(),
        dtype: s.dtype,
        shape: s.shape.clone(),
        pickle_shape: s.pickle_shape.clone(),
        data: Vec::new(),
    }];
    out.push(case(
        "zero-dim",
        "safetensors",
        &format!("{} unaligned data", s.label),
        "t.safetensors",
        safetensors(&tensors, false),
        1,
        expect,
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// Controls: valid files, one per format.

/// `weight: F32 [2, 2]` = 0..4 and `bias: F32 [2]` = 4, 5.
pub fn control_tensors() -> Vec<TensorSpec> {
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    vec![
        TensorSpec {
            key: "weight".to_owned(),
            dtype: "F32",
            shape: vec![2, 2],
            pickle_shape: vec![2, 2],
            data: f32s(&[0.0, 1.0, 2.0, 3.0]),
        },
        TensorSpec {
            key: "bias".to_owned(),
            dtype: "F32",
            shape: vec![2],
            pickle_shape: vec![2],
            data: f32s(&[4.0, 5.0]),
        },
    ]
}

fn control_cases() -> Vec<Case> {
    let t = control_tensors();
    let v = Expect::Valid;
    let (index, shards) = sharded(&t);
    let mut sharded_case = case("control", "sharded", "valid", INDEX_NAME, index, 1, v);
    sharded_case.siblings = shards;
    vec![
        case(
            "control",
            "ckpt",
            "valid",
            "t.ckpt",
            ckpt_state_dict(&t),
            1,
            v,
        ),
        case(
            "control",
            "safetensors",
            "valid",
            "t.safetensors",
            safetensors(&t, true),
            1,
            v,
        ),
        sharded_case,
        case(
            "control",
            "pt-zip",
            "valid",
            "t.pt",
            pt_zip_state_dict(&t),
            1,
            v,
        ),
        case(
            "control",
            "pt-legacy",
            "valid",
            "t.pt",
            pt_legacy_state_dict(&t),
            1,
            v,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Zip: many end-of-central-directory records and no central directory.

/// About 360 KB per scale step of 22-byte EOCD records, each claiming one file in a central
/// directory at offset 0 that does not exist: the zip crate searches backwards for every EOCD
/// and, for each, forwards from offset 0 for a central directory header: quadratic.
fn eocd_flood_cases(scale: usize) -> Vec<Case> {
    let records = 16384 * scale;
    let pickle = pickle_body(|p| p.none());
    let mut out = Vec::new();
    // One valid local file header first, so the file starts with `PK\x03\x04`.
    local_header(&mut out, "archive/data.pkl", &pickle, 0);
    out.extend_from_slice(&pickle);
    for _ in 0..records {
        eocd(&mut out, 1, 46 + 16, 0);
    }
    vec![case(
        "eocd-flood",
        "pt-zip",
        &format!("{records} EOCD records, no central directory"),
        "t.pt",
        out,
        scale,
        Expect::Error(None),
    )]
}

// ---------------------------------------------------------------------------------------------
// Pickles that build far more than their size.

fn pickle_memory_cases(scale: usize) -> Vec<Case> {
    let n = (1 << 20) * scale;
    let mut out = Vec::new();
    let b = Expect::Bounded;
    let mut both = |name: String, pickle: Vec<u8>, expect: Expect, legacy: bool| {
        out.push(case(
            "pickle-memory",
            "pt-zip",
            &name,
            "t.pt",
            pt_zip_pickle(&pickle, &[]),
            scale,
            expect,
        ));
        if legacy {
            out.push(case(
                "pickle-memory",
                "pt-legacy",
                &name,
                "t.pt",
                pt_legacy_pickle(&pickle, &[]),
                scale,
                expect,
            ));
        }
    };
    // `[None] * n`: one byte per element in the file.
    both(
        format!("list of {n} None"),
        pickle_body(|p| {
            p.op(op::EMPTY_LIST);
            p.op(op::MARK);
            for _ in 0..n {
                p.none();
            }
            p.op(op::APPENDS);
        }),
        b,
        true,
    );
    // The same list twice, through the memo: `(l, l)`.
    for refs in [2usize, 1000] {
        both(
            format!("list of {n} None, referenced {refs}x from the memo"),
            pickle_body(|p| {
                p.op(op::EMPTY_LIST);
                p.op(op::BINPUT);
                p.0.push(0);
                p.op(op::MARK);
                for _ in 0..n {
                    p.none();
                }
                p.op(op::APPENDS);
                // The list stays below the tuple: STOP takes the top, as PyTorch's does.
                p.op(op::MARK);
                for _ in 0..refs {
                    p.op(op::BINGET);
                    p.0.push(0);
                }
                p.op(op::TUPLE);
            }),
            b,
            refs == 2,
        );
    }
    // `[[[...]]]`, n / 8 deep: two bytes a level.
    let depth = n / 8;
    both(
        format!("list nested {depth} deep"),
        pickle_body(|p| {
            for _ in 0..depth {
                p.op(op::EMPTY_LIST);
            }
            for _ in 1..depth {
                p.op(op::APPEND);
            }
        }),
        Expect::Error(None),
        true,
    );
    // `{i: None for i in range(n / 6)}`: six bytes an entry.
    let entries = n / 6;
    both(
        format!("dict of {entries} int: None"),
        pickle_body(|p| {
            p.op(op::EMPTY_DICT);
            p.op(op::MARK);
            for i in 0..entries {
                p.op(op::BININT);
                p.0.extend_from_slice(&(i as i32).to_le_bytes());
                p.none();
            }
            p.op(op::SETITEMS);
        }),
        b,
        true,
    );
    out
}

// ---------------------------------------------------------------------------------------------
// ckpt headers that decode to far more than their size.

fn ckpt_memory_cases(scale: usize) -> Vec<Case> {
    let n = (1 << 20) * scale;
    let b = Expect::Bounded;
    let mut out = Vec::new();
    // `[None] * n`: five bytes each ("None" as CBOR text).
    let mut h = Cbor::default();
    h.node_list_head(n);
    for _ in 0..n {
        h.node_none();
    }
    out.push(case(
        "ckpt-memory",
        "ckpt",
        &format!("header: list of {n} None"),
        "t.ckpt",
        ckpt_file(&h.0, &[], &[]),
        scale,
        b,
    ));
    // `[[]] * n`, seven bytes each.
    let mut h = Cbor::default();
    h.node_list_head(n);
    for _ in 0..n {
        h.node_list_head(0);
    }
    out.push(case(
        "ckpt-memory",
        "ckpt",
        &format!("header: list of {n} empty lists"),
        "t.ckpt",
        ckpt_file(&h.0, &[], &[]),
        scale,
        b,
    ));
    // `[{}] * n`, six bytes each.
    let mut h = Cbor::default();
    h.node_list_head(n);
    for _ in 0..n {
        h.node_map_head(0);
    }
    out.push(case(
        "ckpt-memory",
        "ckpt",
        &format!("header: list of {n} empty maps"),
        "t.ckpt",
        ckpt_file(&h.0, &[], &[]),
        scale,
        b,
    ));
    // `[[[...]]]`, n / 8 deep: past the recursion limit, a typed error.
    let depth = n / 8;
    let mut h = Cbor::default();
    for _ in 0..depth {
        h.node_list_head(1);
    }
    h.node_none();
    out.push(case(
        "ckpt-memory",
        "ckpt",
        &format!("header: list nested {depth} deep"),
        "t.ckpt",
        ckpt_file(&h.0, &[], &[]),
        scale,
        Expect::Error(None),
    ));
    // n / 64 empty tensors, each with its record.
    let count = n / 64;
    let tensors: Vec<TensorSpec> = (0..count).map(|i| empty_tensor(format!("t{i}"))).collect();
    out.push(case(
        "ckpt-memory",
        "ckpt",
        &format!("{count} empty tensors"),
        "t.ckpt",
        ckpt_state_dict(&tensors),
        scale,
        b,
    ));
    out
}

fn safetensors_memory_cases(scale: usize) -> Vec<Case> {
    let count = (1 << 14) * scale;
    let tensors: Vec<TensorSpec> = (0..count).map(|i| empty_tensor(format!("t{i}"))).collect();
    vec![case(
        "safetensors-memory",
        "safetensors",
        &format!("{count} empty tensors"),
        "t.safetensors",
        safetensors(&tensors, true),
        scale,
        Expect::Bounded,
    )]
}

fn empty_tensor(key: String) -> TensorSpec {
    TensorSpec {
        key,
        dtype: "F32",
        shape: vec![0],
        pickle_shape: vec![0],
        data: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Truncated safetensors files.

fn truncated_safetensors_cases() -> Vec<Case> {
    let full = safetensors(&control_tensors(), true);
    let n = u64::from_le_bytes(full[..8].try_into().unwrap()) as usize;
    let cuts = [
        ("empty", 0),
        ("inside the length", 4),
        ("after the length", 8),
        ("inside the JSON, 1 byte", 9),
        ("inside the JSON", 8 + n / 2),
        ("after the JSON", 8 + n),
        ("inside the data", 8 + n + 12),
        ("last byte missing", full.len() - 1),
    ];
    cuts.iter()
        .map(|&(what, len)| {
            case(
                "truncated",
                "safetensors",
                &format!("cut at {len} of {}: {what}", full.len()),
                "t.safetensors",
                full[..len].to_vec(),
                1,
                Expect::Error(Some("truncated")),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Duplicate entry names in a .pt zip.

fn duplicate_zip_cases() -> Vec<Case> {
    let t = control_tensors();
    let mut other = control_tensors();
    other[0].data = [10.0f32, 11.0, 12.0, 13.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let expect = Expect::Error(None);
    // Two `archive/data.pkl`: the first names storage 0, the second storage 1.
    let (pkl0, keys0) = state_dict_pickle(&t, 0);
    let (pkl1, keys1) = state_dict_pickle(&other, t.len());
    let mut records: Vec<(String, Vec<u8>)> = vec![
        ("archive/data.pkl".into(), pkl0),
        ("archive/data.pkl".into(), pkl1),
        ("archive/byteorder".into(), b"little".to_vec()),
    ];
    for (key, spec) in keys0.iter().zip(&t).chain(keys1.iter().zip(&other)) {
        records.push((format!("archive/data/{key}"), spec.data.clone()));
    }
    records.push(("archive/version".into(), b"3\n".to_vec()));
    let a = case(
        "duplicate-names",
        "pt-zip",
        "two archive/data.pkl",
        "t.pt",
        zip_stored(&records),
        1,
        expect,
    );
    // Two `archive/data/0` with different bytes, both CRCs right.
    let (pkl, keys) = state_dict_pickle(&t, 0);
    let mut records: Vec<(String, Vec<u8>)> = vec![
        ("archive/data.pkl".into(), pkl),
        ("archive/byteorder".into(), b"little".to_vec()),
    ];
    for (key, spec) in keys.iter().zip(&t) {
        records.push((format!("archive/data/{key}"), spec.data.clone()));
    }
    records.push((format!("archive/data/{}", keys[0]), other[0].data.clone()));
    records.push(("archive/version".into(), b"3\n".to_vec()));
    let b = case(
        "duplicate-names",
        "pt-zip",
        "two archive/data/0",
        "t.pt",
        zip_stored(&records),
        1,
        expect,
    );
    // A safetensors header naming `weight` twice, laid end to end: a map would keep one.
    let mut twice = t.clone();
    twice.push(TensorSpec {
        key: "weight".to_owned(),
        ..other[0].clone()
    });
    let c = case(
        "duplicate-names",
        "safetensors",
        "weight named twice",
        "t.safetensors",
        safetensors(&twice, true),
        1,
        Expect::Error(Some("appears twice")),
    );
    vec![a, b, c]
}

// ---------------------------------------------------------------------------------------------
// Many long unexpected keys: 'did you mean' compares every missing key with every unexpected one.

/// Keys per scale step, both in the file and in `did_you_mean_model_keys`.
pub const DID_YOU_MEAN_KEYS: usize = 128;
/// Length of each key.
pub const DID_YOU_MEAN_KEY_LEN: usize = 100;

fn long_key(prefix: &str, i: usize) -> String {
    let mut key = format!("{prefix}.{i:07}.");
    while key.len() < DID_YOU_MEAN_KEY_LEN - ".weight".len() {
        key.push((b'a' + (key.len() % 26) as u8) as char);
    }
    key.push_str(".weight");
    key
}

/// The keys of a model (e.g. a `BTreeMap<String, Tensor>` of `F32 [1]` tensors) for which
/// every key of the `did-you-mean` files is unexpected and every model key is missing: their
/// number and the file's grow together with `scale`, so the pairwise edit distances grow 4×
/// per doubling. Any small fixed model (two keys) sees the same files as thousands of
/// unexpected keys, which costs 2 × n distances.
pub fn did_you_mean_model_keys(scale: usize) -> Vec<String> {
    (0..DID_YOU_MEAN_KEYS * scale)
        .map(|i| long_key("decoder.block", i))
        .collect()
}

fn did_you_mean_cases(scale: usize) -> Vec<Case> {
    let n = DID_YOU_MEAN_KEYS * scale;
    let tensors: Vec<TensorSpec> = (0..n)
        .map(|i| empty_tensor(long_key("encoder.layer", i)))
        .collect();
    let name = format!("{n} unexpected keys of {DID_YOU_MEAN_KEY_LEN} bytes");
    // Loading is fine; a strict load into any model without these keys is a typed error,
    // which must come in time linear in the keys' bytes.
    let e = Expect::Bounded;
    vec![
        case(
            "did-you-mean",
            "ckpt",
            &name,
            "t.ckpt",
            ckpt_state_dict(&tensors),
            scale,
            e,
        ),
        case(
            "did-you-mean",
            "safetensors",
            &name,
            "t.safetensors",
            safetensors(&tensors, true),
            scale,
            e,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Paths rather than bytes: endless and non-regular files.

/// A path that is not a regular file of bytes, or leads to one.
#[derive(Debug)]
pub struct Special {
    /// What it is, for messages.
    pub what: &'static str,
    /// The path to load.
    pub path: PathBuf,
    /// The path a correct error names: `path` itself, or the shard behind an index.
    pub culprit: PathBuf,
}

impl Special {
    fn at(what: &'static str, path: PathBuf) -> Self {
        Special {
            what,
            culprit: path.clone(),
            path,
        }
    }

    fn behind(what: &'static str, path: PathBuf, culprit: PathBuf) -> Self {
        Special {
            what,
            path,
            culprit,
        }
    }
}

/// Endless, blocking and non-regular inputs, created in `dir` where they are not device
/// files. A correct reader refuses each with a typed error at once (a FIFO: without blocking
/// in `open`), without reading past a bound.
///
/// FIFOs are made with the `mkfifo` command (std cannot, and `libc` is no dependency); where
/// it is missing this fails rather than leave them out. A reader that opens a FIFO blocks
/// until a writer comes, so run these in a child process with a timeout.
pub fn special_paths(dir: &Path) -> std::io::Result<Vec<Special>> {
    std::fs::create_dir_all(dir)?;
    let mut out = vec![
        Special::at(
            "/dev/zero (endless zeros, length 0)",
            PathBuf::from("/dev/zero"),
        ),
        Special::at(
            "/dev/urandom (endless, length 0)",
            PathBuf::from("/dev/urandom"),
        ),
        Special::at(
            "/dev/null (empty character device)",
            PathBuf::from("/dev/null"),
        ),
    ];
    let sub = dir.join("a-directory.ckpt");
    std::fs::create_dir_all(&sub)?;
    out.push(Special::at("a directory named .ckpt", sub));

    #[cfg(unix)]
    {
        let link = dir.join("zero-link.ckpt");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/zero", &link)?;
        out.push(Special::at("symlink t.ckpt -> /dev/zero", link));

        // A valid index whose shard is a symlink to /dev/zero.
        let shard_dir = dir.join("sharded-zero");
        std::fs::create_dir_all(&shard_dir)?;
        let (index, shards) = sharded(&control_tensors());
        std::fs::write(shard_dir.join(INDEX_NAME), index)?;
        let shard = shard_dir.join(&shards[0].0);
        let _ = std::fs::remove_file(&shard);
        std::os::unix::fs::symlink("/dev/zero", &shard)?;
        out.push(Special::behind(
            "sharded: shard -> /dev/zero",
            shard_dir.join(INDEX_NAME),
            shard,
        ));

        let link = dir.join("zero.safetensors.index.json");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/zero", &link)?;
        out.push(Special::at("index.json -> /dev/zero", link));
    }

    let fifo = |path: &Path| -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        let status = std::process::Command::new("mkfifo").arg(path).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "mkfifo {}: {status}",
                path.display()
            )))
        }
    };
    let path = dir.join("fifo.ckpt");
    fifo(&path)?;
    out.push(Special::at("a FIFO named .ckpt", path));
    let path = dir.join("fifo.safetensors.index.json");
    fifo(&path)?;
    out.push(Special::at("a FIFO named .index.json", path));
    let shard_dir = dir.join("sharded-fifo");
    std::fs::create_dir_all(&shard_dir)?;
    let (index, shards) = sharded(&control_tensors());
    std::fs::write(shard_dir.join(INDEX_NAME), index)?;
    let shard = shard_dir.join(&shards[0].0);
    fifo(&shard)?;
    out.push(Special::behind(
        "sharded: shard is a FIFO",
        shard_dir.join(INDEX_NAME),
        shard,
    ));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Building blocks.

fn case(
    class: &'static str,
    format: &'static str,
    name: &str,
    file_name: &str,
    bytes: Vec<u8>,
    scale: usize,
    expect: Expect,
) -> Case {
    Case {
        class,
        format,
        name: name.to_owned(),
        file_name: file_name.to_owned(),
        bytes,
        siblings: Vec::new(),
        scale,
        expect,
    }
}

/// A tensor to store: its key, safetensors dtype name, shape and little-endian data.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub key: String,
    pub dtype: &'static str,
    pub shape: Vec<u64>,
    /// The shape as a pickle stores it (`i64`s).
    pub pickle_shape: Vec<i64>,
    pub data: Vec<u8>,
}

fn storage_class(dtype: &str) -> &'static str {
    match dtype {
        "F64" => "DoubleStorage",
        "F32" => "FloatStorage",
        "F16" => "HalfStorage",
        "BF16" => "BFloat16Storage",
        "I64" => "LongStorage",
        "I32" => "IntStorage",
        "I16" => "ShortStorage",
        "I8" => "CharStorage",
        "U8" => "ByteStorage",
        "BOOL" => "BoolStorage",
        other => panic!("no storage class for {other}"),
    }
}

fn item_size(dtype: &str) -> usize {
    match dtype {
        "F64" | "I64" => 8,
        "F32" | "I32" => 4,
        "F16" | "BF16" | "I16" => 2,
        _ => 1,
    }
}

// --- ckpt -------------------------------------------------------------------------------------

const CKPT_MAGIC: [u8; 8] = *b"\x89CKPT\r\n\x1a";

/// A ckpt file: the 64-byte prefix (checksum right), `data` from offset 64 (its length padded
/// to 64), then `header` (the CBOR of `Header`) as `header_cbor` builds it from `root` and
/// `records`.
fn ckpt_file(root: &[u8], records: &[CkptRecord], data: &[u8]) -> Vec<u8> {
    let mut data = data.to_vec();
    data.resize(data.len().div_ceil(64) * 64, 0);
    let header = header_cbor(root, records);
    let header_offset = 64 + data.len() as u64;
    let mut prefix = [0u8; 64];
    prefix[..8].copy_from_slice(&CKPT_MAGIC);
    prefix[8..10].copy_from_slice(&1u16.to_le_bytes()); // major
    prefix[10..12].copy_from_slice(&0u16.to_le_bytes()); // minor
    prefix[12..16].copy_from_slice(&0u32.to_le_bytes()); // flags
    prefix[16..24].copy_from_slice(&header_offset.to_le_bytes());
    prefix[24..32].copy_from_slice(&(header.len() as u64).to_le_bytes());
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&prefix[8..32]);
    hasher.update(&header);
    prefix[32..40].copy_from_slice(&hasher.digest().to_le_bytes());
    let mut out = prefix.to_vec();
    out.extend_from_slice(&data);
    out.extend_from_slice(&header);
    out
}

struct CkptRecord {
    dtype: &'static str,
    shape: Vec<u64>,
    offset: u64,
    len: u64,
    xxh3: u64,
}

/// `{"producer": .., "root": root, "tensors": [records]}`, as ciborium serializes `Header`.
fn header_cbor(root: &[u8], records: &[CkptRecord]) -> Vec<u8> {
    let mut c = Cbor::default();
    c.map(3);
    c.text("producer");
    c.text("hostile.rs");
    c.text("root");
    c.0.extend_from_slice(root);
    c.text("tensors");
    c.array(records.len());
    for r in records {
        c.map(6);
        c.text("dtype");
        c.text(r.dtype);
        c.text("shape");
        c.array(r.shape.len());
        for &d in &r.shape {
            c.uint(d);
        }
        c.text("device");
        c.text("cpu");
        c.text("offset");
        c.uint(r.offset);
        c.text("len");
        c.uint(r.len);
        c.text("xxh3");
        c.uint(r.xxh3);
    }
    c.0
}

/// A flat map of tensors as `ckpt::save(model.state_dict())` writes it.
fn ckpt_state_dict(tensors: &[TensorSpec]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut records = Vec::new();
    let mut root = Cbor::default();
    root.node_map_head(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        let offset = 64 + data.len() as u64;
        data.extend_from_slice(&t.data);
        data.resize(data.len().div_ceil(64) * 64, 0);
        records.push(CkptRecord {
            dtype: t.dtype,
            shape: t.shape.clone(),
            offset,
            len: t.data.len() as u64,
            xxh3: xxhash_rust::xxh3::xxh3_64(&t.data),
        });
        // [{"Str": key}, {"Tensor": i}]
        root.array(2);
        root.map(1);
        root.text("Str");
        root.text(&t.key);
        root.map(1);
        root.text("Tensor");
        root.uint(i as u64);
    }
    ckpt_file(&root.0, &records, &data)
}

/// A minimal CBOR writer, with the shapes serde's externally tagged enums take in ciborium:
/// a unit variant is its name as text, any other variant a one-entry map.
#[derive(Default)]
struct Cbor(Vec<u8>);

impl Cbor {
    fn head(&mut self, major: u8, n: u64) {
        let m = major << 5;
        match n {
            0..=23 => self.0.push(m | n as u8),
            24..=0xff => self.0.extend_from_slice(&[m | 24, n as u8]),
            0x100..=0xffff => {
                self.0.push(m | 25);
                self.0.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.0.push(m | 26);
                self.0.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                self.0.push(m | 27);
                self.0.extend_from_slice(&n.to_be_bytes());
            }
        }
    }
    fn uint(&mut self, n: u64) {
        self.head(0, n);
    }
    fn text(&mut self, s: &str) {
        self.head(3, s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn array(&mut self, n: usize) {
        self.head(4, n as u64);
    }
    fn map(&mut self, n: usize) {
        self.head(5, n as u64);
    }
    /// `Node::None`.
    fn node_none(&mut self) {
        self.text("None");
    }
    /// `Node::List` of `n` nodes, which follow.
    fn node_list_head(&mut self, n: usize) {
        self.map(1);
        self.text("List");
        self.array(n);
    }
    /// `Node::Map` of `n` `[key, node]` pairs, which follow.
    fn node_map_head(&mut self, n: usize) {
        self.map(1);
        self.text("Map");
        self.array(n);
    }
}

// --- safetensors --------------------------------------------------------------------------------

/// A safetensors file; with `align`, the header is padded with spaces so that the data starts
/// at a multiple of 8 (as the `safetensors` crate writes), else so that it starts at an odd
/// offset.
fn safetensors(tensors: &[TensorSpec], align: bool) -> Vec<u8> {
    let mut json = String::from("{");
    let mut offset = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        json.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json_string(&t.key),
            t.dtype,
            shape.join(","),
            offset,
            offset + t.data.len()
        ));
        offset += t.data.len();
    }
    json.push('}');
    if align {
        while (8 + json.len()) % 8 != 0 {
            json.push(' ');
        }
    } else if (8 + json.len()) % 2 == 0 {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    for t in tensors {
        out.extend_from_slice(&t.data);
    }
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The index's file name; its shard is `model-00001-of-00001.safetensors`.
pub const INDEX_NAME: &str = "model.safetensors.index.json";

/// A sharded checkpoint of one shard: the index, and the shard as a sibling.
pub fn sharded(tensors: &[TensorSpec]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let shard = "model-00001-of-00001.safetensors";
    let total: usize = tensors.iter().map(|t| t.data.len()).sum();
    let map: Vec<String> = tensors
        .iter()
        .map(|t| format!("{}:{}", json_string(&t.key), json_string(shard)))
        .collect();
    let index = format!(
        "{{\"metadata\":{{\"total_size\":{total}}},\"weight_map\":{{{}}}}}",
        map.join(",")
    );
    (
        index.into_bytes(),
        vec![(shard.to_owned(), safetensors(tensors, true))],
    )
}

// --- zip ----------------------------------------------------------------------------------------

/// CRC-32 (IEEE), as zip records it.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// A local file header for a stored record (CRC right), padded with an extra field so that
/// the data starts at a multiple of 64, as PyTorch writes. `at` is where it starts.
fn local_header(out: &mut Vec<u8>, name: &str, data: &[u8], at: usize) {
    let fixed = 30 + name.len();
    let mut pad = (64 - (at + fixed) % 64) % 64;
    if pad > 0 && pad < 4 {
        pad += 64;
    }
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&0u16.to_le_bytes()); // stored
    out.extend_from_slice(&0u16.to_le_bytes()); // time
    out.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&(pad as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    if pad > 0 {
        // An extra field of id 0xa11e (the zip crate's alignment padding) and zeros.
        out.extend_from_slice(&0xa11eu16.to_le_bytes());
        out.extend_from_slice(&((pad - 4) as u16).to_le_bytes());
        out.resize(out.len() + pad - 4, 0);
    }
}

fn central_header(out: &mut Vec<u8>, name: &str, data: &[u8], local_offset: usize) {
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // made by
    out.extend_from_slice(&20u16.to_le_bytes()); // needed
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&0u16.to_le_bytes()); // stored
    out.extend_from_slice(&0u16.to_le_bytes()); // time
    out.extend_from_slice(&0x21u16.to_le_bytes()); // date
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // extra
    out.extend_from_slice(&0u16.to_le_bytes()); // comment
    out.extend_from_slice(&0u16.to_le_bytes()); // disk
    out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    out.extend_from_slice(&(local_offset as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

fn eocd(out: &mut Vec<u8>, entries: u16, cd_size: u32, cd_offset: u32) {
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // this disk
    out.extend_from_slice(&0u16.to_le_bytes()); // disk of the central directory
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
}

/// A zip of stored records, in order; names may repeat (no zip writer allows that).
pub fn zip_stored(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for (name, data) in records {
        offsets.push(out.len());
        let at = out.len();
        local_header(&mut out, name, data, at);
        out.extend_from_slice(data);
    }
    let cd_start = out.len();
    for ((name, data), &offset) in records.iter().zip(&offsets) {
        central_header(&mut out, name, data, offset);
    }
    let cd_size = out.len() - cd_start;
    eocd(
        &mut out,
        records.len() as u16,
        cd_size as u32,
        cd_start as u32,
    );
    out
}

// --- pickle -------------------------------------------------------------------------------------

mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const GLOBAL: u8 = b'c';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const BINGET: u8 = b'h';
    pub const EMPTY_LIST: u8 = b']';
    pub const BINPUT: u8 = b'q';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const PROTO: u8 = 0x80;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
}

/// A pickle being written (protocol 2, as `torch.save` writes).
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Pickle(vec![op::PROTO, 2])
    }
    fn op(&mut self, code: u8) {
        self.0.push(code);
    }
    fn none(&mut self) {
        self.op(op::NONE);
    }
    fn str(&mut self, s: &str) {
        self.op(op::BINUNICODE);
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: i64) {
        match v {
            0..=0xff => {
                self.op(op::BININT1);
                self.0.push(v as u8);
            }
            0x100..=0xffff => {
                self.op(op::BININT2);
                self.0.extend_from_slice(&(v as u16).to_le_bytes());
            }
            _ if i32::try_from(v).is_ok() => {
                self.op(op::BININT);
                self.0.extend_from_slice(&(v as i32).to_le_bytes());
            }
            _ => {
                self.op(op::LONG1);
                self.0.push(8);
                self.0.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    fn global(&mut self, module: &str, name: &str) {
        self.op(op::GLOBAL);
        self.0.extend_from_slice(module.as_bytes());
        self.0.push(b'\n');
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b'\n');
    }
    fn int_tuple(&mut self, items: &[i64]) {
        if items.is_empty() {
            self.op(op::EMPTY_TUPLE);
            return;
        }
        self.op(op::MARK);
        for &i in items {
            self.int(i);
        }
        self.op(op::TUPLE);
    }
    fn finish(mut self) -> Vec<u8> {
        self.op(op::STOP);
        self.0
    }
}

/// A pickle of whatever `body` pushes (one object), then STOP.
fn pickle_body(body: impl FnOnce(&mut Pickle)) -> Vec<u8> {
    let mut p = Pickle::new();
    body(&mut p);
    p.finish()
}

/// An `OrderedDict` of tensors, each in its own storage keyed `first_storage + i`, as
/// `torch.save(model.state_dict())` pickles it; returns the pickle and the storage keys.
fn state_dict_pickle(tensors: &[TensorSpec], first_storage: usize) -> (Vec<u8>, Vec<String>) {
    let mut p = Pickle::new();
    p.global("collections", "OrderedDict");
    p.op(op::EMPTY_TUPLE);
    p.op(op::REDUCE);
    p.op(op::MARK);
    let mut keys = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let storage_key = (first_storage + i).to_string();
        p.str(&t.key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(op::MARK);
        // ('storage', torch.FloatStorage, key, 'cpu', numel)
        p.op(op::MARK);
        p.str("storage");
        p.global("torch", storage_class(t.dtype));
        p.str(&storage_key);
        p.str("cpu");
        p.int((t.data.len() / item_size(t.dtype)) as i64);
        p.op(op::TUPLE);
        p.op(op::BINPERSID);
        p.int(0); // storage offset
        p.int_tuple(&t.pickle_shape);
        // C-contiguous strides, saturated (a zero-element view never reads them).
        let mut stride = vec![1i64; t.pickle_shape.len()];
        for d in (0..t.pickle_shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1].saturating_mul(t.pickle_shape[d + 1].max(1));
        }
        p.int_tuple(&stride);
        p.op(op::NEWFALSE); // requires_grad
        p.global("collections", "OrderedDict");
        p.op(op::EMPTY_TUPLE);
        p.op(op::REDUCE); // backward hooks
        p.op(op::TUPLE);
        p.op(op::REDUCE);
        keys.push(storage_key);
    }
    p.op(op::SETITEMS);
    (p.finish(), keys)
}

/// A zip-format `.pt` holding `pickle` as `archive/data.pkl` and `storages` (key, bytes).
pub fn pt_zip_pickle(pickle: &[u8], storages: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut records: Vec<(String, Vec<u8>)> = vec![
        ("archive/data.pkl".to_owned(), pickle.to_vec()),
        ("archive/byteorder".to_owned(), b"little".to_vec()),
    ];
    for (key, bytes) in storages {
        records.push((format!("archive/data/{key}"), bytes.clone()));
    }
    records.push(("archive/version".to_owned(), b"3\n".to_vec()));
    zip_stored(&records)
}

fn pt_zip_state_dict(tensors: &[TensorSpec]) -> Vec<u8> {
    let (pickle, keys) = state_dict_pickle(tensors, 0);
    let storages: Vec<(String, Vec<u8>)> = keys
        .into_iter()
        .zip(tensors)
        .map(|(k, t)| (k, t.data.clone()))
        .collect();
    pt_zip_pickle(&pickle, &storages)
}

/// `0x1950a86a20f9469cfc6c`, the legacy format's magic number, little-endian.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// A legacy `.pt`: the magic, protocol 1001, `sys_info`, `pickle`, the storage key list, then
/// each storage as an 8-byte element count and its bytes.
fn pt_legacy_pickle(pickle: &[u8], storages: &[(String, usize, Vec<u8>)]) -> Vec<u8> {
    let mut out = pickle_body(|p| {
        p.op(op::LONG1);
        p.0.push(10);
        p.0.extend_from_slice(&LEGACY_MAGIC);
    });
    out.extend(pickle_body(|p| p.int(1001)));
    out.extend(pickle_body(|p| {
        p.op(op::EMPTY_DICT);
        p.op(op::MARK);
        p.str("protocol_version");
        p.int(1001);
        p.str("little_endian");
        p.op(op::NEWTRUE);
        p.str("type_sizes");
        p.op(op::EMPTY_DICT);
        p.op(op::MARK);
        for (name, size) in [("short", 2), ("int", 4), ("long", 4)] {
            p.str(name);
            p.int(size);
        }
        p.op(op::SETITEMS);
        p.op(op::SETITEMS);
    }));
    out.extend_from_slice(pickle);
    out.extend(pickle_body(|p| {
        p.op(op::EMPTY_LIST);
        if !storages.is_empty() {
            p.op(op::MARK);
            for (key, _, _) in storages {
                p.str(key);
            }
            p.op(op::APPENDS);
        }
    }));
    for (_, numel, bytes) in storages {
        out.extend_from_slice(&(*numel as i64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn pt_legacy_state_dict(tensors: &[TensorSpec]) -> Vec<u8> {
    let (pickle, keys) = state_dict_pickle(tensors, 0);
    let storages: Vec<(String, usize, Vec<u8>)> = keys
        .into_iter()
        .zip(tensors)
        .map(|(k, t)| (k, t.data.len() / item_size(t.dtype), t.data.clone()))
        .collect();
    pt_legacy_pickle(&pickle, &storages)
}

// ---------------------------------------------------------------------------------------------
// PyTorch Distributed Checkpoints: a `.metadata` pickle beside `__0_0.distcp`.

/// The file every DCP case is loaded by: the checkpoint's `.metadata`.
pub const DCP_METADATA: &str = ".metadata";
/// Its one data file.
pub const DCP_DATA: &str = "__0_0.distcp";

/// A tensor as a DCP `.metadata` describes it: its key, dtype, global size and chunks.
struct DcpTensor {
    key: String,
    dtype: &'static str,
    size: Vec<i64>,
    /// (offsets, sizes) of each chunk.
    chunks: Vec<(Vec<i64>, Vec<i64>)>,
}

/// Where an item is: its key, its chunk's offsets (none for a value), file, offset, length.
type DcpItem = (String, Option<Vec<i64>>, String, i64, i64);

fn torch_dtype(dtype: &str) -> &'static str {
    match dtype {
        "F64" => "float64",
        "F32" => "float32",
        "I64" => "int64",
        _ => "uint8",
    }
}

/// `cls.__new__(cls)` then `BUILD` of the dict `fields` pushes, as pickle writes a dataclass.
fn dcp_object(p: &mut Pickle, class: &str, fields: impl FnOnce(&mut Pickle)) {
    let module = if class == "_StorageInfo" {
        "torch.distributed.checkpoint.filesystem"
    } else {
        "torch.distributed.checkpoint.metadata"
    };
    p.global(module, class);
    p.op(op::EMPTY_TUPLE);
    p.op(dcp_op::NEWOBJ);
    p.op(op::EMPTY_DICT);
    p.op(op::MARK);
    fields(p);
    p.op(op::SETITEMS);
    p.op(dcp_op::BUILD);
}

/// `torch.Size(items)`.
fn dcp_size(p: &mut Pickle, items: &[i64]) {
    p.global("torch", "Size");
    p.int_tuple(items);
    p.op(dcp_op::TUPLE1);
    p.op(op::REDUCE);
}

mod dcp_op {
    pub const NEWOBJ: u8 = 0x81;
    pub const BUILD: u8 = b'b';
    pub const TUPLE1: u8 = 0x85;
}

/// A `.metadata` of `tensors` and their items, as `torch.distributed.checkpoint` pickles it
/// (protocol 2).
fn dcp_metadata(tensors: &[DcpTensor], items: &[DcpItem]) -> Vec<u8> {
    let mut p = Pickle::new();
    dcp_object(&mut p, "Metadata", |p| {
        p.str("state_dict_metadata");
        p.op(op::EMPTY_DICT);
        p.op(op::MARK);
        for t in tensors {
            p.str(&t.key);
            dcp_object(p, "TensorStorageMetadata", |p| {
                p.str("properties");
                p.global("torch.distributed.checkpoint.metadata", "TensorProperties");
                p.op(op::EMPTY_TUPLE);
                p.op(dcp_op::NEWOBJ);
                p.op(op::MARK);
                p.global("torch", torch_dtype(t.dtype));
                p.global("torch.serialization", "_get_layout");
                p.str("torch.strided");
                p.op(dcp_op::TUPLE1);
                p.op(op::REDUCE);
                p.op(op::NEWFALSE);
                p.int(0);
                p.op(op::NEWFALSE);
                p.op(op::TUPLE);
                p.op(dcp_op::BUILD);
                p.str("size");
                dcp_size(p, &t.size);
                p.str("chunks");
                p.op(op::EMPTY_LIST);
                p.op(op::MARK);
                for (offsets, sizes) in &t.chunks {
                    dcp_object(p, "ChunkStorageMetadata", |p| {
                        p.str("offsets");
                        dcp_size(p, offsets);
                        p.str("sizes");
                        dcp_size(p, sizes);
                    });
                }
                p.op(op::APPENDS);
            });
        }
        p.op(op::SETITEMS);
        p.str("storage_data");
        p.op(op::EMPTY_DICT);
        p.op(op::MARK);
        for (key, offsets, file, offset, length) in items {
            dcp_object(p, "MetadataIndex", |p| {
                p.str("fqn");
                p.str(key);
                if let Some(offsets) = offsets {
                    p.str("offset");
                    dcp_size(p, offsets);
                }
            });
            dcp_object(p, "_StorageInfo", |p| {
                p.str("relative_path");
                p.str(file);
                p.str("offset");
                p.int(*offset);
                p.str("length");
                p.int(*length);
            });
        }
        p.op(op::SETITEMS);
    });
    p.finish()
}

/// A `torch.save` archive of one tensor: a DCP item.
fn dcp_tensor_item(dtype: &str, shape: &[i64], data: &[u8]) -> Vec<u8> {
    let spec = TensorSpec {
        key: String::new(),
        dtype: if dtype == "F32" { "F32" } else { "F64" },
        shape: shape.iter().map(|&d| d as u64).collect(),
        pickle_shape: shape.to_vec(),
        data: data.to_vec(),
    };
    let mut p = Pickle::new();
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op(op::MARK);
    p.op(op::MARK);
    p.str("storage");
    p.global("torch", storage_class(spec.dtype));
    p.str("0");
    p.str("cpu");
    p.int((data.len() / item_size(spec.dtype)) as i64);
    p.op(op::TUPLE);
    p.op(op::BINPERSID);
    p.int(0);
    p.int_tuple(shape);
    let mut stride = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        stride[d] = stride[d + 1] * shape[d + 1].max(1);
    }
    p.int_tuple(&stride);
    p.op(op::NEWFALSE);
    p.global("collections", "OrderedDict");
    p.op(op::EMPTY_TUPLE);
    p.op(op::REDUCE);
    p.op(op::TUPLE);
    p.op(op::REDUCE);
    pt_zip_pickle(&p.finish(), &[("0".to_owned(), spec.data)])
}

/// The control tensors as one rank's DCP checkpoint would hold them if `weight` were sharded
/// by rows over two ranks: `weight` in two chunks, `bias` whole. Returns the tensors'
/// descriptions, the items (key, offsets, bytes) and the data file.
fn dcp_control() -> (Vec<DcpTensor>, Vec<DcpItem>, Vec<u8>) {
    dcp_control_parts()
}

/// The control DCP checkpoint's `.metadata` and data file (`__0_0.distcp`): the fuzz
/// target's fixed data file and its first seed.
pub fn dcp_control_files() -> (Vec<u8>, Vec<u8>) {
    let (tensors, items, data) = dcp_control_parts();
    (dcp_metadata(&tensors, &items), data)
}

fn dcp_control_parts() -> (Vec<DcpTensor>, Vec<DcpItem>, Vec<u8>) {
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    // (key, offsets, sizes, data) of each item.
    type Part = (&'static str, Vec<i64>, Vec<i64>, Vec<u8>);
    let parts: [Part; 3] = [
        ("weight", vec![0, 0], vec![1, 2], f32s(&[0.0, 1.0])),
        ("weight", vec![1, 0], vec![1, 2], f32s(&[2.0, 3.0])),
        ("bias", vec![0], vec![2], f32s(&[4.0, 5.0])),
    ];
    let mut data = Vec::new();
    let mut items = Vec::new();
    for (key, offsets, sizes, bytes) in &parts {
        let item = dcp_tensor_item("F32", sizes, bytes);
        items.push((
            key.to_string(),
            Some(offsets.clone()),
            DCP_DATA.to_owned(),
            data.len() as i64,
            item.len() as i64,
        ));
        data.extend(item);
    }
    let tensors = vec![
        DcpTensor {
            key: "weight".to_owned(),
            dtype: "F32",
            size: vec![2, 2],
            chunks: vec![(vec![0, 0], vec![1, 2]), (vec![1, 0], vec![1, 2])],
        },
        DcpTensor {
            key: "bias".to_owned(),
            dtype: "F32",
            size: vec![2],
            chunks: vec![(vec![0], vec![2])],
        },
    ];
    (tensors, items, data)
}

fn dcp_case(name: &str, metadata: Vec<u8>, data: Vec<u8>, scale: usize, expect: Expect) -> Case {
    let mut out = case("dcp", "dcp", name, DCP_METADATA, metadata, scale, expect);
    out.siblings = vec![(DCP_DATA.to_owned(), data)];
    out
}

/// The control checkpoint, and each way a `.metadata` can lie about it or try to run code.
pub fn dcp_cases() -> Vec<Case> {
    let (tensors, items, data) = dcp_control();
    let mut out = vec![dcp_case(
        "valid: weight in two row chunks",
        dcp_metadata(&tensors, &items),
        data.clone(),
        1,
        Expect::Valid,
    )];
    let mut lie = |name: &str,
                   text: &'static str,
                   change: &dyn Fn(&mut Vec<DcpTensor>, &mut Vec<DcpItem>)| {
        let (mut t, mut i) = (dcp_control().0, dcp_control().1);
        change(&mut t, &mut i);
        out.push(dcp_case(
            name,
            dcp_metadata(&t, &i),
            data.clone(),
            1,
            Expect::Error(Some(text)),
        ));
    };
    lie("two chunks overlap", "overlap", &|t, _| {
        t[0].chunks[0].1 = vec![2, 2];
    });
    lie("a chunk is missing", "cover", &|t, _| {
        t[0].chunks.pop();
    });
    lie("a chunk beyond the tensor", "does not fit", &|t, _| {
        t[0].chunks[1].0 = vec![2, 0];
    });
    lie(
        "a tensor of 4 TiB in one chunk of 1 KiB",
        "fewer than the chunk",
        &|t, i| {
            t[1].size = vec![1 << 20, 1 << 20];
            t[1].chunks = vec![(vec![0, 0], vec![1 << 20, 1 << 20])];
            i[2].1 = Some(vec![0, 0]);
        },
    );
    lie(
        "an item outside the directory",
        "not a file beside",
        &|_, i| {
            i[0].2 = "../t.pt".to_owned();
        },
    );
    lie("an item past the end of its file", "truncated", &|_, i| {
        i[2].4 += 1000;
    });
    lie("two items overlap", "overlaps", &|_, i| i[1].3 -= 10);
    lie(
        "a chunk without an item",
        "no storage_data entry",
        &|_, i| {
            i.remove(1);
        },
    );
    // Code, where data should be: `os.system("ls")` as the root.
    let system = pickle_body(|p| {
        p.global("os", "system");
        p.str("ls");
        p.op(dcp_op::TUPLE1);
        p.op(op::REDUCE);
    });
    out.push(dcp_case(
        "os.system as the root",
        system,
        data.clone(),
        1,
        Expect::Error(Some("os.system")),
    ));
    let full = dcp_metadata(&tensors, &items);
    out.push(dcp_case(
        "the .metadata cut in half",
        full[..full.len() / 2].to_vec(),
        data.clone(),
        1,
        Expect::Error(Some("truncated")),
    ));
    let half = data.len() / 2;
    out.push(dcp_case(
        "the data file cut in half",
        full,
        data[..half].to_vec(),
        1,
        Expect::Error(Some("truncated")),
    ));
    out
}

/// About 280 KiB per scale step: one string of 16 KiB per step memoized, then used as the key
/// of 65536 `planner_data` entries per step. Each use copies it: the copies are charged, so the
/// load is refused at the bound rather than growing without one.
pub fn dcp_memory_cases(scale: usize) -> Vec<Case> {
    let (tensors, items, data) = dcp_control();
    let base = dcp_metadata(&tensors, &items);
    // Reopen the Metadata's dict: drop `SETITEMS BUILD STOP`, add `planner_data`, close again.
    let mut p = Pickle(base[..base.len() - 3].to_vec());
    p.str("planner_data");
    p.op(op::EMPTY_DICT);
    p.op(op::MARK);
    p.str(&"k".repeat((1 << 14) * scale));
    p.op(op::BINPUT);
    p.0.push(0);
    p.op(op::EMPTY_TUPLE);
    for _ in 0..65536 * scale {
        p.op(op::BINGET);
        p.0.push(0);
        p.op(op::EMPTY_TUPLE);
    }
    p.op(op::SETITEMS);
    p.op(op::SETITEMS);
    p.op(dcp_op::BUILD);
    vec![dcp_case(
        "one long key memoized and used again and again",
        p.finish(),
        data,
        scale,
        Expect::Bounded,
    )]
}
