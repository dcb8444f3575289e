//! Reads are ranged: opening a checkpoint fetches its header and little more, and loading a
//! tensor or a sub-tree into a model fetches its bytes and little more, several ranges at
//! once. Counted as the bytes the S3 server sent, through a proxy.

use std::process::Command;

use ckpt::keymap::KeyMap;
use ckpt::{DType, LoadFrom, LoadOptions, StateDictOptions, Tensor, Value};

use crate::backend::{Backend, s3_options};
use crate::proxy::Proxy;
use crate::suite::noise;

/// What a load may fetch besides what it needs: the first 4 KiB, and the HTTP headers of a
/// few responses.
const SLACK: u64 = 64 << 10;

/// A state dict whose header is large (300 small tensors) beside two 8 MiB tensors.
fn wide() -> Value<'static> {
    let mut map = Value::map();
    let big = |seed| Tensor::from_vec(noise(2 << 20, seed), &[2048, 1024]).unwrap();
    map.insert("big.a", big(1));
    for i in 0..300 {
        let t = Tensor::from_vec(noise(64, i + 10), &[8, 8]).unwrap();
        map.insert(format!("layers.{}.block.{}.weight", i / 10, i % 10), t);
    }
    map.insert("big.b", big(2));
    map
}

/// The shared server behind a proxy, and options that go through it.
fn through_proxy(test: &str) -> Option<(Backend, Proxy, LoadOptions)> {
    let backend = Backend::s3(test)?;
    let proxy = Proxy::start(backend.endpoint.as_deref().unwrap());
    let options = LoadOptions::new()
        .object_store(s3_options(&proxy.endpoint, "testing", "testing").download_chunk(1 << 20));
    Some((backend, proxy, options))
}

/// The length of a file's header, from its first bytes: ckpt's format keeps it at 24..32,
/// safetensors at 0..8 (plus those 8).
fn header_len(bytes: &[u8]) -> u64 {
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    if bytes.starts_with(b"\x89CKPT") {
        u64_at(24)
    } else {
        8 + u64_at(0)
    }
}

#[test]
fn opening_fetches_the_header_only() {
    let Some((backend, proxy, options)) = through_proxy("header_only") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for name in ["wide.ckpt", "wide.safetensors"] {
        let local = dir.path().join(name);
        ckpt::save(wide(), &local).unwrap();
        let bytes = std::fs::read(&local).unwrap();
        let header = header_len(&bytes);
        let url = backend.url(name);
        ckpt::save_with(wide(), &url, &backend.save()).unwrap();

        proxy.reset();
        let inspected = ckpt::inspect_with(&url, &options).unwrap();
        let fetched = proxy.sent();
        println!(
            "{name}: {} bytes, header {header}, inspect fetched {fetched}",
            bytes.len()
        );
        assert_eq!(inspected, ckpt::inspect(&local).unwrap());
        assert!(header > 16 << 10, "{name}: a header worth measuring");
        assert!(fetched >= header, "{name}: {fetched} < {header}");
        assert!(
            fetched <= header + SLACK,
            "{name}: {fetched} > {header} + 64 KiB"
        );
    }
}

#[test]
fn a_pt_file_opens_from_its_end_records() {
    let Some((backend, proxy, options)) = through_proxy("pt_end") else {
        return;
    };
    let url = backend.url("wide.pt");
    ckpt::save_with(wide(), &url, &backend.save()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("wide.pt");
    ckpt::save(wide(), &local).unwrap();
    let len = std::fs::metadata(&local).unwrap().len();
    // Everything but the two large storages: the pickle, the small records, the directory.
    let big = 2 * (8 << 20);
    proxy.reset();
    let inspected = ckpt::inspect_with(&url, &options).unwrap();
    let fetched = proxy.sent();
    println!(
        "wide.pt: {len} bytes, {} outside the large storages, inspect fetched {fetched}",
        len - big
    );
    assert_eq!(inspected.tensors.len(), 302);
    assert!(fetched <= len - big + SLACK + 302 * 700, "{fetched}");
}

#[test]
fn a_tensor_or_a_sub_tree_fetches_its_bytes() {
    let Some((backend, proxy, options)) = through_proxy("sub_tree") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for name in ["wide.ckpt", "wide.safetensors"] {
        let url = backend.url(name);
        ckpt::save_with(wide(), &url, &backend.save()).unwrap();
        let local = dir.path().join(name);
        ckpt::save(wide(), &local).unwrap();
        let header = header_len(&std::fs::read(&local).unwrap());

        // One small tensor.
        let mut one = Tensor::zeros(DType::F32, &[8, 8]).unwrap();
        let select = StateDictOptions::new()
            .strict(false)
            .key_map(KeyMap::new().rename("layers.7.block.3.weight", ""));
        proxy.reset();
        let report = one.load_from_with(&url, &options, &select).unwrap();
        let fetched = proxy.sent();
        assert_eq!(report.loaded_keys, [""], "{name}");
        assert_eq!(
            one.view(),
            wide()["layers.7.block.3.weight"].as_tensor().unwrap()
        );
        println!("{name}: one tensor of 256 bytes fetched {fetched}, header {header}");
        assert!(fetched <= header + 256 + SLACK, "{name}: {fetched}");

        // A sub-tree: ten tensors under `layers.4.`.
        let mut block: std::collections::BTreeMap<String, Tensor> = (0..10)
            .map(|i| {
                (
                    format!("block.{i}.weight"),
                    Tensor::zeros(DType::F32, &[8, 8]).unwrap(),
                )
            })
            .collect();
        let only = StateDictOptions::new().key_map(KeyMap::new().select_prefix("layers.4."));
        proxy.reset();
        let _ = block.load_from_with(&url, &options, &only).unwrap();
        let fetched = proxy.sent();
        assert!(fetched <= header + 2560 + SLACK, "{name}: {fetched}");

        // A large tensor: its bytes and no more, whatever the GETs.
        let mut a = Tensor::zeros(DType::F32, &[2048, 1024]).unwrap();
        let select = StateDictOptions::new()
            .strict(false)
            .key_map(KeyMap::new().rename("big.a", ""));
        proxy.reset();
        let _ = a.load_from_with(&url, &options, &select).unwrap();
        let fetched = proxy.sent();
        println!("{name}: big.a (8 MiB) fetched {fetched}");
        assert!(fetched <= header + (8 << 20) + SLACK, "{name}: {fetched}");
        assert_eq!(a.view(), wide()["big.a"].as_tensor().unwrap());
    }
}

#[test]
fn a_large_tensor_comes_in_several_gets_at_once_across_a_network() {
    let Some(backend) = Backend::s3("network") else {
        return;
    };
    // 8 MB/s a connection: moving 8 MiB on one takes a second, far more than a GET's latency.
    let proxy = Proxy::throttled(backend.endpoint.as_deref().unwrap(), Some(8_000_000));
    let options = LoadOptions::new()
        .object_store(s3_options(&proxy.endpoint, "testing", "testing").download_chunk(1 << 20));
    let url = backend.url("wide.ckpt");
    ckpt::save_with(wide(), &url, &backend.save()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("wide.ckpt");
    ckpt::save(wide(), &local).unwrap();
    let header = header_len(&std::fs::read(&local).unwrap());

    let mut a = Tensor::zeros(DType::F32, &[2048, 1024]).unwrap();
    let select = StateDictOptions::new()
        .strict(false)
        .key_map(KeyMap::new().rename("big.a", ""));
    proxy.reset();
    let started = std::time::Instant::now();
    let _ = a.load_from_with(&url, &options, &select).unwrap();
    let took = started.elapsed();
    let (fetched, open) = (proxy.sent(), proxy.most_open());
    println!("big.a (8 MiB) fetched {fetched} in {took:?} over up to {open} connections at once");
    assert_eq!(a.view(), wide()["big.a"].as_tensor().unwrap());
    // The probe of 1 MiB, then the other 7 MiB in 7 GETs at once: nothing fetched twice.
    assert!(open >= 4, "{open} connection(s)");
    assert!(fetched <= header + (8 << 20) + SLACK, "{fetched}");
}

#[test]
fn the_cli_inspects_the_header_only() {
    let Some((backend, proxy, _)) = through_proxy("cli") else {
        return;
    };
    let url = backend.url("wide.ckpt");
    ckpt::save_with(wide(), &url, &backend.save()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("wide.ckpt");
    ckpt::save(wide(), &local).unwrap();
    let header = header_len(&std::fs::read(&local).unwrap());
    proxy.reset();
    // As a user would: the endpoint and credentials from the environment.
    let output = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["inspect", &url])
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("layers.29.block.9.weight"), "{stdout}");
    let fetched = proxy.sent();
    println!("ckpt inspect {url}: fetched {fetched}, header {header}");
    assert!(fetched <= header + SLACK, "{fetched}");
}
