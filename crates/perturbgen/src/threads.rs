//! Every stage takes a thread count and uses no more: work runs inside a rayon pool of exactly
//! that size (on clusters, oversubscribing the cores Slurm granted is the first complaint).
use crate::error::{Error, Result};

/// Runs `f` inside a rayon pool of `threads` threads (0 means the number of available cores).
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("pgen-worker-{i}"))
        .build()
        .map_err(|source| Error::Threads { threads, source })?;
    Ok(pool.install(f))
}
