//! [`ObjectUrl`]: where a checkpoint in an object store is, and how entry points that take a
//! path tell a URL from a file name.
//!
//! Entry points take `impl AsRef<Path>`, so `"s3://bucket/key"` arrives as a path; a path whose
//! text starts with a scheme ckpt knows (`s3://`, `gs://`, `az://`, `http(s)://`, `memory://`,
//! `file://`) is read as a URL instead. No local file name starts so: `s3:` followed by an
//! empty directory name is not something anyone saves to.

use std::fmt;
use std::path::{Path, PathBuf};

/// The schemes read as object store URLs, as `object_store` names them.
const SCHEMES: [&str; 12] = [
    "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl", "http", "https", "memory", "file",
];

/// What a path's text names: a local file, or an object behind a URL.
pub(crate) enum Parsed {
    /// A local file (a plain path, or a `file://` URL).
    Path(PathBuf),
    /// An object in a store.
    Url(ObjectUrl),
}

/// Reads `path` as a URL if its text starts with a known scheme, else as a file name.
pub(crate) fn parse(path: &Path) -> Parsed {
    let Some(text) = path.to_str() else {
        return Parsed::Path(path.to_owned());
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return Parsed::Path(path.to_owned());
    };
    let scheme = scheme.to_ascii_lowercase();
    if !SCHEMES.contains(&scheme.as_str()) {
        return Parsed::Path(path.to_owned());
    }
    if scheme == "file" {
        // `file:///abs/path` and `file://localhost/abs/path`, percent-decoded.
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        return Parsed::Path(PathBuf::from(percent_decode(rest)));
    }
    Parsed::Url(ObjectUrl {
        full: format!("{scheme}://{rest}"),
        scheme_len: scheme.len(),
    })
}

/// An object in a store, by URL: `s3://bucket/key`, `gs://bucket/key`, `az://container/key`,
/// `https://host/path` (read only), `memory://name/key` (a store in this process's memory).
///
/// It is shown (by `Display` and `Debug`, so in every error) without a password and without
/// a query string, which may carry a signature (an Azure SAS token): a message never prints a
/// secret.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::storage::Location;
///
/// let location = Location::from(std::path::Path::new("s3://bucket/run/model.ckpt"));
/// let url = location.url().unwrap();
/// assert_eq!((url.scheme(), url.to_string().as_str()), ("s3", "s3://bucket/run/model.ckpt"));
///
/// let signed = Location::from(std::path::Path::new("https://user:pw@host/m.pt?sig=SECRET"));
/// assert_eq!(signed.to_string(), "https://host/m.pt?…");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    /// The URL as given, the scheme lower-cased.
    full: String,
    scheme_len: usize,
}

impl ObjectUrl {
    /// The scheme: `"s3"`, `"gs"`, `"az"`, `"https"`, `"memory"`.
    pub fn scheme(&self) -> &str {
        &self.full[..self.scheme_len]
    }

    /// The whole URL, secrets included: only for building the store.
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    pub(crate) fn as_str(&self) -> &str {
        &self.full
    }

    /// What follows `scheme://`, up to the query.
    fn body(&self) -> &str {
        let rest = &self.full[self.scheme_len + 3..];
        rest.split(['?', '#']).next().unwrap_or(rest)
    }

    /// The last segment of the path: `model.ckpt`.
    pub(crate) fn file_name(&self) -> Option<&str> {
        let body = self.body();
        let (_, name) = body.rsplit_once('/')?;
        (!name.is_empty()).then_some(name)
    }

    /// The object named `name` inside this URL's "directory": `s3://b/run/` or `s3://b/run`
    /// and `.metadata` give `s3://b/run/.metadata`. Any query string is kept.
    pub(crate) fn child(&self, name: &str) -> ObjectUrl {
        if self.file_name().is_none() {
            return self.sibling(name);
        }
        let body_end = self.scheme_len + 3 + self.body().len();
        let full = format!(
            "{}/{name}{}",
            &self.full[..body_end],
            &self.full[body_end..]
        );
        ObjectUrl {
            full,
            scheme_len: self.scheme_len,
        }
    }

    /// The object named `name` in the same "directory": the shards beside a sharded
    /// checkpoint's index. Any query string is kept, since it may be what grants access.
    pub(crate) fn sibling(&self, name: &str) -> ObjectUrl {
        let body_start = self.scheme_len + 3;
        let body_end = body_start + self.body().len();
        let slash = self.full[body_start..body_end].rfind('/');
        let dir_end = slash.map_or(body_end, |i| body_start + i + 1);
        let mut full = self.full[..dir_end].to_owned();
        if slash.is_none() {
            // `s3://bucket`: the bucket is the directory.
            full.push('/');
        }
        full.push_str(name);
        full.push_str(&self.full[body_end..]);
        ObjectUrl {
            full,
            scheme_len: self.scheme_len,
        }
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = self.body();
        // `user:password@host/...` shows as `host/...`.
        let (authority, path) = body.split_at(body.find('/').unwrap_or(body.len()));
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        write!(f, "{}://{host}{path}", self.scheme())?;
        if body.len() + self.scheme_len + 3 < self.full.len() {
            f.write_str("?…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectUrl({self})")
    }
}

/// `%20` to a space, as `file://` URLs spell it; malformed escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> ObjectUrl {
        match parse(Path::new(text)) {
            Parsed::Url(url) => url,
            Parsed::Path(path) => panic!("{text} read as the path {}", path.display()),
        }
    }

    #[test]
    fn schemes_are_urls_and_everything_else_a_path() {
        assert_eq!(url("S3://b/k").to_string(), "s3://b/k");
        assert_eq!(url("memory://ns/a/b.ckpt").scheme(), "memory");
        for path in ["model.ckpt", "/tmp/x", "s3:/b/k", "weird://x", "C:\\x"] {
            assert!(matches!(parse(Path::new(path)), Parsed::Path(p) if p == Path::new(path)));
        }
        let Parsed::Path(local) = parse(Path::new("file:///tmp/a%20b/m.ckpt")) else {
            panic!("file:// is a local path")
        };
        assert_eq!(local, Path::new("/tmp/a b/m.ckpt"));
    }

    #[test]
    fn secrets_never_show() {
        let signed = url("https://me:hunter2@acct.blob.core.windows.net/c/m.pt?sv=1&sig=abc");
        assert_eq!(
            signed.to_string(),
            "https://acct.blob.core.windows.net/c/m.pt?…"
        );
        assert!(!format!("{signed:?}").contains("hunter2"));
        assert_eq!(signed.file_name(), Some("m.pt"));
        assert_eq!(
            signed.sibling("s-1.safetensors").as_str(),
            "https://me:hunter2@acct.blob.core.windows.net/c/s-1.safetensors?sv=1&sig=abc"
        );
    }

    #[test]
    fn siblings_share_the_prefix() {
        let index = url("s3://b/run/7/model.safetensors.index.json");
        assert_eq!(index.file_name(), Some("model.safetensors.index.json"));
        assert_eq!(
            index.sibling("model-00001-of-00002.safetensors").as_str(),
            "s3://b/run/7/model-00001-of-00002.safetensors"
        );
        assert_eq!(url("s3://b").sibling("k").as_str(), "s3://b/k");
        // A directory named with its trailing slash holds its children, once separated.
        assert_eq!(
            url("s3://b/run/").child(".metadata").as_str(),
            "s3://b/run/.metadata"
        );
        assert_eq!(
            url("s3://b/run").child(".metadata").as_str(),
            "s3://b/run/.metadata"
        );
        assert_eq!(url("s3://b").file_name(), None);
    }
}
