//! The decoder's big product and its two backward products at the real sizes
//! ([1024 × 1024] · [1024 × 18211]), f32 vs bf16, GFLOP/s:
//!
//!     cargo run --release -p perturbgen-models --example matmul_bench -- [threads] [reps]
//!
//! Rows: candle f32 (what `precision: f32` runs), candle BF16 tensors (`to_dtype(BF16)`, then
//! matmul: candle 0.11 widens to f32 inside), oneDNN bf16 (`precision: bf16`; product alone,
//! and with the f32 → bf16 rounding of its inputs that training pays).
use candle_core::{DType, Device, Tensor};
use perturbgen_models::bf16;
use std::time::Instant;

fn best<F: FnMut() -> candle_core::Result<()>>(reps: usize, mut f: F) -> candle_core::Result<f64> {
    f()?; // warm-up (JIT, thread pools)
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    perturbgen_models::limit_threads(threads);
    // As pgen-train: freed blocks are reused, so a fresh output buffer costs no page faults.
    perturbgen_models::keep_freed_memory();
    let (b, h, g) = (1024usize, 1024usize, 18211usize);
    let flop = 2.0 * (b * h * g) as f64;
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (b, h), &dev)?;
    let w = Tensor::randn(0f32, 0.03, (h, g), &dev)?;
    let dy = Tensor::randn(0f32, 1e-3, (b, g), &dev)?;
    let report = |name: &str, product: &str, s: f64| println!("| {name} | {product} | {:.1} | {:.0} |", s * 1e3, flop / s / 1e9);
    println!("threads {threads}, best of {reps}; CPU: {}; oneDNN: {:?}", bf16::CpuBf16::detect().describe(), bf16::backend_check());
    println!("| backend | product | ms | GFLOP/s |\n|---|---|---|---|");
    perturbgen::threads::with_threads(threads, || -> candle_core::Result<()> {
        report("candle f32", "y = x·W", best(reps, || x.matmul(&w).map(|_| ()))?);
        report("candle f32", "dX = dY·Wᵀ", best(reps, || dy.matmul(&w.t()?).map(|_| ()))?);
        report("candle f32", "dW = Xᵀ·dY", best(reps, || x.t()?.matmul(&dy).map(|_| ()))?);
        let (xh, wh) = (x.to_dtype(DType::BF16)?, w.to_dtype(DType::BF16)?);
        report("candle BF16 tensors", "y = x·W", best(reps.min(1), || xh.matmul(&wh).map(|_| ()))?);
        if bf16::backend_check().is_ok() {
            let (xv, wv, dyv) = (x.flatten_all()?.to_vec1::<f32>()?, w.flatten_all()?.to_vec1::<f32>()?, dy.flatten_all()?.to_vec1::<f32>()?);
            let (xb, wb, dyb) = (bf16::to_bf16(&xv), bf16::to_bf16(&wv), bf16::to_bf16(&dyv));
            report("oneDNN bf16", "y = x·W", best(reps, || bf16::gemm(b, h, g, &xb, false, &wb, false, None).map(|_| ()))?);
            report("oneDNN bf16", "dX = dY·Wᵀ", best(reps, || bf16::gemm(b, g, h, &dyb, false, &wb, true, None).map(|_| ()))?);
            report("oneDNN bf16", "dW = Xᵀ·dY", best(reps, || bf16::gemm(h, b, g, &xb, true, &dyb, false, None).map(|_| ()))?);
            report("oneDNN bf16", "dW = Xᵀ·dY, Xᵀ copied first", best(reps, || bf16::gemm(h, b, g, &bf16::transpose(&xb, b, h), false, &dyb, false, None).map(|_| ()))?);
            let conv = best(reps, || {
                let _ = (bf16::to_bf16(&wv), bf16::to_bf16(&dyv));
                Ok(())
            })?;
            println!("rounding W and dY to bf16 (2 × {} values): {:.1} ms", h * g, conv * 1e3);
            let xw = Tensor::randn(0f32, 1.0, (b, h), &dev)?;
            let bias = Tensor::zeros(g, DType::F32, &dev)?;
            let (wv, bv) = (candle_core::Var::from_tensor(&w)?, candle_core::Var::from_tensor(&bias)?);
            let f32_step = best(reps, || {
                let y = xw.matmul(wv.as_tensor())?.broadcast_add(bv.as_tensor())?;
                (y * &dy)?.sum_all()?.backward().map(|_| ())
            })?;
            let bf16_step = best(reps, || {
                let y = bf16::linear(&xw, wv.as_tensor(), bv.as_tensor())?;
                (y * &dy)?.sum_all()?.backward().map(|_| ())
            })?;
            println!("whole layer (forward + backward through candle autograd): f32 {:.1} ms, bf16 {:.1} ms", f32_step * 1e3, bf16_step * 1e3);
        }
        Ok(())
    })
    .map_err(|e| candle_core::Error::Msg(e.to_string()))??;
    Ok(())
}
