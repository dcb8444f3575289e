//! Building the `object_store` store behind a URL, from the environment and the options.

use std::io;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreScheme, RetryConfig};

use super::error::{Secrets, io_error};
use crate::storage::{ObjectStoreOptions, ObjectUrl};

/// One object: the store it is in, its path there, and what its errors must not show.
pub(crate) struct Object {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The same store's part-by-part upload API, where it has one (not plain HTTP).
    pub(crate) multipart: Option<Arc<dyn MultipartStore>>,
    pub(crate) path: Path,
    pub(crate) secrets: Arc<Secrets>,
}

/// The one in-memory store of the process, which every `memory://` URL names a part of.
fn memory() -> Arc<InMemory> {
    static MEMORY: OnceLock<Arc<InMemory>> = OnceLock::new();
    Arc::clone(MEMORY.get_or_init(|| Arc::new(InMemory::new())))
}

/// The store and path behind `url`, configured from the environment (if `options` say so)
/// and then `options`' settings, with their retries.
pub(crate) fn object(url: &ObjectUrl, options: &ObjectStoreOptions) -> io::Result<Object> {
    let secrets = Arc::new(Secrets::of(url, options));
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let parsed =
        url::Url::parse(url.as_str()).map_err(|e| invalid(format!("not a valid URL: {e}")))?;
    let bad_path = |e: object_store::path::Error| invalid(format!("not a valid object path: {e}"));
    if url.scheme() == "memory" {
        // `memory://name/key` and `memory:///key`: the host is the first path segment.
        let full = format!("{}{}", parsed.host_str().unwrap_or(""), parsed.path());
        let path = Path::from_url_path(full).map_err(bad_path)?;
        let store = memory();
        return Ok(Object {
            store: store.clone(),
            multipart: Some(store),
            path,
            secrets,
        });
    }
    let (scheme, path) = ObjectStoreScheme::parse(&parsed)
        .map_err(|e| invalid(format!("not an object store URL: {e}")))?;
    if path.as_ref().is_empty() {
        return Err(invalid(
            "the URL names no object (its path is empty)".to_owned(),
        ));
    }
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: options.max_retries,
        retry_timeout: options.retry_timeout,
    };
    let fail = |e: object_store::Error| io_error(e, "configuring the store", &secrets);
    let (store, multipart): (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>) = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let builder = configure(
                options.from_env,
                AmazonS3Builder::from_env,
                AmazonS3Builder::new,
                options,
                |b, k, v| Ok(b.with_config(k.parse()?, v)),
            )
            .map_err(fail)?;
            let store = Arc::new(
                builder
                    .with_url(url.as_str())
                    .with_retry(retry)
                    .build()
                    .map_err(fail)?,
            );
            (store.clone(), Some(store))
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let builder = configure(
                options.from_env,
                GoogleCloudStorageBuilder::from_env,
                GoogleCloudStorageBuilder::new,
                options,
                |b, k, v| Ok(b.with_config(k.parse()?, v)),
            )
            .map_err(fail)?;
            let store = Arc::new(
                builder
                    .with_url(url.as_str())
                    .with_retry(retry)
                    .build()
                    .map_err(fail)?,
            );
            (store.clone(), Some(store))
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let builder = configure(
                options.from_env,
                MicrosoftAzureBuilder::from_env,
                MicrosoftAzureBuilder::new,
                options,
                |b, k, v| Ok(b.with_config(k.parse()?, v)),
            )
            .map_err(fail)?;
            let store = Arc::new(
                builder
                    .with_url(url.as_str())
                    .with_retry(retry)
                    .build()
                    .map_err(fail)?,
            );
            (store.clone(), Some(store))
        }
        ObjectStoreScheme::Http => {
            let builder = configure(
                false,
                HttpBuilder::new,
                HttpBuilder::new,
                options,
                |b, k, v| Ok(b.with_config(object_store::ClientConfigKey::from_str(k)?, v)),
            )
            .map_err(fail)?;
            let origin = &parsed[..url::Position::BeforePath];
            (
                Arc::new(
                    builder
                        .with_url(origin)
                        .with_retry(retry)
                        .build()
                        .map_err(fail)?,
                ),
                None,
            )
        }
        other => {
            return Err(invalid(format!(
                "{other:?} URLs are not object stores ckpt reaches"
            )));
        }
    };
    Ok(Object {
        store,
        multipart,
        path,
        secrets,
    })
}

/// A builder from the environment (or empty), with every setting of `options` applied.
fn configure<B>(
    from_env: bool,
    env: fn() -> B,
    empty: fn() -> B,
    options: &ObjectStoreOptions,
    set: impl Fn(B, &str, &str) -> object_store::Result<B>,
) -> object_store::Result<B> {
    let builder = if from_env { env() } else { empty() };
    options
        .settings()
        .iter()
        .try_fold(builder, |builder, (key, value)| set(builder, key, value))
}
