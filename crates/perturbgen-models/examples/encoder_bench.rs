//! The NB-VAE encoder's first layer at Kaggle size ([1024 cells × 18,211 genes] · [18,211 ×
//! 1024]), the ways its two products could run (issue 26: "a sparse × dense product may beat
//! the dense GEMM"), ms per product:
//!
//!     cargo run --release -p perturbgen-models --example encoder_bench -- [threads] [reps] [sparse]
//!
//! Rows: oneDNN bf16 on the dense input as training runs it (y = X·W; dW = Xᵀ·dY with oneDNN's
//! transposed-A kernel), the same from a transposed copy of X (and what the copy costs), W
//! stored [out, in], and f32 sparse kernels over the counts in CSC form (gene-major: each W or
//! dW row read once, the cells' rows updated) and CSR form (cell-major). Synthetic counts: each
//! gene non-zero with its own probability (skewed, ~8 % dense overall, as counts are 5–8 %).
use perturbgen_models::bf16;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::time::Instant;

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

fn ms<R>(f: impl FnOnce() -> R) -> (R, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    // `sparse`: only sparse_linear's rows (no oneDNN products, no hand-written variants).
    let sparse_only = args.get(3).is_some_and(|s| s == "sparse");
    let (b, g, n) = (1024usize, 18211usize, 1024usize);
    perturbgen_models::limit_threads(threads);
    perturbgen_models::keep_freed_memory();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let p: Vec<f64> = (0..g).map(|_| 0.5 * rng.random::<f64>().powi(6) + 0.01).collect();
    let mut csr: Vec<Vec<(u32, f32)>> = vec![Vec::new(); b];
    for row in csr.iter_mut() {
        for (j, &pj) in p.iter().enumerate() {
            if rng.random::<f64>() < pj {
                row.push((j as u32, (1.0f32 + rng.random_range(0..5) as f32).ln()));
            }
        }
    }
    let nnz: usize = csr.iter().map(Vec::len).sum();
    let w: Vec<f32> = (0..g * n).map(|_| rng.random_range(-0.01..0.01)).collect();
    let dy: Vec<f32> = (0..b * n).map(|_| rng.random_range(-0.01..0.01)).collect();
    let mut colptr = vec![0usize; g + 1];
    csr.iter().flatten().for_each(|&(j, _)| colptr[j as usize + 1] += 1);
    (0..g).for_each(|j| colptr[j + 1] += colptr[j]);
    let (mut fill, mut rows, mut vals) = (colptr.clone(), vec![0u32; nnz], vec![0f32; nnz]);
    for (c, r) in csr.iter().enumerate() {
        for &(j, v) in r {
            let k = fill[j as usize];
            (rows[k], vals[k]) = (c as u32, v);
            fill[j as usize] += 1;
        }
    }
    let mut xd = vec![0f32; b * g];
    csr.iter().enumerate().for_each(|(c, r)| r.iter().for_each(|&(j, v)| xd[c * g + j as usize] = v));
    println!("threads {threads}, median of {reps}; {nnz} non-zeros ({:.1} % dense)", 100.0 * nnz as f64 / (b * g) as f64);
    let mut times: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut record = |name: &'static str, t: f64| match times.iter_mut().find(|(n, _)| *n == name) {
        Some((_, v)) => v.push(t),
        None => times.push((name, vec![t])),
    };
    perturbgen::threads::with_threads(threads, || {
        for rep in 0..=reps {
            // What the NB-VAE runs without AMX (perturbgen_models::sparse_linear): the input by row
            // and by column from a batch's CSR counts, then the two products.
            let batch = perturbgen_models::nb_loss::SparseBatch {
                n_genes: g,
                indptr: std::iter::once(0).chain(csr.iter().scan(0, |acc, r| { *acc += r.len(); Some(*acc) })).collect(),
                indices: csr.iter().flatten().map(|&(j, _)| j).collect(),
                data: csr.iter().flatten().map(|&(_, v)| v).collect(),
                scale: vec![1.0; b],
            };
            let (x, t_build) = ms(|| perturbgen_models::sparse_linear::SparseInput::from_batch(&batch, |v| v, &[], 0));
            let bias = vec![0f32; n];
            let (_, t_lib_fwd) = ms(|| perturbgen_models::sparse_linear::forward(&x.rows, &w, &bias));
            let (_, t_lib_dw) = ms(|| perturbgen_models::sparse_linear::weight_grad(&x.columns, &dy, n));
            let (_, t_axpy_fwd) = ms(|| perturbgen_models::sparse_linear::forward_axpy(&x.columns, &w, &bias));
            let (_, t_axpy_dw) = ms(|| perturbgen_models::sparse_linear::weight_grad_axpy(&x.columns, &dy, n));
            let blocks: Vec<f64> = [256usize, 512, 1024, g].iter().map(|&blk| ms(|| perturbgen_models::sparse_linear::forward_blocked(&x.rows, &w, &bias, blk)).1).collect();
            if rep > 0 {
                record("sparse_linear: the input by row and by column from the batch's CSR counts", t_build);
                record("sparse_linear: y = X·W (the encoder's path without AMX; W rows in blocks of 2,048)", t_lib_fwd);
                record("sparse_linear: dW = Xᵀ·dY", t_lib_dw);
                record("sparse_linear: y = X·W, the earlier axpy form (256-column bands)", t_axpy_fwd);
                record("sparse_linear: dW = Xᵀ·dY, the earlier axpy form", t_axpy_dw);
                for (name, t) in ["sparse_linear: y, W rows in blocks of 256", "sparse_linear: y, W rows in blocks of 512", "sparse_linear: y, W rows in blocks of 1,024", "sparse_linear: y, W rows in one block"].into_iter().zip(blocks) {
                    record(name, t);
                }
            }
            if sparse_only {
                continue;
            }
            let ((xb, wb), t_round) = ms(|| (bf16::to_bf16(&xd), bf16::to_bf16(&w)));
            let dyb = bf16::to_bf16(&dy);
            let (_, t_fwd) = ms(|| bf16::gemm(b, g, n, &xb, false, &wb, false, None).expect("oneDNN"));
            let (_, t_dw) = ms(|| bf16::gemm(g, b, n, &xb, true, &dyb, false, None).expect("oneDNN"));
            let (xt, t_transpose) = ms(|| bf16::transpose(&xb, b, g));
            let (_, t_fwd_t) = ms(|| bf16::gemm(b, g, n, &xt, true, &wb, false, None).expect("oneDNN"));
            let (_, t_dw_t) = ms(|| bf16::gemm(g, b, n, &xt, false, &dyb, false, None).expect("oneDNN"));
            let (wt, dyt) = (bf16::transpose(&wb, g, n), bf16::transpose(&dyb, b, n));
            let (_, t_fwd_wt) = ms(|| bf16::gemm(b, g, n, &xb, false, &wt, true, None).expect("oneDNN"));
            let (_, t_dwt) = ms(|| bf16::gemm(n, b, g, &dyt, false, &xb, false, None).expect("oneDNN"));
            let (_, t_sparse_dw) = ms(|| {
                let mut dw = vec![0f32; g * n];
                dw.par_chunks_mut(n).enumerate().for_each(|(j, row)| (colptr[j]..colptr[j + 1]).for_each(|k| axpy(row, vals[k], &dy[rows[k] as usize * n..(rows[k] as usize + 1) * n])));
                dw
            });
            // Each task owns a band of output columns, so the sums need no locks.
            let banded_forward = |band: usize| {
                let parts: Vec<Vec<f32>> = (0..n / band)
                    .into_par_iter()
                    .map(|h| {
                        let mut yp = vec![0f32; b * band];
                        for j in 0..g {
                            let wr = &w[j * n + h * band..j * n + (h + 1) * band];
                            (colptr[j]..colptr[j + 1]).for_each(|k| axpy(&mut yp[rows[k] as usize * band..(rows[k] as usize + 1) * band], vals[k], wr));
                        }
                        yp
                    })
                    .collect();
                parts
            };
            let (_, t_sparse_csc) = ms(|| banded_forward(n / threads.max(1)));
            // Banded variants: `band` output columns per task (the accumulator B × band in L2).
            for (bi, &band) in [64usize, 128, 256].iter().enumerate() {
                let (_, t) = ms(|| banded_forward(band));
                let (_, t_dw) = ms(|| {
                    let mut dw = vec![0f32; g * n];
                    // Gene blocks × column bands: each task reads one band of dY (B × band).
                    const GENES: usize = 256;
                    dw.par_chunks_mut(GENES * n).enumerate().for_each(|(gb, blk)| {
                        for h in 0..n / band {
                            for (jj, row) in blk.chunks_mut(n).enumerate() {
                                let j = gb * GENES + jj;
                                let out = &mut row[h * band..(h + 1) * band];
                                (colptr[j]..colptr[j + 1]).for_each(|k| axpy(out, vals[k], &dy[rows[k] as usize * n + h * band..rows[k] as usize * n + (h + 1) * band]));
                            }
                        }
                    });
                    dw
                });
                if rep > 0 {
                    record(["f32 sparse: y, CSC, 64-column bands", "f32 sparse: y, CSC, 128-column bands", "f32 sparse: y, CSC, 256-column bands"][bi], t);
                    record(["f32 sparse: dW, CSC, 64-column bands", "f32 sparse: dW, CSC, 128-column bands", "f32 sparse: dW, CSC, 256-column bands"][bi], t_dw);
                }
            }
            let (_, t_sparse_csr) = ms(|| {
                let mut y = vec![0f32; b * n];
                y.par_chunks_mut(n).enumerate().for_each(|(c, yr)| csr[c].iter().for_each(|&(j, v)| axpy(yr, v, &w[j as usize * n..(j as usize + 1) * n])));
                y
            });
            if rep == 0 {
                continue; // warm-up: oneDNN compiles each shape on first use
            }
            record("round X and W to bf16 (dense)", t_round);
            record("oneDNN bf16: y = X·W", t_fwd);
            record("oneDNN bf16: dW = Xᵀ·dY (transposed-A kernel; training)", t_dw);
            record("transpose X (bf16, tiled)", t_transpose);
            record("oneDNN bf16: y from Xᵀ", t_fwd_t);
            record("oneDNN bf16: dW from Xᵀ", t_dw_t);
            record("oneDNN bf16: y = X·Wᵀ (W stored [out, in])", t_fwd_wt);
            record("oneDNN bf16: dWᵀ = dYᵀ·X", t_dwt);
            record("f32 sparse: dW = Xᵀ·dY (CSC, one dW row per gene)", t_sparse_dw);
            record("f32 sparse: y = X·W (CSC, column bands per thread)", t_sparse_csc);
            record("f32 sparse: y = X·W (CSR, W rows per cell)", t_sparse_csr);
        }
    })
    .expect("thread pool");
    println!("| product | ms (median) |\n|---|---:|");
    for (name, mut v) in times {
        v.sort_by(f64::total_cmp);
        println!("| {name} | {:.1} |", v[v.len() / 2]);
    }
}
