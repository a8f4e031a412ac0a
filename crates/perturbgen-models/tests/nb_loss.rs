//! The NB log-likelihood op against independent truth: statrs' negative-binomial log-pmf and
//! digamma, its gradients against finite differences, and finite values at extreme logits.
use candle_core::{DType, Device, Tensor, Var};
use perturbgen_models::nb_loss::{digamma, nb_log_likelihood, nb_nll, Dispersion, Link, SparseBatch};
use statrs::distribution::{Discrete, NegativeBinomial};
use std::sync::Arc;

const KS: [f64; 8] = [0.0, 1.0, 2.0, 7.0, 40.0, 1000.0, 31_623.0, 100_000.0];
const MS: [f64; 7] = [1e-8, 1e-4, 0.3, 5.0, 400.0, 2e4, 1e5];
const RS: [f64; 6] = [0.05, 0.7, 2.0, 30.0, 1e3, 1e5];

/// The reference log-pmf: statrs, P(k) = C(k+r−1, k) p^r (1−p)^k with p = r / (r + m).
/// When m/(r+m) < 1e-9, p rounds in f64 and statrs' k·log(1−p) is off by up to 1e-3 relative,
/// so there the reference is the same pmf written out by hand, in another way than ours: the
/// gamma ratio as the explicit sum Σ_{i<k} log(r+i) − log k!, and q = m/(r+m) computed directly.
fn statrs_logpmf(k: f64, m: f64, r: f64) -> f64 {
    let q = m / (r + m);
    if q < 1e-9 {
        let gamma_ratio: f64 = (0..k as u64).map(|i| (r + i as f64).ln() - ((i + 1) as f64).ln()).sum();
        return gamma_ratio + r * (-q).ln_1p() + if k > 0.0 { k * q.ln() } else { 0.0 };
    }
    NegativeBinomial::new(r, r / (r + m)).expect("valid NB").ln_pmf(k as u64)
}

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn nb_log_likelihood_matches_statrs_on_grid() {
    let mut worst = (0.0, 0.0, 0.0, 0.0);
    for &k in &KS {
        for &m in &MS {
            for &r in &RS {
                let ours = nb_log_likelihood(k, m, r);
                let reference = statrs_logpmf(k, m, r);
                assert!(ours.is_finite(), "k={k} m={m} r={r}: {ours}");
                let e = rel_err(ours, reference);
                if e > worst.0 {
                    worst = (e, k, m, r);
                }
            }
        }
    }
    assert!(worst.0 < 1e-5, "worst relative error {:.2e} at k={} m={} r={}", worst.0, worst.1, worst.2, worst.3);
}

#[test]
fn digamma_matches_statrs() {
    for &x in &[1e-3, 0.05, 0.5, 1.0, 2.5, 6.0, 17.3, 1e3, 1e5 + 0.25] {
        let (ours, reference) = (digamma(x), statrs::function::gamma::digamma(x));
        assert!((ours - reference).abs() <= 1e-10 * reference.abs().max(1.0), "ψ({x}) = {ours}, statrs {reference}");
    }
    // Hand values: ψ(1) = −γ, ψ(1/2) = −γ − 2 ln 2.
    let gamma = 0.577_215_664_901_532_9;
    assert!((digamma(1.0) + gamma).abs() < 1e-12);
    assert!((digamma(0.5) + gamma + 2.0 * std::f64::consts::LN_2).abs() < 1e-12);
}

/// One cell per (k, m) pair, one gene: logit and scale chosen so that M·link(x) = m.
fn grid_batch(r: f64, link: Link) -> (Arc<SparseBatch>, Vec<f64>, Vec<f64>) {
    let mut b = SparseBatch { n_genes: 1, indptr: vec![0], ..Default::default() };
    let (mut logits, mut expected) = (Vec::new(), Vec::new());
    for &k in &KS {
        for &m in &MS {
            // Large means: x = 0 and M = m / link(0); tiny ones: M = 1 and a very negative logit.
            let (scale, x) = match (link, m >= 1e-3) {
                (Link::Sigmoid, true) => (2.0 * m, 0.0),
                (Link::Sigmoid, false) => (1.0, (m / (1.0 - m)).ln()),
                (Link::Softplus, true) => (m / std::f64::consts::LN_2, 0.0),
                (Link::Softplus, false) => (1.0, m.exp_m1().ln()),
            };
            if k > 0.0 {
                b.indices.push(0);
                b.data.push(k as f32);
            }
            b.indptr.push(b.indices.len());
            b.scale.push(scale as f32);
            logits.push(x);
            expected.push(-statrs_logpmf(k, m, r));
        }
    }
    (Arc::new(b), logits, expected)
}

#[test]
fn nb_op_equals_statrs_per_cell_f64_and_f32() {
    for (disp, link) in [(Dispersion::Exp, Link::Sigmoid), (Dispersion::ExpPlusOne, Link::Sigmoid), (Dispersion::Exp, Link::Softplus), (Dispersion::ExpPlusOne, Link::Softplus)] {
        for &r in &RS {
            if disp == Dispersion::ExpPlusOne && r <= 1.0 {
                continue;
            }
            let (batch, logits, expected) = grid_batch(r, link);
            let n = logits.len();
            for dtype in [DType::F64, DType::F32] {
                let x = Tensor::from_vec(logits.clone(), (n, 1), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                let theta = Tensor::new(&[disp.theta(r)], &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                let nll = nb_nll(&x, &theta, batch.clone(), disp, link, false).unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
                // f32 inputs carry ~6e-8 relative error in x and θ: allow for it at huge k.
                let tol = if dtype == DType::F64 { 1e-5 } else { 2e-4 };
                for i in 0..n {
                    assert!(nll[i].is_finite(), "{disp:?} {link:?} {dtype:?} r={r} row {i}: {}", nll[i]);
                    let e = (nll[i] - expected[i]).abs() / expected[i].abs().max(1e-6);
                    assert!(e < tol, "{disp:?} {link:?} {dtype:?} r={r} row {i}: op {} statrs {} (rel {e:.2e})", nll[i], expected[i]);
                }
            }
        }
    }
}

#[test]
fn nb_op_gradients_match_finite_differences() {
    let (cells, genes) = (5usize, 7usize);
    let mut b = SparseBatch { n_genes: genes, indptr: vec![0], ..Default::default() };
    let counts = [[0u32, 3, 0, 1, 250, 0, 9], [1, 0, 0, 0, 0, 12, 0], [0, 0, 0, 0, 0, 0, 0], [40, 2, 1, 0, 7, 0, 3], [0, 0, 5, 0, 1000, 1, 0]];
    for row in &counts {
        for (j, &k) in row.iter().enumerate() {
            if k > 0 {
                b.indices.push(j as u32);
                b.data.push(k as f32);
            }
        }
        b.indptr.push(b.indices.len());
        b.scale.push(row.iter().copied().max().unwrap_or(0).max(1) as f32);
    }
    let batch = Arc::new(b);
    let x0: Vec<f64> = (0..cells * genes).map(|i| ((i * 37 % 17) as f64 - 8.0) * 0.4).collect();
    let t0: Vec<f64> = (0..genes).map(|j| (j as f64 - 3.0) * 0.6).collect();
    for (disp, link) in [(Dispersion::Exp, Link::Sigmoid), (Dispersion::ExpPlusOne, Link::Sigmoid), (Dispersion::Exp, Link::Softplus), (Dispersion::ExpPlusOne, Link::Softplus)] {
        // Weighted sum so that grad_res is not uniform.
        let w = Tensor::new(&[1.0f64, 0.5, 2.0, 1.5, 0.25], &Device::Cpu).unwrap();
        let loss_of = |x: &[f64], t: &[f64]| -> f64 {
            let xt = Tensor::from_slice(x, (cells, genes), &Device::Cpu).unwrap();
            let tt = Tensor::from_slice(t, genes, &Device::Cpu).unwrap();
            (nb_nll(&xt, &tt, batch.clone(), disp, link, false).unwrap() * &w).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let xv = Var::from_slice(&x0, (cells, genes), &Device::Cpu).unwrap();
        let tv = Var::from_slice(&t0, genes, &Device::Cpu).unwrap();
        let loss = (nb_nll(xv.as_tensor(), tv.as_tensor(), batch.clone(), disp, link, true).unwrap() * &w).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let gx = grads.get(xv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let gt = grads.get(tv.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        let h = 1e-5;
        let check = |analytic: f64, plus: f64, minus: f64, what: String| {
            let numeric = (plus - minus) / (2.0 * h);
            assert!((analytic - numeric).abs() <= 1e-4 * numeric.abs().max(1.0), "{disp:?} {link:?} {what}: analytic {analytic}, finite difference {numeric}");
        };
        for i in 0..cells * genes {
            let (mut xp, mut xm) = (x0.clone(), x0.clone());
            xp[i] += h;
            xm[i] -= h;
            check(gx[i], loss_of(&xp, &t0), loss_of(&xm, &t0), format!("d/dlogit[{i}]"));
        }
        for j in 0..genes {
            let (mut tp, mut tm) = (t0.clone(), t0.clone());
            tp[j] += h;
            tm[j] -= h;
            check(gt[j], loss_of(&x0, &tp), loss_of(&x0, &tm), format!("d/dtheta[{j}]"));
        }
    }
}

/// Logits far out on both sides: value and gradients stay finite for both links and dtypes, and
/// the value matches the log-pmf at the mean the link gives (f64 reference).
#[test]
fn nb_op_is_finite_at_extreme_logits() {
    let xs = [-800.0f64, -200.0, -90.0, -40.0, -31.0, -29.0, 29.0, 31.0, 60.0, 300.0];
    let ks = [0u32, 3];
    let mut b = SparseBatch { n_genes: xs.len(), indptr: vec![0], ..Default::default() };
    for &k in &ks {
        if k > 0 {
            b.indices.extend(0..xs.len() as u32);
            b.data.extend(std::iter::repeat_n(k as f32, xs.len()));
        }
        b.indptr.push(b.indices.len());
        b.scale.push(50.0);
    }
    let batch = Arc::new(b);
    for link in [Link::Sigmoid, Link::Softplus] {
        for dtype in [DType::F64, DType::F32] {
            let logits: Vec<f64> = ks.iter().flat_map(|_| xs.iter().copied()).collect();
            let xv = Var::from_tensor(&Tensor::from_vec(logits, (ks.len(), xs.len()), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()).unwrap();
            let tv = Var::from_tensor(&Tensor::from_vec(vec![0.7f64; xs.len()], xs.len(), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()).unwrap();
            let nll = nb_nll(xv.as_tensor(), tv.as_tensor(), batch.clone(), Dispersion::Exp, link, true).unwrap();
            let grads = nll.sum_all().unwrap().backward().unwrap();
            let values = nll.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
            for (row, &k) in ks.iter().enumerate() {
                let expected: f64 = xs.iter().map(|&x| -nb_log_likelihood(k as f64, 50.0 * link.apply(x), 0.7f64.exp())).sum();
                if expected.is_finite() {
                    assert!((values[row] - expected).abs() <= 1e-4 * expected.abs().max(1.0), "{link:?} {dtype:?} k={k}: {} vs {expected}", values[row]);
                } else {
                    // k > 0 with a mean that underflows to 0 in the reference: the op stays finite.
                    assert!(values[row].is_finite(), "{link:?} {dtype:?} k={k}: {}", values[row]);
                }
            }
            for v in [&xv, &tv] {
                let g = grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
                assert!(g.iter().all(|v| v.is_finite()), "{link:?} {dtype:?}: gradient {g:?}");
            }
        }
    }
}

/// The effect rows added inside the op (`apply_with_table`) against candle's composed ops
/// (gathered rows added to the logits, then the op): the same NLL and gradients to logits, θ
/// and the table — bit for bit in f32 with one offset column (the decoder's default), to f32
/// rounding with two, and to 1e-12 in f64.
#[test]
fn nb_op_with_offset_table_equals_the_composed_ops() {
    use perturbgen_models::nb_loss::{LogitOffsets, NbNll};
    let (cells, genes, levels) = (9usize, 1100usize, 4usize);
    let mut b = SparseBatch { n_genes: genes, indptr: vec![0], ..Default::default() };
    for c in 0..cells {
        for j in (c % 5..genes).step_by(7) {
            b.indices.push(j as u32);
            b.data.push(((c * 31 + j) % 23) as f32);
        }
        b.indptr.push(b.indices.len());
        b.scale.push(30.0 + c as f32);
    }
    let batch = Arc::new(b);
    let dev = Device::Cpu;
    let x0: Vec<f64> = (0..cells * genes).map(|i| ((i * 37 % 17) as f64 - 8.0) * 0.3).collect();
    let t0: Vec<f64> = (0..genes).map(|j| ((j % 11) as f64 - 5.0) * 0.3).collect();
    let e0: Vec<f64> = (0..levels * genes).map(|i| ((i * 13 % 19) as f64 - 9.0) * 0.05).collect();
    for (per_cell, dtype) in [(1, DType::F32), (2, DType::F32), (2, DType::F64)] {
        let ids: Vec<u32> = (0..cells * per_cell).map(|i| ((i * 3 + i / per_cell) % levels) as u32).collect();
        let w = Tensor::from_vec((0..cells).map(|c| 0.5 + c as f64 * 0.25).collect::<Vec<_>>(), cells, &dev).unwrap().to_dtype(dtype).unwrap();
        let vars = || {
            let v = |data: &[f64], shape: (usize, usize)| Var::from_tensor(&Tensor::from_slice(data, shape, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
            (v(&x0, (cells, genes)), v(&t0, (1, genes)), v(&e0, (levels, genes)))
        };
        let run = |fused: bool| {
            let (x, t, e) = vars();
            let theta = t.as_tensor().flatten_all().unwrap();
            let nll = if fused {
                NbNll::new(batch.clone(), Dispersion::Exp, Link::Sigmoid, true)
                    .apply_with_table(x.as_tensor(), &theta, e.as_tensor(), LogitOffsets { ids: ids.clone(), per_cell })
                    .unwrap()
            } else {
                let mut logits = x.as_tensor().clone();
                for i in 0..per_cell {
                    let col: Vec<u32> = ids.iter().skip(i).step_by(per_cell).copied().collect();
                    logits = (logits + e.as_tensor().index_select(&Tensor::from_vec(col, cells, &dev).unwrap(), 0).unwrap()).unwrap();
                }
                nb_nll(&logits, &theta, batch.clone(), Dispersion::Exp, Link::Sigmoid, true).unwrap()
            };
            let grads = (&nll * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
            [flat(&nll), flat(grads.get(x.as_tensor()).unwrap()), flat(grads.get(t.as_tensor()).unwrap()), flat(grads.get(e.as_tensor()).unwrap())]
        };
        let (fused, composed) = (run(true), run(false));
        for (what, (a, b)) in ["nll", "d logits", "d theta", "d table"].iter().zip(fused.iter().zip(&composed)) {
            assert_eq!(a.len(), b.len(), "{what}");
            let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
            let tol = match (per_cell, dtype) {
                (1, DType::F32) => 0.0,
                (_, DType::F32) => 1e-6 * scale,
                _ => 1e-12 * scale,
            };
            assert!(worst <= tol, "{per_cell} offset column(s), {dtype:?}, {what}: differs by {worst:e} (scale {scale:e})");
            assert!(scale > 0.0, "{what}: all zero, the comparison proves nothing");
        }
    }
    // Ids beyond the table are refused in one line.
    let x = Tensor::zeros((cells, genes), DType::F32, &dev).unwrap();
    let err = NbNll::new(batch.clone(), Dispersion::Exp, Link::Sigmoid, false)
        .apply_with_table(&x, &Tensor::zeros(genes, DType::F32, &dev).unwrap(), &Tensor::zeros((levels, genes), DType::F32, &dev).unwrap(), LogitOffsets { ids: vec![levels as u32; cells], per_cell: 1 })
        .unwrap_err();
    assert!(err.to_string().contains("offset table"), "{err}");
}
