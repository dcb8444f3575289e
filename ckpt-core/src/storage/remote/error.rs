//! Errors of object store requests as `io::Error`s a user can act on, with every secret
//! scrubbed out of them.
//!
//! `object_store`'s messages name the request (`Error performing GET http://host/bucket/key
//! in 1.2s, after 2 retries ...`), which is useful, but a request's URL may carry a signature
//! in its query string (an Azure SAS token), and a store's error may echo a setting. So every
//! message loses its URLs' query strings and every secret value ckpt knows of (the options'
//! and the environment's) before it is shown.

use std::io;
use std::sync::OnceLock;

use regex::Regex;

use super::super::ObjectStoreOptions;
use super::super::ObjectUrl;

/// The environment variables whose values are secrets, as the builders read them.
const SECRET_VARIABLES: [&str; 9] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON",
];

/// The secret values that may appear in an object store's messages.
#[derive(Debug, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// The values of `options`' settings (all but the few never secret), of the secret
    /// environment variables, and the URL's password and query.
    pub(crate) fn of(url: &ObjectUrl, options: &ObjectStoreOptions) -> Self {
        let mut values: Vec<String> = options
            .settings()
            .iter()
            .filter(|(k, _)| !super::super::options::is_shown(k))
            .map(|(_, v)| v.clone())
            .collect();
        values.extend(
            SECRET_VARIABLES
                .iter()
                .filter_map(|v| std::env::var(v).ok()),
        );
        if let Ok(parsed) = url::Url::parse(url.as_str()) {
            values.extend(parsed.password().map(str::to_owned));
            values.extend(parsed.query().map(str::to_owned));
        }
        // Short values (`true`, `1`) are no secret and would mangle messages.
        values.retain(|v| v.len() >= 6);
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Secrets(values)
    }

    /// `text` without query strings and without any secret value.
    pub(crate) fn scrub(&self, text: &str) -> String {
        static QUERY: OnceLock<Regex> = OnceLock::new();
        let query = QUERY.get_or_init(|| {
            Regex::new(r"(https?://[^\s?]*)\?[^\s]*").expect("a valid regular expression")
        });
        let mut text = query.replace_all(text, "$1?…").into_owned();
        for secret in &self.0 {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        text
    }
}

/// An `object_store` error while `doing` something (`"reading bytes 0..4096"`), as an
/// `io::Error` of the matching kind whose message says what to check.
pub(crate) fn io_error(error: object_store::Error, doing: &str, secrets: &Secrets) -> io::Error {
    use object_store::Error as E;
    let detail = secrets.scrub(&error.to_string());
    let (kind, lead) = match &error {
        E::NotFound { .. } => (
            io::ErrorKind::NotFound,
            "not found (no such object, or no such bucket)",
        ),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
            io::ErrorKind::PermissionDenied,
            "access denied: check the credentials and their rights",
        ),
        E::Precondition { .. } | E::NotModified { .. } => (
            io::ErrorKind::Other,
            "the object changed while it was being read (a save replaced it); load it again",
        ),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            (io::ErrorKind::Unsupported, "not supported by this store")
        }
        E::UnknownConfigurationKey { .. } => (io::ErrorKind::InvalidInput, "invalid setting"),
        _ => (io::ErrorKind::Other, "request failed"),
    };
    io::Error::new(kind, format!("{doing}: {lead}: {detail}"))
}
