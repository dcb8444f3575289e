//! [`ObjectStoreOptions`]: how checkpoints at URLs are reached, uploaded and fetched.

use std::fmt;
use std::time::Duration;

/// How checkpoints at URLs are reached (credentials, endpoint) and moved (part sizes, requests
/// in flight, retries): [`LoadOptions::object_store`](crate::LoadOptions::object_store) and
/// [`SaveOptions::object_store`](crate::SaveOptions::object_store). Needs the `object-store`
/// feature to have any use.
///
/// Credentials and endpoints come as `object_store` users expect: from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `GOOGLE_SERVICE_ACCOUNT`,
/// `AZURE_STORAGE_ACCOUNT_NAME`, …; see the builders `AmazonS3Builder::from_env`,
/// `GoogleCloudStorageBuilder::from_env`, `MicrosoftAzureBuilder::from_env`), overridden by
/// settings given here under `object_store`'s configuration keys (`"endpoint"`, `"region"`,
/// `"access_key_id"`, `"allow_http"`, `"timeout"`, …). An unknown key is an error naming it.
/// Two settings are given by default, since checkpoints make long requests: `"timeout"` (5
/// minutes for one request, where `object_store` allows 30 s) and `"read_timeout"` (a
/// minute without a byte received).
/// Setting values never appear in `Debug` output or in errors, except a few that are never
/// secret (endpoint, region, bucket, `allow_http`).
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::storage::ObjectStoreOptions;
///
/// let options = ObjectStoreOptions::new()
///     .with("endpoint", "http://127.0.0.1:9000")
///     .with("allow_http", "true")
///     .with("secret_access_key", "hunter2")
///     .part_size(32 << 20);
/// assert_eq!(options.get("endpoint"), Some("http://127.0.0.1:9000"));
/// assert!(!format!("{options:?}").contains("hunter2"));
/// assert_eq!(options.memory_bound(), 8 * (32 << 20) + (64 << 20));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectStoreOptions {
    /// Settings for the store, by `object_store` configuration key, in the order given.
    settings: Vec<(String, String)>,
    /// Whether the environment's settings are read first (`true`, the default). Tests turn
    /// it off, so that a developer's real credentials are never used.
    pub from_env: bool,
    /// Bytes in each part of a multipart upload (default 16 MiB; at least 5 MiB, the least S3
    /// accepts). A save larger than 9,000 parts uses larger parts, since S3 allows 10,000.
    pub part_size: usize,
    /// How many parts a save holds in memory at once (default 8, at least 3): the first part,
    /// uploaded last (see `storage::remote`), the one being filled, and the rest uploading.
    /// A save's memory stays within [`memory_bound`](Self::memory_bound), whatever its size.
    pub upload_concurrency: usize,
    /// How many ranged GETs a load keeps in flight at most (default 8).
    pub download_concurrency: usize,
    /// The least bytes one ranged GET of a load fetches (default 8 MiB). A load's first GET of
    /// a long run of bytes fetches this much and measures the store: where a GET costs little
    /// beside its bytes (S3, GCS, Azure across a network), the rest of each long run is
    /// fetched in up to `download_concurrency` GETs at once, each at least this large; where a
    /// GET costs more than moving the run on one connection takes, in one.
    pub download_chunk: usize,
    /// How many times a request that failed for a transient reason (a dropped connection, a
    /// 5xx, a 429) is retried, with exponential backoff (default 10).
    pub max_retries: usize,
    /// How long a request keeps being retried (default 3 minutes).
    pub retry_timeout: Duration,
}

/// The least part size S3 accepts (but for the last part).
pub(crate) const MIN_PART_SIZE: usize = 5 << 20;

/// What a save may use besides its parts: the runtime, connections, buffers.
const OVERHEAD: usize = 64 << 20;

/// Settings whose values are never secret, so `Debug` shows them.
const SHOWN: [&str; 12] = [
    "endpoint",
    "endpoint_url",
    "aws_endpoint",
    "aws_endpoint_url",
    "region",
    "aws_region",
    "bucket",
    "allow_http",
    "aws_allow_http",
    "timeout",
    "read_timeout",
    "connect_timeout",
];

/// Whether the value of the setting `key` is never secret, so messages may show it.
#[cfg_attr(not(feature = "object-store"), allow(dead_code))]
pub(crate) fn is_shown(key: &str) -> bool {
    SHOWN.contains(&key)
}

impl Default for ObjectStoreOptions {
    fn default() -> Self {
        ObjectStoreOptions {
            // `object_store` gives up on any request after 30 s, which a 16 MiB part on a slow
            // link, a long GET of a large checkpoint or the completion of a large upload can
            // take; instead, a request may take 5 minutes, and one that receives nothing for
            // a minute (as boto3 waits) is dropped, and retried.
            settings: vec![
                ("timeout".to_owned(), "300s".to_owned()),
                ("read_timeout".to_owned(), "60s".to_owned()),
            ],
            from_env: true,
            part_size: 16 << 20,
            upload_concurrency: 8,
            download_concurrency: 8,
            download_chunk: 8 << 20,
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
        }
    }
}

impl ObjectStoreOptions {
    /// The environment's settings, 16 MiB parts, 8 parts and 8 GETs in flight, 10 retries,
    /// requests of up to 5 minutes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the setting `key` (an `object_store` configuration key such as `"endpoint"` or
    /// `"access_key_id"`, any case), which overrides the environment's.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into().to_ascii_lowercase();
        self.settings.retain(|(k, _)| *k != key);
        self.settings.push((key, value.into()));
        self
    }

    /// The value given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every setting given, in order.
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    pub(crate) fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    /// Sets [`from_env`](Self::from_env).
    #[must_use]
    pub fn from_env(mut self, from_env: bool) -> Self {
        self.from_env = from_env;
        self
    }

    /// Sets [`part_size`](Self::part_size).
    #[must_use]
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// Sets [`upload_concurrency`](Self::upload_concurrency).
    #[must_use]
    pub fn upload_concurrency(mut self, parts: usize) -> Self {
        self.upload_concurrency = parts;
        self
    }

    /// Sets [`download_concurrency`](Self::download_concurrency).
    #[must_use]
    pub fn download_concurrency(mut self, requests: usize) -> Self {
        self.download_concurrency = requests;
        self
    }

    /// Sets [`download_chunk`](Self::download_chunk).
    #[must_use]
    pub fn download_chunk(mut self, bytes: usize) -> Self {
        self.download_chunk = bytes;
        self
    }

    /// Sets [`max_retries`](Self::max_retries) and [`retry_timeout`](Self::retry_timeout).
    #[must_use]
    pub fn retries(mut self, max_retries: usize, timeout: Duration) -> Self {
        self.max_retries = max_retries;
        self.retry_timeout = timeout;
        self
    }

    /// The part size a save uses: [`part_size`](Self::part_size), at least 5 MiB.
    pub(crate) fn effective_part_size(&self) -> usize {
        self.part_size.max(MIN_PART_SIZE)
    }

    /// The parts a save holds at once: [`upload_concurrency`](Self::upload_concurrency), at
    /// least 3.
    pub(crate) fn effective_upload_concurrency(&self) -> usize {
        self.upload_concurrency.max(3)
    }

    /// The most memory a save to an object store uses besides the checkpoint itself, for
    /// checkpoints of up to 9,000 parts: part size × upload concurrency + 64 MiB.
    pub fn memory_bound(&self) -> usize {
        self.effective_part_size() * self.effective_upload_concurrency() + OVERHEAD
    }
}

impl fmt::Debug for ObjectStoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Settings<'a>(&'a [(String, String)]);
        impl fmt::Debug for Settings<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, v)| {
                        let shown = if is_shown(k) {
                            v.as_str()
                        } else {
                            "<redacted>"
                        };
                        (k, shown)
                    }))
                    .finish()
            }
        }
        f.debug_struct("ObjectStoreOptions")
            .field("settings", &Settings(&self.settings))
            .field("from_env", &self.from_env)
            .field("part_size", &self.part_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("download_concurrency", &self.download_concurrency)
            .field("download_chunk", &self.download_chunk)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .finish()
    }
}
