//! A TCP proxy in front of the S3 server that counts the bytes each way and the connections
//! open at once: what the server sent is what a load fetched, headers included.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default)]
struct Counts {
    /// Bytes from the server to the client.
    sent: AtomicU64,
    /// Bytes from the client to the server.
    received: AtomicU64,
    open: AtomicU64,
    most_open: AtomicU64,
    stop: AtomicBool,
}

pub(crate) struct Proxy {
    pub(crate) endpoint: String,
    counts: Arc<Counts>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 in front of the server at `upstream` (`http://127.0.0.1:PORT`).
    pub(crate) fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(&upstream)) else {
                    continue;
                };
                let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
                shared.most_open.fetch_max(open, Ordering::Relaxed);
                let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = Arc::clone(&shared);
                std::thread::spawn(move || pipe(c, s, &up.received));
                let down = Arc::clone(&shared);
                std::thread::spawn(move || {
                    pipe(server, client, &down.sent);
                    down.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Proxy { endpoint, counts }
    }

    /// Bytes the server sent since the last [`reset`](Self::reset).
    pub(crate) fn sent(&self) -> u64 {
        self.counts.sent.load(Ordering::Relaxed)
    }

    /// Bytes the client sent since the last reset.
    pub(crate) fn received(&self) -> u64 {
        self.counts.received.load(Ordering::Relaxed)
    }

    /// The most connections open at once since the last reset.
    pub(crate) fn most_open(&self) -> u64 {
        self.counts.most_open.load(Ordering::Relaxed)
    }

    pub(crate) fn reset(&self) {
        self.counts.sent.store(0, Ordering::Relaxed);
        self.counts.received.store(0, Ordering::Relaxed);
        let open = self.counts.open.load(Ordering::Relaxed);
        self.counts.most_open.store(open, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.counts.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// Copies `from` to `to` until either side closes, counting into `count`.
fn pipe(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buf = vec![0; 64 << 10];
    while let Ok(n) = from.read(&mut buf) {
        // Counted before it is passed on: whoever receives it sees it counted.
        count.fetch_add(n as u64, Ordering::Relaxed);
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
