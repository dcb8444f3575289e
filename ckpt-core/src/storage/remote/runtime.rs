//! The private tokio runtime that runs `object_store`'s futures under ckpt's blocking API.
//!
//! One runtime for the process, started on first use and never stopped: its worker threads
//! carry uploads on while the caller's thread produces the next part, and its connection pools
//! serve every request. Callers never see it; they wait on a channel, which is why an entry
//! point called from inside another tokio runtime blocks that thread (use `spawn_blocking`)
//! but does not panic, as `Runtime::block_on` would.

use std::future::Future;
use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

/// The runtime, started on first use.
fn runtime() -> io::Result<&'static Runtime> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        // Two workers suffice: they mostly wait on sockets, and the CPU work (hashing,
        // encoding) stays on the caller's threads.
        Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ckpt-object-store")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    runtime
        .as_ref()
        .map_err(|e| io::Error::other(format!("cannot start the object store runtime: {e}")))
}

/// Starts `future` on the runtime.
pub(crate) fn spawn<F>(future: F) -> io::Result<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(runtime()?.spawn(future))
}

/// Runs `future` on the runtime and waits for its output.
pub(crate) fn wait<F, T>(future: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    spawn(async move {
        let _ = tx.send(future.await);
    })?;
    rx.recv()
        .unwrap_or_else(|_| Err(io::Error::other("an object store request panicked")))
}
