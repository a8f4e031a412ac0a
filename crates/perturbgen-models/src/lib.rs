//! The generative models (SPEC §4): a conditional Deep Generative Decoder and a conditional
//! NB-VAE in candle, trained on counts with a negative-binomial likelihood.
pub mod adam;
pub mod bf16;
pub mod calibration;
pub mod error;
mod fast_math;
mod gathered_rows;
pub mod checkpoint;
pub mod config;
pub mod counterfactual;
pub mod data;
pub mod generate;
pub mod generated_de;
pub mod gmm;
pub mod handed_grads;
pub mod loglik;
pub mod nb_head;
pub mod nb_loss;
mod nb_sparse;
mod nb_math;
pub mod network;
pub mod new_targets;
pub mod nn;
pub mod onednn;
pub mod probe;
pub mod plots;
pub mod report;
pub mod sparse_linear;
pub mod train;

pub use error::{Error, Result};

use candle_core::Device;

/// Parses a device name: `cpu` (None) or `cuda[:N]` (Some(N)).
pub fn device_kind(name: &str) -> std::result::Result<Option<usize>, String> {
    match name {
        "cpu" => Ok(None),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = s.strip_prefix("cuda:").map(|n| n.parse::<usize>()).transpose().map_err(|_| format!("bad device `{s}` (expected cuda:N)"))?;
            if !cfg!(feature = "cuda") {
                return Err(format!("device `{s}`: this build has no CUDA support (rebuild with `--features cuda`)"));
            }
            Ok(Some(ordinal.unwrap_or(0)))
        }
        s => Err(format!("unknown device `{s}` (expected cpu or cuda[:N])")),
    }
}

/// The compute device: `cpu` (default) or `cuda[:N]` (needs the `cuda` feature).
pub fn device(name: &str) -> Result<Device> {
    match device_kind(name).map_err(|m| Error::param("--device", m))? {
        None => Ok(Device::Cpu),
        Some(ordinal) => Ok(Device::new_cuda(ordinal)?),
    }
}

/// Caps candle's own CPU parallelism (its matmul and reduction pools read these variables once,
/// at first use) at `threads`, and oneDNN's (OpenMP reads OMP_NUM_THREADS when the library is
/// loaded, [`onednn`]); must run before the first tensor operation.
pub fn limit_threads(threads: usize) {
    let n = threads.to_string();
    // SAFETY-free in edition 2021; called at start-up before other threads exist.
    std::env::set_var("RAYON_NUM_THREADS", &n);
    std::env::set_var("CANDLE_NUM_THREADS", &n);
    std::env::set_var("OMP_NUM_THREADS", &n);
}

/// Makes glibc's malloc keep freed memory for reuse. A training step allocates and frees ~0.5 GB
/// of batch × gene buffers (logits, gradients) at Kaggle size; glibc serves blocks above 32 MiB
/// with fresh mmaps, so every step paid ~120k page faults and zeroing (~10 % of the step,
/// perf). With mmap off, one arena (a thread's own arena would still mmap blocks above its 64 MiB
/// heap size) and trimming only above 2 GiB of free heap, the blocks are reused.
/// No-op on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called at start-up.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
