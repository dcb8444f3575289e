//! What every backend must do alike: round trips of every format, byte for byte with a local
//! save; loads into models; sharded checkpoints; background saves; failed saves; damaged and
//! missing objects. Each test runs once per backend (`memory::`, `file::`, `s3::`).

use ckpt::keymap::KeyMap;
use ckpt::{DType, Error, LoadFrom, StateDict, StateDictOptions, Tensor, Value, dict};
use ndarray::{Array1, Array2};

use crate::backend::{Backend, PART};
use crate::common::models::{Linear, Net, bytes_of};
use crate::raw;

/// Runs each test against each backend.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $test() { super::$test(&crate::backend::Backend::memory(stringify!($test))) })*
        }
        mod file {
            $(#[test] fn $test() { super::$test(&crate::backend::Backend::file(stringify!($test))) })*
        }
        mod s3 {
            $(#[test] fn $test() {
                if let Some(backend) = crate::backend::Backend::s3(stringify!($test)) {
                    super::$test(&backend)
                }
            })*
        }
    };
}

on_every_backend!(
    every_format_round_trips_byte_for_byte,
    load_from_fetches_what_the_model_takes,
    a_model_of_shards_loads_its_rows_of_a_whole_file,
    sharded_checkpoints_round_trip,
    dcp_directories_round_trip,
    ckpt_sharded_jobs_round_trip,
    background_saves_reach_the_store,
    a_failed_save_leaves_the_previous_checkpoint,
    damaged_objects_are_the_errors_of_damaged_files,
    a_missing_object_is_an_error_naming_it,
);

/// Values that no layer can shortcut: no zero pages, no runs.
pub(crate) fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

/// A state dict of every kind of tensor, 7.5 MiB: more than one 5 MiB part.
fn state_dict() -> Value<'static> {
    let embed = Tensor::from_vec(noise(1024 * 1536, 1), &[1024, 1536]).unwrap();
    let fc = Tensor::from_vec(noise(512 * 512, 2), &[512, 512]).unwrap();
    dict! {
        "embed.weight" => &embed,
        "fc.weight" => fc.to_dtype(DType::F16).unwrap(),
        "fc.bias" => Tensor::from_vec(noise(512, 3), &[512]).unwrap().to_dtype(DType::BF16).unwrap(),
        "steps" => Tensor::scalar(1234i64),
        "mask" => Tensor::from(Array1::from_shape_fn(77, |i| i % 3 == 0)),
        "empty" => Tensor::zeros(DType::I32, &[0, 4]).unwrap(),
    }
    .to_owned_value()
}

/// A training checkpoint around it, with a tied tensor.
fn checkpoint() -> Value<'static> {
    let state = state_dict();
    let tied = state["embed.weight"]
        .as_tensor()
        .unwrap()
        .to_tensor()
        .unwrap();
    dict! {
        "epoch" => 7,
        "loss" => 0.125,
        "model" => &state,
        "tied" => dict! { "a" => &tied, "b" => &tied },
        "note" => "on a server",
    }
    .to_owned_value()
}

fn every_format_round_trips_byte_for_byte(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let small = dict! { "w" => Tensor::scalar(2.5f32) }.to_owned_value();
    let cases = [
        ("model.ckpt", checkpoint()),
        ("model.pt", checkpoint()),
        ("model.safetensors", state_dict()),
        ("small.ckpt", small.clone()),
        ("small.pt", small),
    ];
    for (name, value) in cases {
        let local = dir.path().join(name);
        ckpt::save(&value, &local).unwrap();
        let url = backend.url(name);
        ckpt::save_with(&value, &url, &backend.save()).unwrap();
        let bytes = std::fs::read(&local).unwrap();
        if name.starts_with("model") {
            assert!(bytes.len() > PART, "{name}: a multipart upload");
        }
        assert!(
            raw::get(&url, &backend.load()) == bytes,
            "{}: {name} differs from a local save",
            backend.name
        );
        let loaded = ckpt::load_with(&url, &backend.load()).unwrap();
        assert_eq!(loaded.value(), &value, "{name}");
        assert_eq!(loaded.location().to_string(), url_shown(&url), "{name}");
        let header = ckpt::inspect_with(&url, &backend.load()).unwrap();
        assert_eq!(header, ckpt::inspect(&local).unwrap(), "{name}");
    }
}

/// How a location shows a URL: `file://` ones as the path.
fn url_shown(url: &str) -> String {
    url.strip_prefix("file://").unwrap_or(url).to_owned()
}

fn load_from_fetches_what_the_model_takes(backend: &Backend) {
    for name in ["net.ckpt", "net.safetensors", "net.pt"] {
        let trained = Net::new(3.0);
        let url = backend.url(name);
        ckpt::save_with(trained.state_dict(), &url, &backend.save()).unwrap();

        let mut model = Net::new(0.0);
        let report = model
            .load_from_with(&url, &backend.load(), &StateDictOptions::new())
            .unwrap();
        assert!(report.is_complete(), "{name}");
        assert_eq!(bytes_of(&model), bytes_of(&trained), "{name}");

        // One sub-module out of the whole checkpoint.
        let mut fc2 = Linear::new(3, 8, 9.0);
        let only = StateDictOptions::new().key_map(KeyMap::new().select_prefix("fc2."));
        let report = fc2.load_from_with(&url, &backend.load(), &only).unwrap();
        assert_eq!(report.loaded_keys, ["weight", "bias"], "{name}");
        assert_eq!(fc2, trained.fc2, "{name}");

        // A model that does not fit is refused whole, with PyTorch's message.
        let mut wrong = Linear::new(4, 4, 0.0);
        let before = wrong.clone();
        let err = wrong
            .load_from_with(&url, &backend.load(), &only)
            .unwrap_err();
        assert!(matches!(err, Error::Load { .. }), "{err}");
        assert!(
            err.to_string().contains("size mismatch for weight"),
            "{err}"
        );
        assert_eq!(wrong, before);
    }
}

/// One rank's model, which holds rows of each tensor (`Sharded` fields), loads them from a
/// whole file at a URL: only they are written, with the file's values.
fn a_model_of_shards_loads_its_rows_of_a_whole_file(backend: &Backend) {
    use ckpt::shard::{Chunk, Sharded};

    #[derive(ckpt::StateDict)]
    struct Rank {
        embed: Rows,
    }
    #[derive(ckpt::StateDict)]
    struct Rows {
        weight: Sharded,
    }
    let state = state_dict();
    let url = backend.url("whole.ckpt");
    ckpt::save_with(&state, &url, &backend.save()).unwrap();
    let embed = state["embed.weight"].as_tensor().unwrap();
    for rank in 0..3 {
        let rows = Chunk::split(&[1024, 1536], 0, 3).unwrap().remove(rank);
        let mut model = Rank {
            embed: Rows {
                weight: Sharded::zeros(DType::F32, vec![1024, 1536], vec![rows.clone()]).unwrap(),
            },
        };
        let partial = StateDictOptions::new().strict(false);
        let report = model
            .load_from_with(&url, &backend.load(), &partial)
            .unwrap();
        assert_eq!(report.loaded_keys, ["embed.weight"]);
        let expected = Sharded::from_whole(&embed, vec![rows]).unwrap();
        assert_eq!(model.embed.weight, expected, "rank {rank}");
    }
}

fn sharded_checkpoints_round_trip(backend: &Backend) {
    let state = state_dict();
    let index = backend.url("model.safetensors.index.json");
    let options = backend.save().max_shard_bytes(2 << 20);
    ckpt::save_with(&state, &index, &options).unwrap();
    let loaded = ckpt::load_with(&index, &backend.load()).unwrap();
    assert_eq!(loaded.value(), &state);
    let header = ckpt::inspect_with(&index, &backend.load()).unwrap();
    assert_eq!(header.tensors.len(), 6);
    // The shards are beside the index, named after it.
    let shard = backend.url("model-00001-of-00002.safetensors");
    let first = ckpt::load_with(&shard, &backend.load()).unwrap();
    assert!(first["embed.weight"].as_tensor().is_some());

    #[derive(ckpt::StateDict)]
    struct Two {
        fc: Linear2,
        steps: Tensor,
    }
    #[derive(ckpt::StateDict)]
    struct Linear2 {
        weight: Tensor,
        bias: Tensor,
    }
    let mut two = Two {
        fc: Linear2 {
            weight: Tensor::zeros(DType::F16, &[512, 512]).unwrap(),
            bias: Tensor::zeros(DType::BF16, &[512]).unwrap(),
        },
        steps: Tensor::scalar(0i64),
    };
    let partial = StateDictOptions::new().strict(false);
    let report = two
        .load_from_with(&index, &backend.load(), &partial)
        .unwrap();
    assert_eq!(report.loaded_keys, ["fc.weight", "fc.bias", "steps"]);
    assert_eq!(
        two.fc.weight.view(),
        state["fc.weight"].as_tensor().unwrap()
    );
    assert_eq!(two.steps, Tensor::scalar(1234i64));
}

/// ckpt's own sharded checkpoints at a URL: three ranks save, two load their rows; the
/// survey functions, `scan` and `clean` work there as on a local directory.
fn ckpt_sharded_jobs_round_trip(backend: &Backend) {
    use std::time::Duration;

    use ckpt::distributed::{self, Job, Status};
    use ckpt::shard::{Chunk, Sharded};

    #[derive(ckpt::StateDict)]
    struct Rank {
        w: Sharded,
        b: Tensor,
    }

    let shape = [96u64, 64];
    let whole = Tensor::from_vec(noise(96 * 64, 7), &[96, 64]).unwrap();
    let bias = Tensor::from_vec(noise(64, 8), &[64]).unwrap();
    let save = |dir: &str, ranks: &[usize], timeout: Duration| -> Vec<bool> {
        let options = backend.save();
        std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|&rank| {
                    let (whole, bias, options) = (&whole, &bias, &options);
                    s.spawn(move || {
                        let rows = Chunk::split(&shape, 0, 3).unwrap().remove(rank);
                        let w = Sharded::from_whole(&whole.view(), vec![rows]).unwrap();
                        let state = Rank { w, b: bias.clone() };
                        let job = Job::new(rank, 3).timeout(timeout).block_size(4096);
                        distributed::save(&state.state_dict(), dir, &job, options).is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let remote = backend.load().object_store;
    let dir = backend.url("run/step-1/");
    assert_eq!(save(&dir, &[0, 1, 2], Duration::from_secs(60)), [true; 3]);
    assert_eq!(
        distributed::status_with(&dir, &remote).unwrap(),
        Status::Complete { world_size: 3 }
    );
    let summary = distributed::inspect_with(&dir, &backend.load()).unwrap();
    assert_eq!(summary.tensors.len(), 2);
    let verified = distributed::verify_with(&dir, &backend.load()).unwrap();
    assert!(verified.damaged.is_empty());
    assert_eq!(verified.bytes, (96 * 64 + 64) * 4);
    for (rank, rows) in Chunk::split(&shape, 0, 2).unwrap().into_iter().enumerate() {
        let mut mine = std::collections::BTreeMap::from([(
            "w".to_owned(),
            Sharded::zeros(DType::F32, shape.to_vec(), vec![rows.clone()]).unwrap(),
        )]);
        let partial = StateDictOptions::new().strict(false);
        let loaded = distributed::load_with(&mut mine, &dir, &partial, &backend.load()).unwrap();
        assert_eq!(loaded.report.unexpected_keys, ["b"], "rank {rank}");
        let expected = Sharded::from_whole(&whole.view(), vec![rows]).unwrap();
        assert!(mine["w"] == expected, "rank {rank} of 2: the rows saved");
    }

    // Rank 2 never saves: an incomplete checkpoint, which `clean` empties.
    let dir = backend.url("run/step-2/");
    assert_eq!(
        save(&dir, &[0, 1], Duration::from_millis(300)),
        [false, false]
    );
    assert_eq!(
        distributed::status_with(&dir, &remote).unwrap(),
        Status::Incomplete {
            present: vec![0, 1],
            world_size: Some(3),
            missing: vec![2],
        }
    );
    // A scan of the run finds both, by their sub-prefixes, with their files' sizes.
    let found = distributed::scan_with(backend.url("run/"), &remote).unwrap();
    let shown: Vec<String> = found.iter().map(|f| f.dir.to_string()).collect();
    let url_of = |name: &str| url_shown(&backend.url(name));
    assert_eq!(
        shown
            .iter()
            .map(|s| s.trim_end_matches('/'))
            .collect::<Vec<_>>(),
        [url_of("run/step-1"), url_of("run/step-2")],
        "{shown:?}"
    );
    assert_eq!(found[0].status, Status::Complete { world_size: 3 });
    assert!(matches!(found[1].status, Status::Incomplete { .. }));
    assert_eq!(
        found[1]
            .files
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>(),
        distributed::files_with(&dir, &remote).unwrap()
    );
    let data = found[0]
        .files
        .iter()
        .find(|(n, _)| n == "rank-1.ckpt")
        .unwrap();
    assert!(data.1 > 96 / 3 * 64 * 4, "{data:?}");
    assert!(
        found[0].clean(&remote).is_err(),
        "a committed one is refused"
    );
    let removed = found[1].clean(&remote).unwrap();
    assert!(removed.contains(&"save.json".to_owned()), "{removed:?}");
    assert!(removed.contains(&"rank-1.ckpt".to_owned()), "{removed:?}");
    assert!(distributed::files_with(&dir, &remote).unwrap().is_empty());
    // The committed one is untouched, and refused.
    let dir = backend.url("run/step-1/");
    assert!(distributed::clean_with(&dir, &remote).is_err());
    assert_eq!(distributed::files_with(&dir, &remote).unwrap().len(), 8);
}

fn dcp_directories_round_trip(backend: &Backend) {
    use std::collections::HashMap;

    use ckpt::shard::Chunk;

    // Two ranks, each with half the rows of `model.w`, then the coordinator's commit.
    // A directory at a URL ends in `/`: object stores have only names sharing a prefix.
    let dir = backend.url("step-100/");
    let options = backend.save();
    let w: Vec<f64> = (0..8).map(f64::from).collect();
    let mut parts = Vec::new();
    for (rank, rows) in Chunk::split(&[4, 2], 0, 2).unwrap().into_iter().enumerate() {
        let half: Vec<f32> = (0..4).map(|i| (4 * rank + i) as f32).collect();
        let local = Tensor::from_vec(half, &[2, 2]).unwrap();
        let chunks = HashMap::from([("model.w".to_owned(), rows)]);
        let state = dict! { "model" => dict! { "w" => local }, "step" => 100 };
        let plan = ckpt::dcp::plan_rank(&state, &dir, rank, &chunks).unwrap();
        parts.push(ckpt::dcp::write_rank(&state, &dir, &plan, &options).unwrap());
    }
    // The data is there, but the directory is no checkpoint until `.metadata` is.
    let err = ckpt::load_with(&dir, &backend.load()).unwrap_err();
    assert!(err.to_string().contains("step-100"), "{err}");
    ckpt::dcp::commit(&dir, &parts, &options).unwrap();

    let loaded = ckpt::load_with(&dir, &backend.load()).unwrap();
    let loaded_w = loaded["model"]["w"].as_tensor().unwrap();
    assert_eq!(
        (loaded_w.shape(), loaded_w.to_f64_vec().unwrap()),
        (&[4, 2][..], w)
    );
    assert_eq!(loaded["step"].as_i64(), Some(100));
    let header = ckpt::inspect_with(&dir, &backend.load()).unwrap();
    assert_eq!(header.tensors.len(), 1);
    // Resharded, columns 1..2 for one rank of another job.
    let mine = HashMap::from([(
        "model.w".to_owned(),
        Chunk::split(&[4, 2], 1, 2).unwrap().remove(1),
    )]);
    let local = ckpt::dcp::load_shards(&dir, &mine, &backend.load()).unwrap();
    assert_eq!(
        local["model.w"].view().to_f64_vec().unwrap(),
        [1., 3., 5., 7.]
    );
    // And into a model.
    let mut model = std::collections::BTreeMap::from([(
        "w".to_owned(),
        Tensor::zeros(DType::F32, &[4, 2]).unwrap(),
    )]);
    let only = StateDictOptions::new().key_map(KeyMap::new().select_prefix("model."));
    let _ = model
        .load_from_with(&dir, &backend.load(), &only.strict(false))
        .unwrap();
    assert_eq!(model["w"].view(), loaded_w);
}

fn background_saves_reach_the_store(backend: &Backend) {
    let mut weight = Tensor::from(Array2::from_shape_fn((300, 300), |(i, j)| (i * j) as f32));
    let url = backend.url("async.ckpt");
    let handle = ckpt::save_async_with(dict! { "w" => &weight }, &url, &backend.save());
    weight.array_mut::<f32>().unwrap()[[0, 1]] = -1.0; // training goes on
    handle.wait().unwrap();
    let saved = ckpt::load_with(&url, &backend.load()).unwrap();
    assert_eq!(
        saved["w"].as_tensor().unwrap().to_f64_vec().unwrap()[1],
        0.0
    );
}

/// A format that writes `len` bytes and then fails, as a save whose process runs out of
/// something midway would.
pub(crate) struct Failing(pub(crate) usize);

impl ckpt::format::Format for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &[]
    }
    fn detect(&self, _: &[u8], _: u64) -> bool {
        false
    }
    fn open(
        &self,
        _: std::sync::Arc<dyn ckpt::storage::Source>,
    ) -> Result<Box<dyn ckpt::format::Opened>, ckpt::format::FormatError> {
        unreachable!("never read")
    }
    fn write(
        &self,
        _: &Value<'_>,
        sink: &mut dyn ckpt::storage::Sink,
    ) -> Result<(), ckpt::format::FormatError> {
        let io = |e| ckpt::format::FormatError::writing("failing", e);
        for chunk in noise(self.0 / 4, 9).chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
            sink.write_all(&bytes).map_err(io)?;
        }
        Err(io(std::io::Error::other("out of something")))
    }
}

fn a_failed_save_leaves_the_previous_checkpoint(backend: &Backend) {
    let url = backend.url("kept.ckpt");
    let previous = checkpoint();
    ckpt::save_with(&previous, &url, &backend.save()).unwrap();
    for len in [1000, 3 * PART + 17] {
        let failing = backend.save().format(Failing(len));
        let err = ckpt::save_with(&previous, &url, &failing).unwrap_err();
        assert!(err.to_string().starts_with(&url_shown(&url)), "{err}");
        assert!(err.to_string().contains("out of something"), "{err}");
        assert_eq!(
            ckpt::load_with(&url, &backend.load()).unwrap().value(),
            &previous
        );
    }
}

fn damaged_objects_are_the_errors_of_damaged_files(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let value = checkpoint();
    let good = dir.path().join("good.ckpt");
    ckpt::save(&value, &good).unwrap();
    let good = std::fs::read(good).unwrap();
    let mut flipped = good.clone();
    flipped[4096] ^= 1; // in "model.embed.weight"
    let truncated = good[..good.len() - 10].to_vec();
    for (name, bytes) in [("flipped.ckpt", flipped), ("truncated.ckpt", truncated)] {
        let local = dir.path().join(name);
        std::fs::write(&local, &bytes).unwrap();
        let url = backend.url(name);
        raw::put(&url, &bytes, &backend.save());
        let expected = ckpt::load(&local).unwrap_err();
        let actual = ckpt::load_with(&url, &backend.load()).unwrap_err();
        assert_same_damage(&expected, &actual, name);

        let into = |path: &str| {
            let mut model = dict_model();
            model
                .load_from_with(path, &backend.load(), &model_options())
                .unwrap_err()
        };
        let expected = into(local.to_str().unwrap());
        let actual = into(&url);
        assert_same_damage(&expected, &actual, name);
    }
}

/// A model of the checkpoint's `model.embed.weight` only.
fn dict_model() -> std::collections::BTreeMap<String, Tensor> {
    std::collections::BTreeMap::from([(
        "weight".to_owned(),
        Tensor::zeros(DType::F32, &[1024, 1536]).unwrap(),
    )])
}

fn model_options() -> StateDictOptions {
    StateDictOptions::new()
        .strict(false)
        .key_map(KeyMap::new().select_prefix("model.embed."))
}

/// Both are `Error::Corrupt` with the same key and problem; only the location differs.
fn assert_same_damage(expected: &Error, actual: &Error, name: &str) {
    let (
        Error::Corrupt {
            key: k1,
            problem: p1,
            ..
        },
        Error::Corrupt {
            key: k2,
            problem: p2,
            ..
        },
    ) = (expected, actual)
    else {
        panic!("{name}: {expected} vs {actual}");
    };
    assert_eq!((k1, p1), (k2, p2), "{name}");
}

fn a_missing_object_is_an_error_naming_it(backend: &Backend) {
    let url = backend.url("never-saved.ckpt");
    let err = ckpt::load_with(&url, &backend.load()).unwrap_err();
    let Error::Io { location, source } = &err else {
        panic!("{err}")
    };
    assert_eq!(location.to_string(), url_shown(&url));
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().starts_with(&url_shown(&url)), "{err}");
}
