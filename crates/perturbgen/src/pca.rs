//! Principal components of a centred n × g matrix by randomised subspace iteration, for
//! matrices too wide for a g × g eigenproblem (the forest route's log-CPM at 18,211 genes) and
//! for the 2-D projection of model latents. Hand-written: smartcore's PCA diagonalises the
//! g × g covariance; the only other piece needed is a small symmetric eigensolver (Jacobi).
use rayon::prelude::*;

/// SplitMix64: seeds derived from (seed, index…) without an RNG stream, independent of threads.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Orthonormalises the columns of `a` (rows × cols, row-major) in place (modified Gram–Schmidt,
/// twice for stability); a column that vanishes is left at zero.
fn orthonormalise(a: &mut [f64], rows: usize, cols: usize) {
    for _pass in 0..2 {
        for j in 0..cols {
            for k in 0..j {
                let dot: f64 = (0..rows).map(|i| a[i * cols + j] * a[i * cols + k]).sum();
                for i in 0..rows {
                    a[i * cols + j] -= dot * a[i * cols + k];
                }
            }
            let norm = (0..rows).map(|i| a[i * cols + j].powi(2)).sum::<f64>().sqrt();
            for i in 0..rows {
                a[i * cols + j] = if norm > 1e-12 { a[i * cols + j] / norm } else { 0.0 };
            }
        }
    }
}

/// Eigen-decomposition of a small symmetric matrix (cyclic Jacobi): eigenvalues descending,
/// eigenvectors as columns of the returned row-major matrix.
fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * n + j].powi(2)).sum();
        let total: f64 = a.iter().map(|x| x * x).sum();
        if off <= 1e-24 * total.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]).then(i.cmp(&j)));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vectors = vec![0.0; n * n];
    for (new, &old) in order.iter().enumerate() {
        for k in 0..n {
            vectors[k * n + new] = v[k * n + old];
        }
    }
    (values, vectors)
}

/// `a` (n × g) times `b` (g × l), row-major; rows in parallel (each element summed in a fixed
/// order, so the result does not depend on the thread count).
fn matmul(a: &[f64], b: &[f64], n: usize, g: usize, l: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * l];
    out.par_chunks_mut(l.max(1)).enumerate().for_each(|(i, row)| {
        let ai = &a[i * g..(i + 1) * g];
        for (k, &x) in ai.iter().enumerate() {
            if x != 0.0 {
                let bk = &b[k * l..(k + 1) * l];
                for (o, &y) in row.iter_mut().zip(bk) {
                    *o += x * y;
                }
            }
        }
    });
    out
}

/// `aᵀ` (g × n) times `q` (n × l) for `a` n × g row-major: per gene in parallel.
fn matmul_t(a: &[f64], q: &[f64], n: usize, g: usize, l: usize) -> Vec<f64> {
    let mut out = vec![0.0; g * l];
    out.par_chunks_mut(l.max(1)).enumerate().for_each(|(j, row)| {
        for i in 0..n {
            let x = a[i * g + j];
            if x != 0.0 {
                for (o, &y) in row.iter_mut().zip(&q[i * l..(i + 1) * l]) {
                    *o += x * y;
                }
            }
        }
    });
    out
}

/// Top `k` principal components of the centred matrix `y` (n × g): (scores n × k, loadings g × k).
/// Randomised subspace iteration (Halko et al. 2011) with `k + 10` columns and 4 power steps,
/// started from a SplitMix64 matrix of `seed`: deterministic and exact enough for the top
/// components, without an n × n or g × g eigenproblem (18,211 genes at Kaggle size).
pub fn pca(y: &[f64], n: usize, g: usize, k: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let l = (k + 10).min(n).min(g);
    let omega: Vec<f64> = (0..g * l).map(|i| (mix(seed ^ mix(i as u64)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5).collect();
    let mut q = matmul(y, &omega, n, g, l);
    orthonormalise(&mut q, n, l);
    for _ in 0..4 {
        let mut z = matmul_t(y, &q, n, g, l);
        orthonormalise(&mut z, g, l);
        q = matmul(y, &z, n, g, l);
        orthonormalise(&mut q, n, l);
    }
    // B = Qᵀ Y (l × g); B Bᵀ = U S² Uᵀ; scores = Q U S, loadings = Bᵀ U / S.
    let bt = matmul_t(y, &q, n, g, l); // g × l = Bᵀ
    let mut bbt = vec![0.0; l * l];
    for a in 0..l {
        for b in 0..l {
            bbt[a * l + b] = (0..g).map(|j| bt[j * l + a] * bt[j * l + b]).sum();
        }
    }
    let (values, u) = symmetric_eigen(bbt, l);
    let k = k.min(l);
    let mut scores = vec![0.0; n * k];
    let mut loadings = vec![0.0; g * k];
    for c in 0..k {
        let s = values[c].max(0.0).sqrt();
        // Sign convention: the largest |loading| of each component is positive.
        let mut col: Vec<f64> = (0..g).map(|j| if s > 1e-12 { (0..l).map(|a| bt[j * l + a] * u[a * l + c]).sum::<f64>() / s } else { 0.0 }).collect();
        let big = col.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if big < 0.0 {
            col.iter_mut().for_each(|x| *x = -*x);
        }
        for j in 0..g {
            loadings[j * k + c] = col[j];
        }
    }
    // Scores = Y V (exactly the projection the back-transform inverts).
    let sc = matmul(y, &loadings, n, g, k);
    scores.copy_from_slice(&sc);
    (scores, loadings)
}

