//! The threads loads and saves spread their CPU work over: checksums, copies into the model,
//! hashing while writing.
//!
//! One standing pool per thread count, made on first use and kept: a load of a large model
//! hands it hundreds of tensors, and spawning threads for each would cost more than the copies
//! of the small ones. The formats use rayon's parallel iterators, which run on whichever pool
//! the entry point installed, so a format needs no knowledge of the count.

use std::sync::{Arc, Mutex, OnceLock};

/// The environment variable that sets the default thread count (`CKPT_THREADS=1` for the
/// serial paths); unset or unparsable, every core is used.
pub(crate) const ENV: &str = "CKPT_THREADS";

/// The most threads a pool gets, whatever is asked: more than a machine's cores only adds
/// switching, and each thread may hold a chunk of the file in memory.
const MAX: usize = 256;

/// The thread count `requested` resolves to: itself, or `CKPT_THREADS`, or every core; at
/// least one.
pub(crate) fn count(requested: Option<usize>) -> usize {
    requested
        .or_else(|| std::env::var(ENV).ok()?.trim().parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, MAX)
}

/// Runs `work` on the pool of `requested` threads (see [`count`]); where no pool can be made
/// (the system refuses threads), on rayon's global pool.
pub(crate) fn run<R: Send>(requested: Option<usize>, work: impl FnOnce() -> R + Send) -> R {
    match pool(count(requested)) {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// The pools made so far, by thread count.
type Pools = Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>>;

fn pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Some(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("ckpt-cpu-{threads}-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    pools.push((threads, Arc::clone(&pool)));
    Some(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_as_many_threads_as_asked() {
        for threads in [1, 2, 3] {
            assert_eq!(count(Some(threads)), threads);
            assert_eq!(run(Some(threads), rayon::current_num_threads), threads);
            let name = run(Some(threads), || {
                std::thread::current().name().map(str::to_owned)
            });
            let prefix = format!("ckpt-cpu-{threads}-");
            assert!(name.is_some_and(|n| n.starts_with(&prefix)));
        }
        assert_eq!(count(Some(0)), 1);
    }
}
