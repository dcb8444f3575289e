//! A real S3 server for the tests: the server mode of moto (`moto[server]`, from the Python
//! Package Index), started here on 127.0.0.1 with a port the OS picks, and stopped by the
//! tests.
//!
//! The server is `$CKPT_MOTO_SERVER` (`.ci/run` installs one in the user cache and sets it),
//! else `target/moto-venv/bin/moto_server`. Without one, a test that needs it fails under `CI=true` and otherwise says
//! it is skipped and how to install the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The server program, if there is one; fails the test under `CI=true` if there is not.
pub(crate) fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("CKPT_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/moto_server")
        });
    if path.exists() {
        return Some(path);
    }
    let advice = "python3 -m venv target/moto-venv && target/moto-venv/bin/pip install \
                  'moto[server]==5.2.5' (or set CKPT_MOTO_SERVER)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("no S3 server at {}: {advice}", path.display());
    }
    eprintln!("skipped: no S3 server at {}; {advice}", path.display());
    None
}

/// A moto server of this test's own, stopped when dropped.
pub(crate) struct Moto {
    child: Child,
    pub(crate) endpoint: String,
}

impl Moto {
    /// Starts a server with `env` added to its environment.
    pub(crate) fn start(env: &[(&str, &str)]) -> Option<Moto> {
        let mut command = Command::new(binary()?);
        command.args(["-H", "127.0.0.1", "-p", "0"]);
        let (child, endpoint) = spawn(command, env);
        Some(Moto { child, endpoint })
    }

    /// Stops the server at once, as a crash would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server the tests share. A `static` is never dropped, so it runs under a shell that
/// stops it when its standard input closes, which happens when the test process exits.
pub(crate) fn shared() -> Option<&'static str> {
    static SHARED: OnceLock<Option<(Child, String)>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let binary = binary()?;
            let mut command = Command::new("sh");
            command.args([
                "-c",
                r#""$0" -H 127.0.0.1 -p 0 & p=$!; read _; kill $p"#,
                binary.to_str().expect("a UTF-8 path"),
            ]);
            Some(spawn(command, &[]))
        })
        .as_ref()
        .map(|(_, endpoint)| endpoint.as_str())
}

/// Starts `command`, and waits for the server to say where it listens (werkzeug prints
/// ` * Running on http://127.0.0.1:PORT` on standard error), then keeps reading its log so it
/// never blocks on a full pipe.
fn spawn(mut command: Command, env: &[(&str, &str)]) -> (Child, String) {
    command
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start moto_server");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://127.0.0.1:") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line[at..].trim().to_owned());
                }
            }
        }
    });
    let endpoint = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("moto_server reports its address within a minute");
    (child, endpoint)
}

/// One HTTP/1.1 request without a body and without signing (moto accepts those unless told
/// to check credentials): the status code and the body.
pub(crate) fn request(endpoint: &str, method: &str, target: &str) -> (u16, String) {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("connect to moto");
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// Creates the bucket `name` (`object_store` has no call for it).
pub(crate) fn create_bucket(endpoint: &str, name: &str) {
    let (status, body) = request(endpoint, "PUT", &format!("/{name}"));
    assert_eq!(status, 200, "creating bucket {name}: {body}");
}

/// How many multipart uploads of `bucket` are started and neither completed nor aborted.
pub(crate) fn uploads_in_progress(endpoint: &str, bucket: &str) -> usize {
    let (status, body) = request(endpoint, "GET", &format!("/{bucket}?uploads"));
    assert_eq!(status, 200, "listing uploads: {body}");
    body.matches("<Upload>").count()
}
