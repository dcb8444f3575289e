//! Writes stream: a 1 GiB checkpoint goes up with memory bounded by part size × upload
//! concurrency + 64 MiB, whatever its size. Measured in a process of its own, as the peak of
//! its resident memory (`VmHWM`, reset once the checkpoint is built) above what it held before
//! saving.

use std::process::Command;

use ckpt::storage::ObjectStoreOptions;
use ckpt::{LoadOptions, SaveOptions, Tensor, dict};

use crate::backend::Backend;
use crate::moto;

const CHILD: &str = "CKPT_MEMORY_CHILD";
const GIB: usize = 1 << 30;

/// A field of `/proc/self/status`, in bytes.
fn status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field}"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// The defaults: 16 MiB parts, 8 in memory. moto assembles a completed upload in memory
/// before it answers, which for 1 GiB on a busy machine takes longer than a minute without a
/// byte (S3 sends whitespace meanwhile), so the test waits longer.
fn options(endpoint: &str) -> ObjectStoreOptions {
    crate::backend::s3_options(endpoint, "testing", "testing")
        .part_size(ObjectStoreOptions::new().part_size)
        .upload_concurrency(ObjectStoreOptions::new().upload_concurrency)
        .with("read_timeout", "300s")
}

#[test]
fn a_1_gib_save_stays_within_the_memory_bound() {
    if !cfg!(target_os = "linux") {
        return; // VmHWM and its reset are Linux's
    }
    if let Ok(url) = std::env::var(CHILD) {
        let endpoint = std::env::var("CKPT_CHILD_ENDPOINT").unwrap();
        // Distinct values, built in place: a page of zeros would not be resident.
        let values: Vec<f32> = (0..GIB / 4).map(|i| i as f32).collect();
        let big = Tensor::from_vec(values, &[GIB / 4]).unwrap();
        let before = status("VmRSS:");
        // Resets VmHWM to the current resident size.
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let save = SaveOptions::new().object_store(options(&endpoint));
        ckpt::save_with(dict! { "big" => &big }, &url, &save).unwrap();
        println!("PEAK-ABOVE {}", status("VmHWM:") - before);
        return;
    }
    let Some(backend) = Backend::s3("one_gib") else {
        return;
    };
    let endpoint = backend.endpoint.clone().unwrap();
    let url = backend.url("big.ckpt");
    let name =
        crate::common::test_name(module_path!(), "a_1_gib_save_stays_within_the_memory_bound");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &url)
        .env("CKPT_CHILD_ENDPOINT", &endpoint)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let peak: u64 = stdout
        .lines()
        .find_map(|l| l.split("PEAK-ABOVE ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    let bound = options(&endpoint).memory_bound() as u64;
    println!(
        "1 GiB saved with {} MiB above the checkpoint; bound {} MiB",
        peak >> 20,
        bound >> 20
    );
    assert!(peak <= bound, "{peak} > {bound}");

    let header =
        ckpt::inspect_with(&url, &LoadOptions::new().object_store(options(&endpoint))).unwrap();
    assert_eq!(header.tensors[0].nbytes, GIB as u64);
    // The server keeps objects in memory; give this one back.
    let key = url.trim_start_matches(&format!("s3://{}", crate::backend::BUCKET));
    let (status, _) = moto::request(
        &endpoint,
        "DELETE",
        &format!("/{}{key}", crate::backend::BUCKET),
    );
    assert_eq!(status, 204);
}

#[test]
fn a_save_sends_several_parts_at_once() {
    let Some(backend) = Backend::s3("parts_at_once") else {
        return;
    };
    let proxy = crate::proxy::Proxy::start(backend.endpoint.as_deref().unwrap());
    let options =
        crate::backend::s3_options(&proxy.endpoint, "testing", "testing").upload_concurrency(6);
    let big = Tensor::from_vec(crate::suite::noise(8 << 20, 6), &[8 << 20]).unwrap();
    let url = backend.url("parts.ckpt");
    ckpt::save_with(
        dict! { "big" => &big },
        &url,
        &SaveOptions::new().object_store(options.clone()),
    )
    .unwrap();
    // Six parts of 5 MiB in memory: the first, the one filling, four uploading.
    let open = proxy.most_open();
    println!("32 MiB saved over up to {open} connections at once");
    assert!(open >= 3, "{open}");
    assert!(proxy.received() >= 32 << 20);
    let loaded = ckpt::load_with(&url, &LoadOptions::new().object_store(options)).unwrap();
    assert_eq!(loaded["big"].as_tensor().unwrap(), big.view());
}
