//! A TCP proxy in front of the S3 server that counts the bytes each way and the connections
//! open at once: what the server sent is what a load fetched, headers included. It may also
//! pass the server's bytes on at a network's rate, each connection at most so many a second,
//! as a store across a network serves them.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counts {
    /// Bytes from the server to the client.
    sent: AtomicU64,
    /// Bytes from the client to the server.
    received: AtomicU64,
    open: AtomicU64,
    most_open: AtomicU64,
    /// How many of the next connections to answer `503 Slow Down` to, as a busy S3 does.
    refuse: AtomicU64,
    /// How many were.
    refused: AtomicU64,
    stop: AtomicBool,
}

pub(crate) struct Proxy {
    pub(crate) endpoint: String,
    counts: Arc<Counts>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 in front of the server at `upstream` (`http://127.0.0.1:PORT`).
    pub(crate) fn start(upstream: &str) -> Proxy {
        Self::throttled(upstream, None)
    }

    /// A proxy that passes each connection's bytes from the server on at `rate` bytes a
    /// second at most, if given.
    pub(crate) fn throttled(upstream: &str, rate: Option<u64>) -> Proxy {
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
                let Ok(client) = client else {
                    continue;
                };
                let refuse =
                    shared
                        .refuse
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if refuse.is_ok() {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    std::thread::spawn(move || slow_down(client));
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
                shared.most_open.fetch_max(open, Ordering::Relaxed);
                let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = Arc::clone(&shared);
                std::thread::spawn(move || pipe(c, s, &up.received, None));
                let down = Arc::clone(&shared);
                std::thread::spawn(move || {
                    pipe(server, client, &down.sent, rate);
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

    /// Answers the next `n` connections `503 Slow Down`, each after reading its request.
    pub(crate) fn refuse(&self, n: u64) {
        self.counts.refuse.store(n, Ordering::Relaxed);
    }

    /// How many connections were answered `503 Slow Down`.
    pub(crate) fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::Relaxed)
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

/// Reads a request's head and answers that the server is busy, as S3 answers too many
/// requests at once; the client must retry.
fn slow_down(mut client: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    let body =
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let _ = write!(
        client,
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.shutdown(Shutdown::Both);
}

/// Copies `from` to `to` until either side closes, counting into `count`, at `rate` bytes a
/// second at most if given.
fn pipe(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64, rate: Option<u64>) {
    // Small reads when throttled, so the rate holds over short spans too.
    let mut buf = vec![0; if rate.is_some() { 16 << 10 } else { 64 << 10 }];
    // When the next bytes may go: paced, with no credit for idle time (a connection kept
    // alive between requests gets no burst).
    let mut next = Instant::now();
    while let Ok(n) = from.read(&mut buf) {
        if let Some(rate) = rate {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next = next.max(now) + Duration::from_secs_f64(n as f64 / rate as f64);
        }
        // Counted before it is passed on: whoever receives it sees it counted.
        count.fetch_add(n as u64, Ordering::Relaxed);
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
