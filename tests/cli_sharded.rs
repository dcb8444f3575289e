//! `ckpt convert` with ckpt's sharded checkpoint directories, run as a user would: a file
//! split into N shards (`--shards N`) and consolidated back, a directory saved by 4 ranks
//! consolidated into each format, byte for byte; incomplete and damaged directories refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ckpt::distributed::{self, Job, Status};
use ckpt::shard::{Chunk, Sharded};
use ckpt::{DType, SaveOptions, StateDict, StateDictOptions, Tensor, Value, dict};

fn ckpt(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `ckpt ARGS`, which must succeed.
fn ok(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let out = ckpt(args);
    assert!(
        out.status.success(),
        "ckpt {:?}: {}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        stderr(&out)
    );
    out
}

/// A tensor of `dtype` and `shape` whose bytes depend on `seed` and each byte's place.
fn patterned(dtype: DType, shape: &[usize], seed: u8) -> Tensor {
    let n: usize = shape.iter().product::<usize>() * dtype.size_in_bytes();
    let bytes: Vec<u8> = (0..n)
        .map(|i| match dtype {
            DType::Bool => ((i + seed as usize) % 2) as u8,
            // Finite halves and floats: keep the high byte of each element below NaN's.
            _ => ((i * 37 + seed as usize * 11) % 251) as u8 & 0x3f,
        })
        .collect();
    Tensor::from_le_bytes(dtype, shape, &bytes).unwrap()
}

/// Every tensor of a file by flattened key: dtype, shape and little-endian bytes.
type Contents = BTreeMap<String, (DType, Vec<usize>, Vec<u8>)>;

fn contents(value: &Value<'_>) -> Contents {
    value
        .tensors()
        .into_iter()
        .map(|(key, t)| {
            let bytes = t.to_le_bytes().unwrap().into_owned();
            (key, (t.dtype(), t.shape().to_vec(), bytes))
        })
        .collect()
}

fn file_contents(path: &Path) -> Contents {
    contents(ckpt::load(path).unwrap().value())
}

/// A training checkpoint whose tensors cover the cases of a split: rows that 3 and 4 do not
/// divide, fewer rows than ranks, a 0-d tensor, one row, several dtypes, nested keys.
fn training_checkpoint() -> Value<'static> {
    dict! {
        "model_state_dict" => dict! {
            "fc.weight" => patterned(DType::F32, &[10, 3], 1),
            "fc.bias" => patterned(DType::F32, &[10], 2),
            "emb.weight" => patterned(DType::BF16, &[7, 5], 3),
            "conv.weight" => patterned(DType::F16, &[9, 2, 2, 2], 4),
            "head.weight" => patterned(DType::F64, &[2, 6], 5),
            "mask" => patterned(DType::Bool, &[13], 6),
            "codes" => patterned(DType::I8, &[1, 17], 7),
            "bytes" => patterned(DType::U8, &[5], 8),
            "steps" => Tensor::scalar(12345i64),
        },
        "ema" => dict! { "fc.weight" => patterned(DType::F32, &[10, 3], 9) },
    }
}

/// A file split into 1, 3 and 4 shards is a committed checkpoint of that many ranks, which
/// `distributed::load` reads whole, and which consolidates back into every format with every
/// tensor's bytes as they were.
#[test]
fn a_file_split_into_shards_consolidates_back_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("train.ckpt");
    ckpt::save(training_checkpoint(), &input).unwrap();
    let original = file_contents(&input);
    assert_eq!(original.len(), 10);

    for world in [1usize, 3, 4] {
        let dir = tmp.path().join(format!("split-{world}"));
        let out = ok(&[&"convert", &input, &dir, &"--shards", &world.to_string()]);
        assert!(
            stderr(&out).contains(&format!("into {world} shard(s)")),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            distributed::status(&dir).unwrap(),
            Status::Complete { world_size: world }
        );

        // Split by rows where there are enough of them, else whole on rank 0.
        let summary = distributed::inspect(&dir).unwrap();
        let by_key: BTreeMap<&str, &distributed::TensorSummary> = summary
            .tensors
            .iter()
            .map(|t| (t.key.as_str(), t))
            .collect();
        assert_eq!(by_key.len(), original.len());
        for (key, (_, shape, _)) in &original {
            let tensor = by_key[key.as_str()];
            let rows = shape.first().copied().unwrap_or(0);
            if rows >= world {
                assert!(!tensor.replicated, "{key} of {world}");
                let sizes: Vec<u64> = tensor.chunks.iter().map(|(_, c)| c.sizes()[0]).collect();
                let ranks: Vec<usize> = tensor.chunks.iter().map(|(r, _)| *r).collect();
                assert_eq!(ranks, (0..world).collect::<Vec<_>>(), "{key}");
                let expected: Vec<u64> = Chunk::split(&tensor.shape, 0, world as u64)
                    .unwrap()
                    .iter()
                    .map(|c| c.sizes()[0])
                    .collect();
                assert_eq!(sizes, expected, "{key} of {world}");
            } else {
                assert!(tensor.replicated, "{key} of {world}");
            }
        }
        if world == 4 {
            let rows = |key: &str| -> Vec<u64> {
                by_key[key]
                    .chunks
                    .iter()
                    .map(|(_, c)| c.sizes()[0])
                    .collect()
            };
            assert_eq!(rows("model_state_dict.fc.weight"), [3, 3, 2, 2]);
            assert!(by_key["model_state_dict.head.weight"].replicated);
            assert!(by_key["model_state_dict.steps"].replicated);
        }

        // The library's own load reads it, whole, into a fresh state dict.
        let mut model: BTreeMap<String, Tensor> = original
            .iter()
            .map(|(k, (dtype, shape, _))| (k.clone(), Tensor::zeros(*dtype, shape).unwrap()))
            .collect();
        let loaded = distributed::load(&mut model, &dir, &StateDictOptions::new()).unwrap();
        assert!(loaded.report.is_complete());
        for (key, tensor) in &model {
            assert_eq!(
                tensor.view().to_le_bytes().unwrap().as_ref(),
                original[key].2.as_slice(),
                "{key} loaded from {world} shards"
            );
        }

        for name in ["back.ckpt", "back.safetensors", "back.pt"] {
            let target = tmp.path().join(format!("{world}-{name}"));
            let out = ok(&[&"convert", &dir, &target]);
            assert!(
                stderr(&out).contains(&format!("(ckpt sharded, {world} ranks)")),
                "{}",
                stderr(&out)
            );
            assert_eq!(
                file_contents(&target),
                original,
                "{name} from {world} shards"
            );
        }
    }
}

/// One rank's part of a model saved by a job: rows of a matrix (uneven), a 2-D block of
/// another, and a replicated vector.
#[derive(StateDict)]
struct Part {
    rows: Sharded,
    blocks: Sharded,
    bias: Tensor,
}

const ROWS: [u64; 2] = [11, 3];
const BLOCKS: [u64; 2] = [6, 5];

fn globals() -> (Tensor, Tensor, Tensor) {
    (
        patterned(DType::F32, &[11, 3], 21),
        patterned(DType::BF16, &[6, 5], 22),
        patterned(DType::I64, &[4], 23),
    )
}

fn part(rank: usize, world: usize) -> Part {
    let (rows, blocks, bias) = globals();
    let row = Chunk::split(&ROWS, 0, world as u64).unwrap().remove(rank);
    let block = Chunk::grid(&BLOCKS, &[2, 2]).unwrap().remove(rank);
    Part {
        rows: Sharded::from_whole(&rows.view(), vec![row]).unwrap(),
        blocks: Sharded::from_whole(&blocks.view(), vec![block]).unwrap(),
        bias,
    }
}

/// Runs `ranks` of a job of `world` in threads, saving into `dir`; without rank 0 the others
/// give up waiting for the commit after 100 ms, as a killed job's ranks leave it.
fn save_job(dir: &Path, world: usize, ranks: &[usize]) {
    let timeout = if ranks.contains(&0) {
        Duration::from_secs(60)
    } else {
        Duration::from_millis(100)
    };
    std::thread::scope(|s| {
        for &rank in ranks {
            s.spawn(move || {
                let job = Job::new(rank, world).timeout(timeout).block_size(4096);
                let saved = distributed::save(
                    &part(rank, world).state_dict(),
                    dir,
                    &job,
                    &SaveOptions::new(),
                );
                assert_eq!(saved.is_ok(), ranks.contains(&0), "{saved:?}");
            });
        }
    });
}

/// A directory saved by 4 ranks, by rows and by 2-D blocks, consolidates into safetensors
/// and `.pt` (and ckpt's format), every tensor whole with the bytes the job held.
#[test]
fn a_job_of_four_ranks_consolidates_into_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-100");
    save_job(&dir, 4, &[0, 1, 2, 3]);
    let (rows, blocks, bias) = globals();
    let expected: Contents = [("rows", &rows), ("blocks", &blocks), ("bias", &bias)]
        .into_iter()
        .map(|(k, t)| {
            let v = t.view();
            (
                k.to_owned(),
                (
                    v.dtype(),
                    v.shape().to_vec(),
                    v.to_le_bytes().unwrap().into_owned(),
                ),
            )
        })
        .collect();
    for name in ["model.safetensors", "model.pt", "model.ckpt"] {
        let target = tmp.path().join(name);
        ok(&[&"convert", &dir, &target]);
        assert_eq!(file_contents(&target), expected, "{name}");
    }
    // The output's format by name, whatever the extension.
    let named = tmp.path().join("model.bin");
    ok(&[&"convert", &dir, &named, &"--format", &"safetensors"]);
    assert_eq!(ckpt::load(&named).unwrap().format().name(), "safetensors");
    assert_eq!(file_contents(&named), expected);
    let nowhere = tmp.path().join("no/such/model.pt");
    let out = ckpt(&[&"convert", &dir, &nowhere]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).ends_with(&format!(
            "{}: cannot be written: {} is not a directory\n",
            nowhere.display(),
            tmp.path().join("no/such").display()
        )),
        "{}",
        stderr(&out)
    );
    // No scratch file is left beside the outputs.
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "model.bin",
            "model.ckpt",
            "model.pt",
            "model.safetensors",
            "step-100"
        ]
    );
}

/// `--select` and `--strip-prefix` act on a sharded directory's global keys as on a file's;
/// a split refuses plain values unless told to drop them, and never writes into a directory
/// that holds something.
#[test]
fn convert_options_apply_to_sharded_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("train.ckpt");
    let mut checkpoint = training_checkpoint();
    checkpoint.insert("epoch", 7);
    ckpt::save(checkpoint.reborrow(), &input).unwrap();
    let original = file_contents(&input);

    let dir = tmp.path().join("shards");
    let out = ckpt(&[&"convert", &input, &dir, &"--shards", &"2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("\"epoch\" is int, not a tensor: a sharded checkpoint holds tensors only"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.exists(), "nothing is written");
    let out = ckpt(&[
        &"convert",
        &input,
        &dir,
        &"--shards",
        &"2",
        &"--plain-values",
        &"metadata",
    ]);
    assert!(
        stderr(&out).contains("use --plain-values drop"),
        "{}",
        stderr(&out)
    );
    let out = ckpt(&[
        &"convert",
        &input,
        &dir,
        &"--shards",
        &"2",
        &"--format",
        &"pytorch",
    ]);
    assert!(stderr(&out).contains("always ckpt's"), "{}", stderr(&out));
    let out = ckpt(&[&"convert", &input, &dir, &"--shards", &"0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.exists());

    ok(&[
        &"convert",
        &input,
        &dir,
        &"--shards",
        &"2",
        &"--plain-values",
        &"drop",
    ]);
    let out = ckpt(&[
        &"convert",
        &input,
        &dir,
        &"--shards",
        &"2",
        &"--plain-values",
        &"drop",
    ]);
    assert!(
        stderr(&out).contains("exists and is not an empty directory"),
        "{}",
        stderr(&out)
    );

    // One sub-tree, with a prefix stripped from its keys.
    let model = tmp.path().join("model.safetensors");
    ok(&[
        &"convert",
        &dir,
        &model,
        &"--select",
        &"model_state_dict",
        &"--strip-prefix",
        &"fc.",
    ]);
    let selected = file_contents(&model);
    let keys: Vec<&str> = selected.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "bias",
            "bytes",
            "codes",
            "conv.weight",
            "emb.weight",
            "head.weight",
            "mask",
            "steps",
            "weight"
        ]
    );
    assert_eq!(selected["weight"], original["model_state_dict.fc.weight"]);
    assert_eq!(selected["bias"], original["model_state_dict.fc.bias"]);

    // A split of a split: the sharded directory resharded into 3 ranks.
    let three = tmp.path().join("three");
    ok(&[
        &"convert",
        &dir,
        &three,
        &"--shards",
        &"3",
        &"--select",
        &"ema",
    ]);
    let back = tmp.path().join("ema.pt");
    ok(&[&"convert", &three, &back]);
    let ema = file_contents(&back);
    assert_eq!(ema.keys().collect::<Vec<_>>(), ["fc.weight"]);
    assert_eq!(ema["fc.weight"], original["ema.fc.weight"]);

    let out = ckpt(&[
        &"convert",
        &dir,
        &tmp.path().join("x.pt"),
        &"--select",
        &"optimizer",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "--select \"optimizer\": the checkpoint has no key \"optimizer\" and none under it (its keys start with: \"model_state_dict\", \"ema\")"
        ),
        "{}",
        stderr(&out)
    );
    let out = ckpt(&[
        &"convert",
        &dir,
        &tmp.path().join("x.pt"),
        &"--strip-prefix",
        &"module.",
    ]);
    assert!(
        stderr(&out).contains("strip_prefix(\"module.\") matched no key"),
        "{}",
        stderr(&out)
    );
}

/// A directory without checkpoint.json is refused with the library's error naming the ranks
/// present and missing; nothing is written.
#[test]
fn an_incomplete_directory_is_refused_naming_its_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-200");
    save_job(&dir, 4, &[1, 3]);
    let target = tmp.path().join("model.safetensors");
    let out = ckpt(&[&"convert", &dir, &target]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "ckpt: {}: an incomplete sharded checkpoint (no checkpoint.json): manifests of rank(s) [1, 3] are present; of a job of 4, rank(s) [0, 2] are missing\n",
            dir.display()
        )
    );
    assert!(!target.exists());
    let out = ckpt(&[
        &"convert",
        &dir,
        &tmp.path().join("again"),
        &"--shards",
        &"2",
    ]);
    assert!(
        stderr(&out).contains("an incomplete sharded checkpoint"),
        "{}",
        stderr(&out)
    );
}

/// A flipped byte in one rank's data is a checksum error naming the data file and the key;
/// nothing is written.
#[test]
fn a_damaged_data_file_is_refused_naming_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("step-300");
    save_job(&dir, 4, &[0, 1, 2, 3]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rank-2.manifest.json")).unwrap()).unwrap();
    let stored = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "blocks")
        .unwrap()["stored"]
        .clone();
    let at = stored["offset"].as_u64().unwrap() as usize + 3;
    let data = dir.join("rank-2.ckpt");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(&data, &bytes).unwrap();

    for name in ["model.pt", "model.safetensors"] {
        let target = tmp.path().join(name);
        let out = ckpt(&[&"convert", &dir, &target]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!(
                "ckpt: {}: the data of \"blocks\" is damaged: bytes {}..",
                data.display(),
                at - 3
            )) && err.trim_end().ends_with("do not match their checksum"),
            "{err}"
        );
        assert!(!target.exists(), "{name}");
    }
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no scratch file is left: {names:?}");
}

/// Keys that look like the data file's names for parts (a whole `w#0` and `w#0#` beside a
/// sharded `w`, whose part 0 is `w#0` there) split and consolidate with their own bytes.
#[test]
fn keys_like_part_names_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("odd.safetensors");
    ckpt::save(
        dict! {
            "w" => patterned(DType::F32, &[4, 2], 31),
            "w#0" => patterned(DType::F32, &[1, 3], 32),
            "w#0#" => Tensor::scalar(7i64),
        },
        &input,
    )
    .unwrap();
    let dir = tmp.path().join("odd");
    ok(&[&"convert", &input, &dir, &"--shards", &"2"]);
    let back = tmp.path().join("back.safetensors");
    ok(&[&"convert", &dir, &back]);
    assert_eq!(file_contents(&back), file_contents(&input));
}
