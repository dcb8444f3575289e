//! What only a real server shows going wrong: an upload killed midway, a failed upload's
//! parts, the server stopping during a load, a busy server, wrong credentials, a missing
//! bucket.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ckpt::{Error, LoadFrom, LoadOptions, SaveOptions, StateDictOptions, Tensor, dict};

use crate::backend::{Backend, s3_options};
use crate::moto::{self, Moto};
use crate::proxy::Proxy;
use crate::suite::noise;

const CHILD: &str = "CKPT_OBJECT_STORE_CHILD";

/// A bucket of this test's own on the shared server, for tests that count its uploads.
fn own_bucket(name: &str) -> Option<(String, Backend)> {
    let backend = Backend::s3(name)?;
    let endpoint = backend.endpoint.clone().unwrap();
    moto::create_bucket(&endpoint, name);
    Some((endpoint, backend))
}

fn previous() -> ckpt::Value<'static> {
    dict! { "version" => "old", "w" => Tensor::from_vec(noise(1000, 1), &[1000]).unwrap() }
        .to_owned_value()
}

#[test]
fn a_killed_upload_leaves_the_previous_checkpoint() {
    if let Ok(url) = std::env::var(CHILD) {
        // In the child: a 64 MiB save over the previous checkpoint, killed by the parent.
        let endpoint = std::env::var("CKPT_CHILD_ENDPOINT").unwrap();
        let big = Tensor::from_vec(noise(16 << 20, 2), &[16 << 20]).unwrap();
        let options = SaveOptions::new().object_store(s3_options(&endpoint, "testing", "testing"));
        ckpt::save_with(dict! { "version" => "new", "big" => &big }, &url, &options).unwrap();
        println!("saved");
        return;
    }
    let Some((endpoint, _)) = own_bucket("killed-upload") else {
        return;
    };
    let url = "s3://killed-upload/model.ckpt";
    let load = LoadOptions::new().object_store(s3_options(&endpoint, "testing", "testing"));
    let save = SaveOptions::new().object_store(s3_options(&endpoint, "testing", "testing"));
    ckpt::save_with(previous(), url, &save).unwrap();
    let proxy = Proxy::start(&endpoint);
    let name = crate::common::test_name(
        module_path!(),
        "a_killed_upload_leaves_the_previous_checkpoint",
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, url)
        .env("CKPT_CHILD_ENDPOINT", &proxy.endpoint)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once several parts are up, as a preempted training job would be.
    let start = Instant::now();
    while proxy.received() < 20 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the child uploads"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let uploaded = proxy.received();
    let checkpoint = ckpt::load_with(url, &load).unwrap();
    assert_eq!(
        checkpoint.value(),
        &previous(),
        "after {uploaded} bytes uploaded"
    );
    // The killed upload is incomplete and invisible: only a bucket lifecycle rule removes it.
    assert_eq!(moto::uploads_in_progress(&endpoint, "killed-upload"), 1);
}

#[test]
fn a_failed_upload_is_aborted() {
    let Some((endpoint, _)) = own_bucket("failed-upload") else {
        return;
    };
    let url = "s3://failed-upload/model.ckpt";
    let options = s3_options(&endpoint, "testing", "testing");
    let save = SaveOptions::new().object_store(options.clone());
    ckpt::save_with(previous(), url, &save).unwrap();
    // A save that fails after four parts went up (3 uploaded, the first held back).
    let failing = save
        .clone()
        .format(crate::suite::Failing(4 * crate::backend::PART + 1));
    let err = ckpt::save_with(previous(), url, &failing).unwrap_err();
    assert!(err.to_string().contains("out of something"), "{err}");
    assert_eq!(
        moto::uploads_in_progress(&endpoint, "failed-upload"),
        0,
        "aborted"
    );
    let load = LoadOptions::new().object_store(options);
    assert_eq!(ckpt::load_with(url, &load).unwrap().value(), &previous());
}

#[test]
fn a_server_stopped_during_a_load_is_a_clear_error() {
    let Some(mut moto) = Moto::start(&[]) else {
        return;
    };
    moto::create_bucket(&moto.endpoint, "stopping");
    let proxy = Proxy::start(&moto.endpoint);
    let options = s3_options(&proxy.endpoint, "testing", "testing").download_chunk(1 << 20);
    let url = "s3://stopping/model.ckpt";
    let big = Tensor::from_vec(noise(12 << 20, 4), &[12 << 20]).unwrap();
    let save = SaveOptions::new().object_store(options.clone());
    ckpt::save_with(dict! { "big" => &big }, url, &save).unwrap();
    proxy.reset();
    let load = LoadOptions::new().object_store(options.download_concurrency(2));
    let loading = std::thread::spawn(move || {
        let zeros = Tensor::zeros(ckpt::DType::F32, &[12 << 20]).unwrap();
        let mut into = std::collections::BTreeMap::from([("big".to_owned(), zeros)]);
        let started = Instant::now();
        let result = into.load_from_with(url, &load, &StateDictOptions::new());
        (result.map(|_| ()), started.elapsed())
    });
    let start = Instant::now();
    while proxy.sent() < 4 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the load fetches"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    moto.kill();
    let (result, took) = loading.join().unwrap();
    let err = result.unwrap_err();
    println!("{took:?}: {err}");
    let Error::Io { location, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(location.to_string(), url);
    assert!(
        err.to_string()
            .starts_with(&format!("{url}: reading bytes")),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn a_busy_server_is_retried_with_backoff() {
    let Some(backend) = Backend::s3("busy") else {
        return;
    };
    let proxy = Proxy::start(backend.endpoint.as_deref().unwrap());
    // Two retries, the first after 100 ms and the second after 100 to 200 ms.
    let options = s3_options(&proxy.endpoint, "testing", "testing");
    assert_eq!(options.max_retries, 2);
    let save = SaveOptions::new().object_store(options.clone());
    let load = LoadOptions::new().object_store(options);
    let url = backend.url("busy.ckpt");
    let value =
        dict! { "w" => Tensor::from_vec(noise(1000, 7), &[1000]).unwrap() }.to_owned_value();
    for (what, n) in [("save", 2), ("load", 2), ("inspect", 1)] {
        proxy.refuse(n);
        let before = proxy.refused();
        let started = Instant::now();
        match what {
            "save" => ckpt::save_with(&value, &url, &save).unwrap(),
            "load" => assert_eq!(ckpt::load_with(&url, &load).unwrap().value(), &value),
            _ => assert_eq!(ckpt::inspect_with(&url, &load).unwrap().tensors.len(), 1),
        }
        let took = started.elapsed();
        assert_eq!(proxy.refused() - before, n, "{what}");
        assert!(took >= Duration::from_millis(100 * n), "{what}: {took:?}");
    }
    // More refusals than retries: an error naming the URL and what the server said.
    proxy.refuse(10);
    let err = ckpt::load_with(&url, &load).unwrap_err();
    proxy.refuse(0);
    let Error::Io { location, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(location.to_string(), url);
    assert!(err.to_string().contains("503"), "{err}");
}

#[test]
fn wrong_credentials_are_refused_naming_the_url() {
    let Some(moto) = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]) else {
        return;
    };
    let python = moto::binary().unwrap().with_file_name("python");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/object_store/moto_auth.py"
    );
    let out = Command::new(python)
        .args([script, &moto.endpoint, "guarded"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Vec<String> = BufReader::new(&out.stdout[..])
        .lines()
        .map(Result::unwrap)
        .collect();
    let (key, secret) = (&keys[0], &keys[1]);
    let url = "s3://guarded/model.ckpt";
    let value = dict! { "w" => Tensor::scalar(1.0f32) };

    // The right keys work: the server does check them.
    let right = s3_options(&moto.endpoint, key, secret);
    ckpt::save_with(&value, url, &SaveOptions::new().object_store(right.clone())).unwrap();
    ckpt::load_with(url, &LoadOptions::new().object_store(right)).unwrap();

    let wrong_secret = "not-the-secret-at-all";
    let wrong = s3_options(&moto.endpoint, key, wrong_secret);
    let errors = [
        ckpt::save_with(&value, url, &SaveOptions::new().object_store(wrong.clone())).unwrap_err(),
        ckpt::load_with(url, &LoadOptions::new().object_store(wrong.clone())).unwrap_err(),
        ckpt::inspect_with(url, &LoadOptions::new().object_store(wrong)).unwrap_err(),
    ];
    for err in errors {
        let Error::Io { location, source } = &err else {
            panic!("{err}")
        };
        assert_eq!(location.to_string(), url);
        assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("check the credentials"), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains(wrong_secret) && !shown.contains(secret.as_str()),
            "{shown}"
        );
    }
}

#[test]
fn a_missing_bucket_is_an_error_naming_the_url() {
    let Some(backend) = Backend::s3("missing_bucket") else {
        return;
    };
    let url = "s3://no-such-bucket/model.ckpt";
    let value = dict! { "w" => Tensor::scalar(1.0f32) };
    let big = dict! { "w" => Tensor::from_vec(noise(3 << 20, 5), &[3 << 20]).unwrap() };
    let errors = [
        ckpt::save_with(&value, url, &backend.save()).unwrap_err(),
        ckpt::save_with(&big, url, &backend.save()).unwrap_err(), // a multipart upload
        ckpt::load_with(url, &backend.load()).unwrap_err(),
    ];
    for err in errors {
        let Error::Io { location, source } = &err else {
            panic!("{err}")
        };
        assert_eq!(location.to_string(), url);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("no such bucket"), "{err}");
    }
}
