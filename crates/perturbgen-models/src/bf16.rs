//! The decoder's matrix products in reduced precision (`train.precision`): bf16 inputs, f32
//! accumulation and outputs, on the CPU's AMX-BF16 / AVX512-BF16 units through oneDNN
//! ([`crate::onednn`]). Only the decoder's Linear layers change ([`linear`]: forward x·W + b,
//! backward dX = dY·Wᵀ and dW = Xᵀ·dY with x, W and dY rounded to bf16); the weights, their
//! gradients, Adam's state, the NB likelihood and everything else stay f32. With `f32` the
//! decoder runs candle's f32 `matmul` exactly as before.
use crate::config::Precision;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Forward passes of [`linear`] so far in this process (tests: the f32 path never runs it).
static LINEAR_CALLS: AtomicUsize = AtomicUsize::new(0);

pub fn linear_calls() -> usize {
    LINEAR_CALLS.load(Ordering::Relaxed)
}

/// What the decoder's products run in, once `train.precision` is resolved on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    /// candle's f32 matmul (the default, and what scoring always uses).
    #[default]
    F32,
    /// bf16 inputs, f32 accumulation: [`linear`] (oneDNN) on the CPU, [`linear_via_tensors`] on a GPU.
    Bf16,
}

impl MatmulPrecision {
    /// The `train.precision` value this is (`f32` | `bf16`), as checkpoints record it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }
}

/// The CPU's bf16 matrix units (x86_64 CPUID; none elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuBf16 {
    /// AVX512-BF16 (Cooper Lake, Sapphire Rapids, Zen 4 and later): bf16 dot products.
    pub avx512_bf16: bool,
    /// AMX-BF16 (Sapphire Rapids and later): bf16 tile matrix multiply.
    pub amx_bf16: bool,
}

impl CpuBf16 {
    /// This CPU's units: CPUID leaf 7 subleaf 1 EAX bit 5 (AVX512-BF16) and subleaf 0 EDX bit
    /// 22 (AMX-BF16), each only with AVX-512 enabled by the OS (AMX tile state is requested from
    /// the kernel by oneDNN itself).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{__cpuid, __cpuid_count};
            if !std::arch::is_x86_feature_detected!("avx512f") {
                return Self::default();
            }
            // SAFETY: CPUID exists on every x86_64 CPU; leaf 7 is checked against the highest
            // leaf first. (The intrinsics are safe functions in newer Rust, unsafe in older ones.)
            #[allow(unused_unsafe)]
            let (max_leaf, sub0, sub1) = unsafe { (__cpuid(0).eax, __cpuid_count(7, 0), __cpuid_count(7, 1)) };
            if max_leaf < 7 {
                return Self::default();
            }
            Self { avx512_bf16: sub1.eax & (1 << 5) != 0, amx_bf16: sub0.edx & (1 << 22) != 0 }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self::default()
    }

    pub fn any(self) -> bool {
        self.avx512_bf16 || self.amx_bf16
    }

    pub fn describe(self) -> String {
        let units: Vec<&str> = [(self.amx_bf16, "AMX-BF16"), (self.avx512_bf16, "AVX512-BF16")].into_iter().filter_map(|(on, n)| on.then_some(n)).collect();
        if units.is_empty() {
            "no bf16 units".into()
        } else {
            units.join(" + ")
        }
    }
}

/// `train.precision` for a run on a CPU with `cpu`'s units, `backend` the bf16 library's
/// availability (Err: why not). `auto` takes bf16 only with both, else f32; `bf16` without them
/// is an error (an explicit request is not silently dropped; `auto` is the fallback).
pub fn resolve(requested: Precision, cpu: CpuBf16, backend: Result<(), String>) -> Result<MatmulPrecision, String> {
    match requested {
        Precision::F32 => Ok(MatmulPrecision::F32),
        Precision::Auto => Ok(if cpu.any() && backend.is_ok() { MatmulPrecision::Bf16 } else { MatmulPrecision::F32 }),
        Precision::Bf16 if !cpu.any() => Err("bf16 needs a CPU with AMX-BF16 or AVX512-BF16 units, this one has neither (use f32 or auto)".into()),
        Precision::Bf16 => backend.map(|()| MatmulPrecision::Bf16).map_err(|e| format!("bf16 needs oneDNN: {e} (or use f32 or auto)")),
    }
}

/// Resolves `train.precision` on this machine for `device` (bf16 is a CPU path: `auto` on a GPU
/// is f32) and logs the choice; errors name the key.
pub fn resolve_for(requested: Precision, device: &candle_core::Device) -> crate::Result<MatmulPrecision> {
    if !device.is_cpu() {
        // On a GPU bf16 is candle's own BF16 matmul ([`linear_via_tensors`]); `auto` stays f32
        // there until the GPU check (bench/gpu/check.sh) has measured it.
        return Ok(match requested {
            Precision::Bf16 => {
                log::info!("precision: bf16 decoder products on the device (candle BF16 tensors), f32 weights");
                MatmulPrecision::Bf16
            }
            _ => {
                log::info!("precision: f32 (device is not the CPU)");
                MatmulPrecision::F32
            }
        });
    }
    let cpu = CpuBf16::detect();
    // Only look for the library when bf16 could be used.
    let backend = if requested == Precision::F32 || !cpu.any() { Err("not needed".to_string()) } else { backend_check() };
    let chosen = resolve(requested, cpu, backend.clone().map(|_| ())).map_err(|m| crate::Error::param("train.precision", m))?;
    match (requested, chosen, &backend) {
        (_, MatmulPrecision::Bf16, Ok(kernel)) => {
            log::info!("precision: bf16 decoder products ({}; oneDNN kernel {kernel}), f32 accumulation and weights", cpu.describe())
        }
        (Precision::F32, ..) => log::info!("precision: f32 (as set)"),
        (_, _, Err(why)) if cpu.any() => log::info!("precision: f32 (auto: this CPU has {}, but {why})", cpu.describe()),
        _ => log::info!("precision: f32 (auto: this CPU has no bf16 units)"),
    }
    Ok(chosen)
}

/// Loads oneDNN and compiles a probe product: Ok(the kernel's name) where bf16 runs.
pub fn backend_check() -> Result<String, String> {
    let lib = crate::onednn::get()?;
    lib.implementation(64, 64, 64).map(|name| format!("{name}, oneDNN {}", lib.version))
}

/// f32 → bf16 bits, rounding to nearest even (NaN stays NaN).
#[inline]
pub fn to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    // Both branches computed, then selected: the loop over a slice vectorises.
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16;
    let nan = (u >> 16) | 0x40;
    (if u & 0x7fff_ffff > 0x7f80_0000 { nan } else { rounded }) as u16
}

pub fn from_bf16_bits(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// `src` ([rows, n_cols] row-major) rounded to bf16, and its column sums in f32 (a layer's bias
/// gradient from its output gradient, in the same pass over memory). Rows go in fixed blocks,
/// each summed in row order, the blocks' sums then added in block order: the same bits for any
/// thread count.
pub fn to_bf16_with_column_sums(src: &[f32], n_cols: usize) -> (Vec<u16>, Vec<f32>) {
    const ROWS: usize = 32;
    let mut out = vec![0u16; src.len()];
    let block = ROWS * n_cols.max(1);
    let partial: Vec<Vec<f32>> = out
        .par_chunks_mut(block)
        .zip(src.par_chunks(block))
        .map(|(o, s)| {
            let mut sums = vec![0f32; n_cols];
            for (o, s) in o.chunks_mut(n_cols).zip(s.chunks(n_cols)) {
                round_and_add(o, s, &mut sums);
            }
            sums
        })
        .collect();
    let mut sums = vec![0f32; n_cols];
    for p in &partial {
        sums.iter_mut().zip(p).for_each(|(a, &v)| *a += v);
    }
    (out, sums)
}

/// `src` rounded to bf16, in parallel on the current rayon pool.
pub fn to_bf16(src: &[f32]) -> Vec<u16> {
    const CHUNK: usize = 1 << 16;
    let mut out = vec![0u16; src.len()];
    out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| round(o, s));
    out
}

// The rounding loops compiled per vector ISA (integer operations and, for the sums, one f32
// addition per column in row order: the same bits on every CPU).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn round(out: &mut [u16], src: &[f32]) {
    out.iter_mut().zip(src).for_each(|(o, &v)| *o = to_bf16_bits(v));
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
fn round_and_add(out: &mut [u16], src: &[f32], sums: &mut [f32]) {
    for ((o, &v), acc) in out.iter_mut().zip(src).zip(sums.iter_mut()) {
        *o = to_bf16_bits(v);
        *acc += v;
    }
}

/// An input of our linear ops (this module's and [`crate::sparse_linear`]'s) as a contiguous f32 slice.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        (CpuStorage::F32(_), None) => candle_core::bail!("linear op: {what} must be contiguous"),
        _ => candle_core::bail!("linear op: {what} must be f32, found {:?}", s.dtype()),
    }
}

/// `t`'s values (made contiguous; f32 on the CPU) passed to `f`.
pub(crate) fn with_cpu_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => Ok(f(f32_slice(s, layout, what)?)),
        _ => candle_core::bail!("linear op: {what} is not on the CPU"),
    }
}

fn tensor_bf16(t: &Tensor, what: &str) -> candle_core::Result<Vec<u16>> {
    with_cpu_f32(t, what, to_bf16)
}

/// c[m, n] = op(a)·op(b) (+ bias) on bf16 bits, f32 accumulation ([`crate::onednn::OneDnn::gemm`]).
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, k: usize, n: usize, a: &[u16], a_trans: bool, b: &[u16], b_trans: bool, bias: Option<&[f32]>) -> candle_core::Result<Vec<f32>> {
    let lib = crate::onednn::get().map_err(candle_core::Error::Msg)?;
    // No memset: oneDNN overwrites the whole product.
    let mut c: Vec<f32> = Vec::with_capacity(m * n);
    lib.gemm(m, k, n, a, a_trans, b, b_trans, bias, &mut c.spare_capacity_mut()[..m * n]).map_err(candle_core::Error::Msg)?;
    // SAFETY: gemm returned Ok, so every one of the m·n elements was written.
    unsafe { c.set_len(m * n) };
    Ok(c)
}

/// `src` ([rows, cols] row-major bf16 bits) transposed to [cols, rows].
pub fn transpose(src: &[u16], rows: usize, cols: usize) -> Vec<u16> {
    const TILE: usize = 64;
    let mut out = vec![0u16; src.len()];
    // Tiles of 64 × 64 keep both sides' cache lines in L1; column bands in parallel.
    out.par_chunks_mut(TILE * rows.max(1)).enumerate().for_each(|(band, o)| {
        let c0 = band * TILE;
        let width = (cols - c0).min(TILE);
        for r0 in (0..rows).step_by(TILE) {
            for c in 0..width {
                for r in r0..(r0 + TILE).min(rows) {
                    o[c * rows + r] = src[r * cols + c0 + c];
                }
            }
        }
    });
    out
}

/// y = x·W + b as one op whose products take bf16 inputs (see the module doc).
struct LinearBf16 {
    /// x and W in bf16 from the forward pass, for the backward one.
    saved: Mutex<Option<(Vec<u16>, Vec<u16>)>>,
    /// Whether the backward pass computes dL/dx: not for data no gradient flows to (the
    /// NB-VAE encoder's counts), where dY·Wᵀ would be a third product of the layer's size.
    input_grad: bool,
}

impl LinearBf16 {
    fn new(input_grad: bool) -> Self {
        Self { saved: Mutex::new(None), input_grad }
    }
}

impl CustomOp3 for LinearBf16 {
    fn name(&self) -> &'static str {
        "linear_bf16"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w, b) = (f32_slice(s1, l1, "x")?, f32_slice(s2, l2, "weight")?, f32_slice(s3, l3, "bias")?);
        let (m, k) = l1.shape().dims2()?;
        let (k2, n) = l2.shape().dims2()?;
        if k != k2 || b.len() != n {
            candle_core::bail!("linear_bf16: x {:?}, weight {:?} and bias {:?} do not fit", l1.shape(), l2.shape(), l3.shape());
        }
        LINEAR_CALLS.fetch_add(1, Ordering::Relaxed);
        let (xb, wb) = (to_bf16(x), to_bf16(w));
        let y = gemm(m, k, n, &xb, false, &wb, false, Some(b))?;
        if let Ok(mut slot) = self.saved.lock() {
            *slot = Some((xb, wb));
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, k) = x.dims2()?;
        let n = w.dim(1)?;
        let saved = self.saved.lock().ok().and_then(|mut s| s.take());
        let (xb, wb) = match saved {
            Some(v) => v,
            None => (tensor_bf16(x, "x")?, tensor_bf16(w, "weight")?), // a second backward pass
        };
        let (dyb, db) = with_cpu_f32(dy, "output gradient", |dy| to_bf16_with_column_sums(dy, n))?;
        let device = x.device();
        let dx = match self.input_grad {
            true => Some(Tensor::from_vec(gemm(m, n, k, &dyb, false, &wb, true, None)?, (m, k), device)?), // dY[m,n] · Wᵀ (W stored [k,n])
            false => None,
        };
        // Xᵀ·dY[m,n] with Xᵀ copied first: oneDNN's kernel for a transposed A is slower by more
        // than the copy where x is small (the decoder's big layer, x [1024, 1024]: 52 → 40 ms,
        // examples/matmul_bench; not so for the encoder's [1024, 18,223] counts, see below).
        let dw = gemm(k, m, n, &transpose(&xb, m, k), false, &dyb, false, None)?;
        let db = Tensor::from_vec(db, n, device)?;
        Ok((dx, Some(Tensor::from_vec(dw, (k, n), device)?), Some(db)))
    }
}

/// y = x·W + b (x [B, in], W [in, out], b [out], f32) with the products in bf16 / f32 accumulate.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, LinearBf16::new(true))
}

/// [`linear`] for an input no gradient flows to (data): the backward pass computes the weight
/// and bias gradients only (two products instead of three).
pub fn linear_of_data(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, LinearBf16::new(false))
}

/// y = x·W + b for data x given already rounded to bf16 (`x`: [m, k] row-major bits), W [k, n]
/// and b [n] f32 variables: the backward pass computes dW = Xᵀ·dY and db only. The NB-VAE
/// encoder's input is built this way straight from the sparse counts
/// ([`crate::nb_loss::SparseBatch::encoder_input_bf16`]): rounding an f32 dense copy, and the
/// copy itself, cost more per step than the product (measured at Kaggle scale, ~40 ms of ~0.5 s).
struct LinearBf16OfData {
    x: Vec<u16>,
    m: usize,
    /// Some: dW goes here, not to autograd (see [`crate::handed_grads`]).
    handed: Option<crate::handed_grads::HandedGrads>,
}

impl candle_core::CustomOp2 for LinearBf16OfData {
    fn name(&self) -> &'static str {
        "linear_bf16_of_data"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (w, b) = (f32_slice(s1, l1, "weight")?, f32_slice(s2, l2, "bias")?);
        let (k, n) = l1.shape().dims2()?;
        if self.x.len() != self.m * k || b.len() != n {
            candle_core::bail!("linear_bf16_of_data: x ({} values for {} rows), weight {:?} and bias {:?} do not fit", self.x.len(), self.m, l1.shape(), l2.shape());
        }
        LINEAR_CALLS.fetch_add(1, Ordering::Relaxed);
        let y = gemm(self.m, k, n, &self.x, false, &to_bf16(w), false, Some(b))?;
        Ok((CpuStorage::F32(y), Shape::from((self.m, n))))
    }

    fn bwd(&self, w: &Tensor, _b: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (k, n) = w.dims2()?;
        let (dyb, db) = with_cpu_f32(dy, "output gradient", |dy| to_bf16_with_column_sums(dy, n))?;
        // Xᵀ (x stored [m,k]) · dY[m,n] with oneDNN's transposed-A kernel: for the counts
        // ([1,024, 18,223]) it takes ~47 ms against ~33 ms from a transposed copy, but the copy
        // costs more than the difference (a tiled transpose ~25 ms, scattering the sparse counts
        // into the transposed layout ~15 ms: random writes over 37 MB), examples/encoder_bench.
        let dw = Tensor::from_vec(gemm(k, self.m, n, &self.x, true, &dyb, false, None)?, (k, n), w.device())?;
        let dw = match &self.handed {
            Some(handed) => {
                handed.push(w, dw)?;
                None
            }
            None => Some(dw),
        };
        Ok((dw, Some(Tensor::from_vec(db, n, w.device())?)))
    }
}

/// [`linear_of_data`] for data already in bf16 (`x`: `m` rows of W's input width, row-major
/// bits): the same products and bits, without an f32 copy of the data to round. With `handed`,
/// dW goes there instead of to autograd.
pub fn linear_of_bf16_data(x: Vec<u16>, m: usize, weight: &Tensor, bias: &Tensor, handed: Option<crate::handed_grads::HandedGrads>) -> candle_core::Result<Tensor> {
    weight.contiguous()?.apply_op2(&bias.contiguous()?, LinearBf16OfData { x, m, handed })
}

/// y = x·W + b through candle's own BF16 tensors: the inputs cast to bf16, candle's matmul (on
/// CUDA: cuBLAS with f32 accumulation, candle's default), the product cast back to f32 (so it is
/// rounded to bf16 once, as under PyTorch's autocast), the bias added in f32. Autograd runs
/// through the casts, so the gradients reach the f32 weights. The GPU's bf16 path: on the CPU,
/// candle's BF16 matmul widens to f32 and is slower than f32 (measured), hence [`linear`] there.
pub fn linear_via_tensors(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::DType;
    x.to_dtype(DType::BF16)?.matmul(&weight.to_dtype(DType::BF16)?)?.to_dtype(DType::F32)?.broadcast_add(bias)
}

/// c = a·b (f32 [m, k] · [k, n]) with bf16 inputs and f32 accumulation, no gradient: for tests
/// and benchmarks.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> candle_core::Result<Vec<f32>> {
    gemm(m, k, n, &to_bf16(a), false, &to_bf16(b), false, None)
}
