//! Workload W saved to and loaded from object stores by ckpt, beside plain `object_store`
//! calls that move the same bytes, in the same run: a local S3 server (moto, started here on
//! 127.0.0.1) and the in-process `memory://` store, which shows ckpt's own cost without the
//! server's.
//!
//! `cargo bench --features object-store --bench object_store`; the server is found as the
//! tests find it (`CKPT_MOTO_SERVER`, else `target/moto-venv`). `CKPT_BENCH_MB` scales W
//! down, `CKPT_BENCH_REPEAT` sets the repetitions (median reported), `CKPT_BENCH_STORE`
//! (`s3` or `memory`) runs one store only. Each figure is one line
//! `bench STORE NAME SECONDS GIB_PER_S`; peak memory is measured in a separate process.
//!
//! moto reads the whole object for every ranged GET and holds it while it answers, so against
//! it each of a load's GETs costs the object's size in time and in the server's memory: scale
//! W down there (`CKPT_BENCH_MB=256`) on a machine of less than 32 GiB.

use std::io::Cursor;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use ckpt::format::{Format, Native};
use ckpt::storage::ObjectStoreOptions;
use ckpt::{LoadFrom, LoadOptions, SaveOptions, StateDict, StateDictOptions};
use futures_util::{StreamExt, stream};
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

#[path = "workload/mod.rs"]
mod workload;

#[path = "../tests/object_store/moto.rs"]
#[allow(dead_code)]
mod moto;

#[path = "../tests/object_store/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use workload::Gpt2;

const BUCKET: &str = "bench";

/// What ckpt is given: the defaults, and for S3 the server's address and test credentials.
fn options(endpoint: Option<&str>) -> ObjectStoreOptions {
    let defaults = ObjectStoreOptions::new().from_env(false);
    match endpoint {
        Some(endpoint) => defaults
            .with("endpoint", endpoint)
            .with("allow_http", "true")
            .with("region", "us-east-1")
            .with("access_key_id", "testing")
            .with("secret_access_key", "testing"),
        None => defaults,
    }
}

/// The same store for the plain calls.
fn plain_store(endpoint: Option<&str>) -> Arc<dyn ObjectStore> {
    match endpoint {
        Some(endpoint) => Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(endpoint)
                .with_bucket_name(BUCKET)
                .with_region("us-east-1")
                .with_access_key_id("testing")
                .with_secret_access_key("testing")
                .with_allow_http(true)
                .build()
                .unwrap(),
        ),
        None => Arc::new(InMemory::new()),
    }
}

/// Uploads `bytes` as an application would with `object_store` alone: `WriteMultipart` with
/// ckpt's part size and as many parts in flight as ckpt keeps uploading.
async fn plain_upload(
    store: &dyn ObjectStore,
    path: &Path,
    bytes: &[u8],
    defaults: &ObjectStoreOptions,
) {
    let upload = store.put_multipart(path).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, defaults.part_size);
    for chunk in bytes.chunks(1 << 20) {
        writer
            .wait_for_capacity(defaults.upload_concurrency - 2)
            .await
            .unwrap();
        writer.write(chunk);
    }
    writer.finish().await.unwrap();
}

/// Downloads the object as ckpt fetches a whole object: `download_concurrency` ranged GETs at
/// once, each of at least `download_chunk` bytes, copied into one buffer.
async fn plain_download(
    store: &dyn ObjectStore,
    path: &Path,
    len: u64,
    defaults: &ObjectStoreOptions,
) -> Vec<u8> {
    let concurrency = defaults.download_concurrency as u64;
    let piece = (defaults.download_chunk as u64).max(len.div_ceil(concurrency));
    let ranges: Vec<_> = (0..len)
        .step_by(piece as usize)
        .map(|at| at..(at + piece).min(len))
        .collect();
    let mut out = vec![0u8; len as usize];
    let mut parts = stream::iter(ranges)
        .map(|r| async move { (r.start, store.get_range(path, r).await) })
        .buffer_unordered(defaults.download_concurrency);
    while let Some((at, bytes)) = parts.next().await {
        let bytes = bytes.unwrap();
        out[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
    }
    out
}

/// One GET of the whole object, streamed into one buffer.
async fn plain_get(store: &dyn ObjectStore, path: &Path, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    let mut body = store.get(path).await.unwrap().into_stream();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Runs each case `repeat` times, taking turns, and prints each median.
fn run(
    store: &str,
    repeat: usize,
    bytes: usize,
    cases: &mut [(&str, &mut dyn FnMut())],
) -> Vec<f64> {
    let mut times = vec![Vec::new(); cases.len()];
    for _ in 0..repeat {
        for (case, (_, f)) in cases.iter_mut().enumerate() {
            let start = Instant::now();
            f();
            times[case].push(start.elapsed().as_secs_f64());
        }
    }
    let gib = bytes as f64 / (1u64 << 30) as f64;
    cases
        .iter()
        .zip(times)
        .map(|((name, _), mut times)| {
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!("bench {store} {name} {median:.3} {:.3}", gib / median);
            println!(
                "  spread {store} {name}: min {:.3} max {:.3}",
                times[0],
                times[times.len() - 1]
            );
            median
        })
        .collect()
}

/// Peak resident memory of this process, in bytes.
fn status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        << 10
}

/// In a child process: build W, then save it to (or load it from) `url`, and print the peak
/// of resident memory above what the process held before.
fn child(how: &str, url: &str, endpoint: &str, mb: Option<f64>) {
    let mut model = Gpt2::new(mb);
    let before = status("VmRSS:");
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let remote = options(Some(endpoint));
    match how {
        "save" => ckpt::save_with(
            model.state_dict(),
            url,
            &SaveOptions::new().object_store(remote),
        )
        .unwrap(),
        "load_from" => {
            let load = LoadOptions::new().object_store(remote);
            let _ = model
                .load_from_with(url, &load, &StateDictOptions::new())
                .unwrap();
        }
        other => panic!("unknown case {other}"),
    }
    println!("{}", status("VmHWM:") - before);
}

fn measure_peak(how: &str, url: &str, endpoint: &str) -> Option<u64> {
    let output = Command::new(std::env::current_exe().ok()?)
        .env("CKPT_BENCH_CHILD", how)
        .env("CKPT_BENCH_CHILD_URL", url)
        .env("CKPT_BENCH_CHILD_ENDPOINT", endpoint)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().parse().ok().or_else(|| {
        eprintln!(
            "peak-memory child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        None
    })
}

fn main() {
    let mb = std::env::var("CKPT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Ok(how) = std::env::var("CKPT_BENCH_CHILD") {
        let url = std::env::var("CKPT_BENCH_CHILD_URL").unwrap();
        let endpoint = std::env::var("CKPT_BENCH_CHILD_ENDPOINT").unwrap();
        return child(&how, &url, &endpoint, mb);
    }
    let repeat: usize = std::env::var("CKPT_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let Some(endpoint) = moto::shared() else {
        return; // `moto::binary` said why
    };
    moto::create_bucket(endpoint, BUCKET);
    let model = Gpt2::new(mb);
    let state = model.state_dict();
    println!(
        "workload W: {} tensors, {} bytes",
        state.len(),
        state.nbytes()
    );
    let value = ckpt::Value::from(state);
    let mut file = Cursor::new(Vec::new());
    Native.write(&value, &mut file).unwrap();
    let bytes = file.into_inner();
    let len = bytes.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let defaults = ObjectStoreOptions::new();

    let only = std::env::var("CKPT_BENCH_STORE").ok();
    for (store_name, endpoint) in [("s3", Some(endpoint)), ("memory", None)] {
        if only.as_deref().is_some_and(|only| only != store_name) {
            continue;
        }
        let store = plain_store(endpoint);
        let url = match endpoint {
            Some(_) => format!("s3://{BUCKET}/ckpt.ckpt"),
            None => "memory://bench/ckpt.ckpt".to_owned(),
        };
        let plain_path = Path::from("plain.bin");
        let remote = options(endpoint);
        let save = SaveOptions::new().object_store(remote.clone());
        let load = LoadOptions::new().object_store(remote.clone());
        let trusted = load.clone().verify_checksums(false);
        // One GET per span of needed bytes, as a plain `get` is.
        let one_get = LoadOptions::new().object_store(remote.clone().download_concurrency(1));
        let saves = run(
            store_name,
            repeat,
            len,
            &mut [
                ("plain_upload", &mut || {
                    runtime.block_on(plain_upload(&*store, &plain_path, &bytes, &defaults));
                }),
                ("ckpt_save", &mut || {
                    ckpt::save_with(&value, &url, &save).unwrap();
                }),
            ],
        );
        let target = std::cell::RefCell::new(Gpt2::new(mb));
        let loads = run(
            store_name,
            repeat,
            len,
            &mut [
                ("plain_download", &mut || {
                    let got = runtime.block_on(plain_download(
                        &*store,
                        &plain_path,
                        len as u64,
                        &defaults,
                    ));
                    assert_eq!(got.len(), len);
                }),
                ("plain_get", &mut || {
                    let got = runtime.block_on(plain_get(&*store, &plain_path, len as u64));
                    assert_eq!(got.len(), len);
                }),
                ("ckpt_load_from", &mut || {
                    let _ = target
                        .borrow_mut()
                        .load_from_with(&url, &load, &StateDictOptions::new())
                        .unwrap();
                }),
                ("ckpt_load_from_trusted", &mut || {
                    let _ = target
                        .borrow_mut()
                        .load_from_with(&url, &trusted, &StateDictOptions::new())
                        .unwrap();
                }),
                ("ckpt_load_from_one_get", &mut || {
                    let _ = target
                        .borrow_mut()
                        .load_from_with(&url, &one_get, &StateDictOptions::new())
                        .unwrap();
                }),
                ("ckpt_load", &mut || {
                    drop(ckpt::load_with(&url, &load).unwrap());
                }),
            ],
        );
        println!(
            "ratio {store_name} (throughput, target >= 0.9): ckpt_save {:.2} x plain_upload; \
             ckpt_load_from {:.2} x plain_download; ckpt_load_from_one_get {:.2} x plain_get",
            saves[0] / saves[1],
            loads[0] / loads[2],
            loads[1] / loads[4],
        );
        if let Some(endpoint) = endpoint {
            // Lazy open, counted as the bytes the server sent, through a proxy.
            let proxy = proxy::Proxy::start(endpoint);
            let through = LoadOptions::new().object_store(options(Some(&proxy.endpoint)));
            proxy.reset();
            let start = Instant::now();
            let header = ckpt::inspect_with(&url, &through).unwrap();
            let took = start.elapsed().as_secs_f64();
            let header_len = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
            println!(
                "lazy_open {store_name}: {} tensors in {took:.4} s, {} bytes fetched for a header of {header_len}",
                header.tensors.len(),
                proxy.sent()
            );
            let bound = remote.memory_bound() as u64;
            if let Some(peak) = measure_peak("save", &url, endpoint) {
                println!(
                    "peak {store_name} ckpt_save: {:.1} MiB above the model; bound {:.1} MiB",
                    peak as f64 / 1048576.0,
                    bound as f64 / 1048576.0
                );
            }
            if let Some(peak) = measure_peak("load_from", &url, endpoint) {
                println!(
                    "peak {store_name} ckpt_load_from: {:.1} MiB above the model",
                    peak as f64 / 1048576.0
                );
            }
        }
    }
}
