//! The backends the suite runs against, each with the options that reach it: a real S3
//! server (moto), the in-process `memory://` store, and `file://` URLs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ckpt::storage::ObjectStoreOptions;
use ckpt::{LoadOptions, SaveOptions};

use crate::moto;

/// The bucket the shared server holds every test's objects in, under a prefix of its own.
pub(crate) const BUCKET: &str = "ckpt-tests";

/// Parts of 5 MiB (S3's least), so that checkpoints of a few MiB take several.
pub(crate) const PART: usize = 5 << 20;

pub(crate) struct Backend {
    pub(crate) name: &'static str,
    /// `scheme://…/test-N`, under which this test's objects go.
    root: String,
    pub(crate) options: ObjectStoreOptions,
    /// The server's address, for S3.
    pub(crate) endpoint: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

/// A number no other test of this process has.
fn unique(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{test}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Options that reach the S3 server at `endpoint` with `key` and `secret`, never the
/// environment's (a developer's real credentials), retrying briefly.
pub(crate) fn s3_options(endpoint: &str, key: &str, secret: &str) -> ObjectStoreOptions {
    ObjectStoreOptions::new()
        .from_env(false)
        .with("endpoint", endpoint)
        .with("allow_http", "true")
        .with("region", "us-east-1")
        .with("access_key_id", key)
        .with("secret_access_key", secret)
        .retries(2, Duration::from_secs(5))
        .part_size(PART)
        .upload_concurrency(4)
}

impl Backend {
    pub(crate) fn memory(test: &str) -> Backend {
        Backend {
            name: "memory",
            root: format!("memory://tests/{}", unique(test)),
            options: ObjectStoreOptions::new()
                .part_size(PART)
                .upload_concurrency(4),
            endpoint: None,
            _dir: None,
        }
    }

    pub(crate) fn file(_test: &str) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend {
            name: "file",
            root: format!("file://{}", dir.path().display()),
            options: ObjectStoreOptions::new(),
            endpoint: None,
            _dir: Some(dir),
        }
    }

    /// The shared S3 server, if there is one.
    pub(crate) fn s3(test: &str) -> Option<Backend> {
        let endpoint = moto::shared()?;
        static BUCKET_MADE: OnceLock<()> = OnceLock::new();
        BUCKET_MADE.get_or_init(|| moto::create_bucket(endpoint, BUCKET));
        Some(Backend {
            name: "s3",
            root: format!("s3://{BUCKET}/{}", unique(test)),
            options: s3_options(endpoint, "testing", "testing"),
            endpoint: Some(endpoint.to_owned()),
            _dir: None,
        })
    }

    /// The URL of the object `name` of this test.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.root)
    }

    pub(crate) fn load(&self) -> LoadOptions {
        LoadOptions::new().object_store(self.options.clone())
    }

    pub(crate) fn save(&self) -> SaveOptions {
        SaveOptions::new().object_store(self.options.clone())
    }
}
