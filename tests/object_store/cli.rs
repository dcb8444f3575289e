//! The `ckpt` tool on sharded checkpoints at URLs: `clean` lists and removes what a save that
//! did not finish left, `convert` consolidates a committed checkpoint into a file (local, or
//! at a URL) reading it by ranges, and splits a file into a directory at a URL. The tool is
//! another process, so it reaches only stores outside this one: `file://` URLs, and the S3
//! server with its endpoint and credentials from the environment, as a user's would be.

use std::process::{Command, Output};
use std::time::Duration;

use ckpt::distributed::{self, Job, Status, Whole};
use ckpt::shard::{Chunk, Sharded};
use ckpt::state::TensorMap;
use ckpt::{StateDictOptions, Tensor};

use crate::backend::Backend;
use crate::proxy::Proxy;
use crate::suite::noise;

#[test]
fn file_urls() {
    sharded_directories_at_urls(&Backend::file("cli_file_urls"), None);
}

#[test]
fn s3() {
    let Some(backend) = Backend::s3("cli_s3") else {
        return;
    };
    let proxy = Proxy::start(backend.endpoint.as_deref().unwrap());
    sharded_directories_at_urls(&backend, Some(&proxy));
}

/// `ckpt ARGS`, reaching the backend's S3 server (through `proxy`, if given) as a user would:
/// the endpoint and credentials from the environment.
fn ckpt(backend: &Backend, proxy: Option<&Proxy>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ckpt"));
    command.args(args);
    if let Some(endpoint) = &backend.endpoint {
        let endpoint = proxy.map_or(endpoint.as_str(), |p| p.endpoint.as_str());
        command
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1");
    }
    command.output().unwrap()
}

/// `ckpt ARGS`, which must succeed; its standard output.
fn ckpt_ok(backend: &Backend, proxy: Option<&Proxy>, args: &[&str]) -> String {
    let output = ckpt(backend, proxy, args);
    assert!(
        output.status.success(),
        "ckpt {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const W: [u64; 2] = [96, 64];
const BIG: [u64; 2] = [512, 1024];

/// The tensors every test saves: `w` and `big` sharded by rows over 3 ranks, `b` replicated.
struct Tensors {
    w: Tensor,
    big: Tensor,
    b: Tensor,
}

fn tensors() -> Tensors {
    let shape = |s: [u64; 2]| [s[0] as usize, s[1] as usize];
    Tensors {
        w: Tensor::from_vec(noise(96 * 64, 21), &shape(W)).unwrap(),
        big: Tensor::from_vec(noise(512 * 1024, 22), &shape(BIG)).unwrap(),
        b: Tensor::from_vec(noise(64, 23), &[64]).unwrap(),
    }
}

/// Ranks `ranks` of a job of 3 save into `dir`; whether each committed.
fn save(
    backend: &Backend,
    t: &Tensors,
    dir: &str,
    ranks: &[usize],
    timeout: Duration,
) -> Vec<bool> {
    let options = backend.save();
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .iter()
            .map(|&rank| {
                let options = &options;
                s.spawn(move || {
                    let part = |whole: &Tensor, shape: &[u64; 2]| {
                        let rows = Chunk::split(shape, 0, 3).unwrap().remove(rank);
                        Sharded::from_whole(&whole.view(), vec![rows]).unwrap()
                    };
                    let (w, big) = (part(&t.w, &W), part(&t.big, &BIG));
                    let mut state = TensorMap::new();
                    state.insert_sharded("w", &w);
                    state.insert_sharded("big", &big);
                    state.insert("b", t.b.view());
                    let job = Job::new(rank, 3).timeout(timeout).block_size(4096);
                    distributed::save(&state, dir, &job, options).is_ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Whether `tensor` holds the bytes of `expected`.
fn same_bytes(tensor: &Tensor, expected: &Tensor) -> bool {
    tensor.dtype() == expected.dtype()
        && tensor.shape() == expected.shape()
        && tensor.to_le_bytes().unwrap() == expected.to_le_bytes().unwrap()
}

fn sharded_directories_at_urls(backend: &Backend, proxy: Option<&Proxy>) {
    let t = tensors();
    let remote = backend.load().object_store;
    let run = backend.url("run/");
    let (step1, step2) = (backend.url("run/step-1/"), backend.url("run/step-2/"));
    assert_eq!(
        save(backend, &t, &step1, &[0, 1, 2], Duration::from_secs(60)),
        [true; 3]
    );
    // Rank 2 never comes: ranks 0 and 1 leave their files, and no commit.
    assert_eq!(
        save(backend, &t, &step2, &[0, 1], Duration::from_millis(300)),
        [false; 2]
    );
    let left = distributed::files_with(&step2, &remote).unwrap();
    assert!(left.contains(&"rank-1.ckpt".to_owned()), "{left:?}");
    let committed = distributed::files_with(&step1, &remote).unwrap();
    assert_eq!(committed.len(), 8, "{committed:?}");

    // `clean` lists it, and removes nothing without --yes.
    let listed = ckpt_ok(backend, proxy, &["clean", &run]);
    let line = listed
        .lines()
        .find(|l| l.starts_with("incomplete: "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("step-2"), "{listed}");
    assert!(!line.contains("step-1"), "{listed}");
    assert!(
        line.contains("rank(s) [0, 1] of 3 present, [2] missing"),
        "{listed}"
    );
    assert!(
        line.contains(&format!("{} file(s)", left.len())),
        "{listed}"
    );
    assert!(
        listed.contains("1 incomplete sharded checkpoint(s), 1 committed kept; run with --yes"),
        "{listed}"
    );
    assert_eq!(distributed::files_with(&step2, &remote).unwrap(), left);

    // With --yes, it is removed; the committed checkpoint is untouched.
    let removed = ckpt_ok(backend, proxy, &["clean", &run, "--yes"]);
    assert!(
        removed.contains("removed: ") && removed.contains("step-2"),
        "{removed}"
    );
    assert!(
        removed.contains("1 incomplete sharded checkpoint(s) removed, 1 committed kept"),
        "{removed}"
    );
    // At a URL its objects are gone; a local directory left empty is removed too.
    match distributed::files_with(&step2, &remote) {
        Ok(files) => assert!(files.is_empty(), "{files:?}"),
        Err(distributed::Error::Io { source, .. }) if backend.name == "file" => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(distributed::files_with(&step1, &remote).unwrap(), committed);
    assert_eq!(
        distributed::status_with(&step1, &remote).unwrap(),
        Status::Complete { world_size: 3 }
    );
    let again = ckpt_ok(backend, proxy, &["clean", &run]);
    assert!(
        again.contains("0 incomplete sharded checkpoint(s), 1 committed kept"),
        "{again}"
    );

    // `convert` consolidates the committed one into a local file: every tensor's bytes.
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("whole.safetensors");
    let file_arg = file.to_str().unwrap();
    ckpt_ok(backend, proxy, &["convert", &step1, file_arg]);
    let loaded = ckpt::load(&file).unwrap();
    let tensor = |checkpoint: &ckpt::Checkpoint, key: &str| {
        checkpoint.value()[key]
            .as_tensor()
            .unwrap()
            .to_tensor()
            .unwrap()
    };
    for (key, expected) in [("w", &t.w), ("big", &t.big), ("b", &t.b)] {
        assert!(same_bytes(&tensor(&loaded, key), expected), "{key}");
    }

    // Only the blocks of what is selected are fetched: ranges, not the whole objects.
    if let Some(proxy) = proxy {
        let small = local.path().join("w.ckpt");
        proxy.reset();
        ckpt_ok(
            backend,
            Some(proxy),
            &["convert", &step1, small.to_str().unwrap(), "--select", "w"],
        );
        let fetched = proxy.sent();
        let w_bytes = 96 * 64 * 4;
        let all: u64 = (96 * 64 + 512 * 1024 + 64) * 4;
        println!(
            "ckpt convert --select w: fetched {fetched} of {all} bytes of tensor data, w is {w_bytes}"
        );
        // Manifests (every block's and tile's checksum, about 0.7 MiB here), marker and
        // headers besides w's blocks; never `big`'s 2 MiB.
        assert!(fetched < w_bytes + (1 << 20), "{fetched}");
        // The selected tensor is the file's value itself.
        let selected = ckpt::load(&small).unwrap();
        let selected = selected.value().as_tensor().unwrap().to_tensor().unwrap();
        assert!(same_bytes(&selected, &t.w));
    }

    // Into a file at a URL.
    let url = backend.url("whole.ckpt");
    ckpt_ok(backend, proxy, &["convert", &step1, &url]);
    let loaded = ckpt::load_with(&url, &backend.load()).unwrap();
    for (key, expected) in [("w", &t.w), ("big", &t.big), ("b", &t.b)] {
        assert!(
            same_bytes(&tensor(&loaded, key), expected),
            "{key} at {url}"
        );
    }

    // A file split into a directory at a URL, which any sharding loads.
    let split = backend.url("split/");
    ckpt_ok(
        backend,
        proxy,
        &["convert", file_arg, &split, "--shards", "2"],
    );
    assert_eq!(
        distributed::status_with(&split, &remote).unwrap(),
        Status::Complete { world_size: 2 }
    );
    let mut whole = Whole::open_with(&split, &backend.load()).unwrap();
    for (key, expected) in [("w", &t.w), ("big", &t.big), ("b", &t.b)] {
        assert!(
            same_bytes(&whole.read(key).unwrap(), expected),
            "{key} in {split}"
        );
    }
    let mut rows = std::collections::BTreeMap::from([(
        "w".to_owned(),
        Sharded::zeros(
            ckpt::DType::F32,
            W.to_vec(),
            vec![Chunk::split(&W, 0, 3).unwrap().remove(1)],
        )
        .unwrap(),
    )]);
    let lenient = StateDictOptions::new().strict(false);
    distributed::load_with(&mut rows, &split, &lenient, &backend.load()).unwrap();
    let expected =
        Sharded::from_whole(&t.w.view(), vec![Chunk::split(&W, 0, 3).unwrap().remove(1)]).unwrap();
    assert!(
        rows["w"] == expected,
        "rank 1 of 3 reads its rows of a split of 2"
    );
    // A second split there is refused: the directory holds a sharded checkpoint's files.
    let output = ckpt(
        backend,
        proxy,
        &["convert", file_arg, &split, "--shards", "2"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--shards writes a new directory"),
        "{stderr}"
    );
    assert_eq!(
        distributed::status_with(&split, &remote).unwrap(),
        Status::Complete { world_size: 2 }
    );
}
