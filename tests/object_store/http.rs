//! `http(s)://` URLs are read: a plain HTTP server on 127.0.0.1 (started here, serving a
//! directory, with ranges and entity tags as any static file server has) serves checkpoints that
//! load, inspect and load into models; a save to it is refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use ckpt::{Error, LoadFrom, LoadOptions, SaveOptions, StateDict, StateDictOptions};

use crate::common::models::{Net, bytes_of};

/// Serves the files of `root` until the process ends; returns `http://127.0.0.1:PORT`.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let root = root.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &root);
            });
        }
    });
    endpoint
}

/// Answers one request: `GET` or `HEAD` of a file, whole or a `Range: bytes=a-b` of it.
fn answer(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (mut range, mut if_match) = (None, None);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match name.to_ascii_lowercase().as_str() {
            "range" => range = Some(value.trim().to_owned()),
            "if-match" => if_match = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let respond = |stream: &mut TcpStream, status: &str, headers: String, body: &[u8]| {
        write!(
            stream,
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        )?;
        stream.write_all(body)
    };
    let Ok(bytes) = std::fs::read(root.join(target.trim_start_matches('/'))) else {
        return respond(&mut stream, "404 Not Found", String::new(), b"");
    };
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", String::new(), b"");
    }
    let etag = format!("\"{:x}\"", xxhash_rust::xxh3::xxh3_64(&bytes));
    if if_match.is_some_and(|m| m != etag) {
        return respond(&mut stream, "412 Precondition Failed", String::new(), b"");
    }
    let common = format!("ETag: {etag}\r\nLast-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\n");
    let len = bytes.len();
    let (status, headers, body) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (start, end) = spec.split_once('-').unwrap_or((spec, ""));
            let start: usize = start.parse().unwrap_or(0);
            let end = end.parse::<usize>().map_or(len, |e| (e + 1).min(len));
            let headers = format!("{common}Content-Range: bytes {start}-{}/{len}\r\n", end - 1);
            ("206 Partial Content", headers, &bytes[start..end])
        }
        None => ("200 OK", common, &bytes[..]),
    };
    let body = if method == "HEAD" { &[][..] } else { body };
    respond(&mut stream, status, headers, body)?;
    let _ = reader.read(&mut [0; 1]);
    Ok(())
}

#[test]
fn checkpoints_load_over_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = serve(dir.path().to_owned());
    let options = LoadOptions::new().object_store(
        ckpt::storage::ObjectStoreOptions::new()
            .from_env(false)
            .with("allow_http", "true")
            .download_chunk(64 << 10),
    );
    let trained = Net::new(2.0);
    for name in ["net.ckpt", "net.safetensors", "net.pt"] {
        ckpt::save(trained.state_dict(), dir.path().join(name)).unwrap();
        let url = format!("{endpoint}/{name}");
        let loaded = ckpt::load_with(&url, &options).unwrap();
        let local = ckpt::load(dir.path().join(name)).unwrap();
        assert_eq!(loaded.value(), local.value(), "{name}");
        let header = ckpt::inspect_with(&url, &options).unwrap();
        assert_eq!(
            header,
            ckpt::inspect(dir.path().join(name)).unwrap(),
            "{name}"
        );
        let mut model = Net::new(0.0);
        let _ = model
            .load_from_with(&url, &options, &StateDictOptions::new())
            .unwrap();
        assert_eq!(bytes_of(&model), bytes_of(&trained), "{name}");
    }
    let url = format!("{endpoint}/new.ckpt");
    let save = SaveOptions::new().object_store(options.object_store.clone());
    let err = ckpt::save_with(trained.state_dict(), &url, &save).unwrap_err();
    let Error::Io { location, source } = &err else {
        panic!("{err}")
    };
    assert_eq!(location.to_string(), url);
    assert_eq!(source.kind(), std::io::ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
    let err = ckpt::load_with(format!("{endpoint}/missing.ckpt"), &options).unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}
