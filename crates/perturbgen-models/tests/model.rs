//! The generative models' numerical core against independent truth: the NB log-likelihood op
//! against statrs' negative-binomial log-pmf, its gradients against finite differences, the
//! fused Adam against hand-computed steps, and training determinism / exact resume in-process.
mod common;
use common::{small_config, toy_cells};
use candle_core::{DType, Device, Tensor, Var};
use perturbgen_models::adam::{AdamParams, AdamState};
use perturbgen_models::config::{ModelKind, ModelParams};
use perturbgen_models::data::{Covariates, ModelData};
use perturbgen_models::nb_loss::{digamma, nb_log_likelihood, nb_nll, Dispersion, Link, SparseBatch};
use perturbgen_models::train::{train, Resume, TrainRun, Trainer};
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

#[test]
fn adam_matches_hand_computed_steps() {
    let p = AdamParams { lr: 0.1, beta1: 0.5, beta2: 0.7, eps: 1e-8 };
    let mut state = AdamState::new(1);
    let mut theta = [1.0f32];
    // Step 1, g = 2: m = 1, v = 1.2; m̂ = 2, v̂ = 4 → θ = 1 − 0.1·2/2 = 0.9.
    state.step(&p, &mut theta, &[2.0]);
    assert!((theta[0] - 0.9).abs() < 1e-6, "{}", theta[0]);
    // Step 2, g = −1: m = 0, v = 0.84 + 0.3 = 1.14 → θ unchanged.
    state.step(&p, &mut theta, &[-1.0]);
    assert!((theta[0] - 0.9).abs() < 1e-6, "{}", theta[0]);
    // Step 3, g = 1: m = 0.5, v = 0.798 + 0.3 = 1.098; m̂ = 0.5/0.875, v̂ = 1.098/0.657.
    state.step(&p, &mut theta, &[1.0]);
    let expected = 0.9 - 0.1 * (0.5 / 0.875) / ((1.098f64 / 0.657).sqrt() + 1e-8);
    assert!((theta[0] as f64 - expected).abs() < 1e-6, "{} vs {expected}", theta[0]);
}



#[test]
fn model_params_merge_and_check_name_the_key() {
    use perturbgen::params::ParamGuard;
    use perturbgen_models::config::TrainSection;
    let section = TrainSection {
        common: ModelParams { latent_dim: Some(7), max_epochs: Some(40), min_epochs: Some(20), ..Default::default() },
        dgd: ModelParams { latent_dim: Some(9), decoder_betas: Some([0.6, 0.8]), ..Default::default() },
        ..Default::default()
    };
    let plan = section.clone().check().unwrap();
    // The model's own key wins over common's; common's over the write-up default.
    assert_eq!((plan.config(ModelKind::Dgd).latent_dim, plan.config(ModelKind::Nbvae).latent_dim), (9, 7));
    assert_eq!(plan.config(ModelKind::Nbvae).max_epochs, 40);
    assert_eq!((plan.config(ModelKind::Dgd).decoder_adam.beta1, plan.config(ModelKind::Dgd).decoder_adam.beta2), (0.6, 0.8));
    assert_eq!(plan.config(ModelKind::Nbvae).decoder_adam.lr, 1e-3, "the VAE keeps its own default");
    let key_of = |p: ModelParams| match p.check(ModelKind::Dgd) {
        Err(perturbgen::Error::Param { key, .. }) => key,
        other => panic!("expected a parameter error, got {other:?}"),
    };
    assert_eq!(key_of(ModelParams { min_epochs: Some(300), ..Default::default() }), "train.min_epochs");
    assert_eq!(key_of(ModelParams { dirichlet_alpha: Some(0.0), ..Default::default() }), "train.dirichlet_alpha");
    assert_eq!(key_of(ModelParams { softball_sharpness: Some(f64::NAN), ..Default::default() }), "train.softball_sharpness");
    assert_eq!(key_of(ModelParams { latent_betas: Some([1.0, 0.5]), ..Default::default() }), "train.latent_betas");
    assert_eq!(key_of(ModelParams { dispersion: Some(Dispersion::ExpPlusOne), dispersion_init: Some(0.5), ..Default::default() }), "train.dispersion_init");
}

fn train_once(model: ModelKind, dir: &std::path::Path, threads: usize, stop_after: Option<usize>, resume: bool) -> Vec<u8> {
    let cells = toy_cells();
    let val_rows: Vec<usize> = (0..300).filter(|i| i % 10 == 0).collect();
    let train_rows: Vec<usize> = (0..300).filter(|i| i % 10 != 0).collect();
    let (tc, vc) = (cells.take(&train_rows), cells.take(&val_rows));
    let config = small_config(model);
    let covariates = Covariates::fit(&tc.obs, &config.covariates).unwrap();
    let p = std::path::Path::new("toy");
    let (td, vd) = (ModelData::new(tc.clone(), config.scale, &covariates, p).unwrap(), ModelData::new(vc.clone(), config.scale, &covariates, p).unwrap());
    perturbgen::threads::with_threads(threads, || {
        let mut trainer = Trainer::new(config, covariates, tc.counts.genes.clone(), tc.obs.obs_id.clone(), vc.obs.obs_id.clone(), &Device::Cpu).unwrap();
        let resume = if resume { Resume::Require } else { Resume::No };
        let run = TrainRun { train: &td, val: &vd, out_dir: dir.to_path_buf(), resume, stop_after };
        train(&mut trainer, &run).unwrap();
    })
    .unwrap();
    std::fs::read(dir.join("last.safetensors")).unwrap()
}

#[test]
fn same_seed_same_bytes_and_resume_is_exact() {
    for model in [ModelKind::Dgd, ModelKind::Nbvae] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
        let full = train_once(model, &a, 2, None, false);
        assert_eq!(full, train_once(model, &b, 2, None, false), "{model:?}: two runs with one seed differ");
        assert_eq!(full, train_once(model, &tmp.path().join("t1"), 1, None, false), "{model:?}: 1 and 2 threads differ");
        // Interrupted after epoch 4, resumed: the same final state as the uninterrupted run. The
        // interrupted run hands in no model.* (its outputs are not final yet), and the resumed run
        // writes it even if a workflow manager deleted what was there before the rerun.
        train_once(model, &c, 2, Some(4), false);
        assert!(!c.join("model.safetensors").exists() && !c.join("model.json").exists(), "{model:?}: an interrupted run published model.*");
        let resumed = train_once(model, &c, 2, None, true);
        assert_eq!(full, resumed, "{model:?}: resume differs from the uninterrupted run");
        assert_eq!(std::fs::read(a.join("model.safetensors")).unwrap(), std::fs::read(c.join("model.safetensors")).unwrap());
        // And the history (apart from timings) is the same.
        let hist = |d: &std::path::Path| -> Vec<(usize, f64, f64)> {
            let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("last.json")).unwrap()).unwrap();
            meta["history"].as_array().unwrap().iter().map(|h| (h["epoch"].as_u64().unwrap() as usize, h["train_recon"].as_f64().unwrap(), h["val_loss"].as_f64().unwrap())).collect()
        };
        assert_eq!(hist(&a), hist(&c));
        assert_eq!(hist(&a).len(), 10);
        // A rerun of a finished training whose model.* was deleted: resumes at the end and
        // publishes the same best epoch again.
        std::fs::remove_file(c.join("model.safetensors")).unwrap();
        std::fs::remove_file(c.join("model.json")).unwrap();
        assert_eq!(full, train_once(model, &c, 2, None, true));
        assert_eq!(std::fs::read(a.join("model.safetensors")).unwrap(), std::fs::read(c.join("model.safetensors")).unwrap());
        assert!(c.join("model.json").exists());
    }
}

#[test]
fn training_lowers_the_loss() {
    for model in [ModelKind::Dgd, ModelKind::Nbvae] {
        let tmp = tempfile::tempdir().unwrap();
        train_once(model, tmp.path(), 1, None, false);
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(tmp.path().join("last.json")).unwrap()).unwrap();
        let h = meta["history"].as_array().unwrap();
        let (first, last) = (h[0]["train_recon"].as_f64().unwrap(), h[h.len() - 1]["train_recon"].as_f64().unwrap());
        assert!(last < 0.95 * first, "{model:?}: train NLL {first} → {last}");
    }
}

#[test]
fn f32_log1p_is_within_a_few_ulps() {
    use perturbgen_models::nb_loss::DenseFloat;
    let mut q = 1e-12f64;
    while q < 1e7 {
        for f in [1.0, 1.37, 2.9, 4.999] {
            let x = (q * f) as f32;
            let exact = (x as f64).ln_1p();
            let ours = x.log1p_dense() as f64;
            assert!((ours - exact).abs() <= 4.0 * f32::EPSILON as f64 * exact.abs(), "log1p({x}) = {ours}, exact {exact}");
        }
        q *= 10.0;
    }
}

#[test]
fn link_follows_scale_unless_set_and_defaults_are_the_write_ups() {
    use perturbgen_models::config::{EncoderInput, MixturePriorWeight};
    use perturbgen_models::data::Scale;
    let check = |p: ModelParams| p.check(ModelKind::Dgd).unwrap();
    let d = check(ModelParams::default());
    assert_eq!((d.scale, d.link, d.dispersion, d.mixture_prior_weight), (Scale::Max, Link::Sigmoid, Dispersion::Exp, MixturePriorWeight::PerCell));
    assert_eq!(ModelParams::default().check(ModelKind::Nbvae).unwrap().encoder_input, EncoderInput::Counts);
    for scale in [Scale::Sum, Scale::Mean] {
        assert_eq!(check(ModelParams { scale: Some(scale), ..Default::default() }).link, Link::Softplus);
    }
    assert_eq!(check(ModelParams { scale: Some(Scale::Sum), link: Some(Link::Sigmoid), ..Default::default() }).link, Link::Sigmoid);
    assert_eq!(check(ModelParams { link: Some(Link::Softplus), ..Default::default() }).link, Link::Softplus);
}

/// A cell's latent gradient does not depend on the size of the batch it is in: the loss is
/// divided by the configured batch size (the last, smaller batch is not scaled up).
#[test]
fn latent_gradient_does_not_depend_on_the_batch_it_is_in() {
    let cells = toy_cells();
    let config = small_config(ModelKind::Dgd);
    let covariates = Covariates::fit(&cells.obs, &config.covariates).unwrap();
    let data = ModelData::new(cells.clone(), config.scale, &covariates, std::path::Path::new("toy")).unwrap();
    let net = perturbgen_models::network::Network::new(config.clone(), covariates, cells.counts.genes.clone(), &Device::Cpu).unwrap();
    let d = config.latent_dim;
    let z: Vec<f32> = (0..64 * d).map(|i| ((i * 29 % 23) as f32 - 11.0) * 0.02).collect();
    let full: Vec<usize> = (0..64).collect();
    let part: Vec<usize> = (0..5).collect();
    let a = net.dgd_batch(&data, &full, z.clone(), Some(64.0)).unwrap().z_grad;
    let b = net.dgd_batch(&data, &part, z[..5 * d].to_vec(), Some(5.0)).unwrap().z_grad;
    for i in 0..5 * d {
        assert!((a[i] - b[i]).abs() <= 1e-5 * a[i].abs().max(1e-3), "latent gradient {i}: full batch {}, batch of 5 {}", a[i], b[i]);
    }
}

/// Format-2 checkpoints still load for scoring (with the settings format 2 implied) but are not
/// resumed; an unknown format is refused in one line.
#[test]
fn format_2_checkpoints_load_but_do_not_resume() {
    use perturbgen_models::config::{EncoderInput, MixturePriorWeight};
    for model in [ModelKind::Dgd, ModelKind::Nbvae] {
        let tmp = tempfile::tempdir().unwrap();
        train_once(model, tmp.path(), 1, None, false);
        for stem in ["model", "last"] {
            let path = tmp.path().join(format!("{stem}.json"));
            let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            meta["format"] = "perturbgen-model-2".into();
            for key in ["link", "mixture_prior_weight", "encoder_input"] {
                meta["config"].as_object_mut().unwrap().remove(key);
            }
            std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
        }
        let loaded = perturbgen_models::loglik::LoadedModel::load(tmp.path(), &Device::Cpu).unwrap();
        let c = &loaded.meta.config;
        assert_eq!((c.link, c.mixture_prior_weight, c.encoder_input), (Link::Sigmoid, MixturePriorWeight::PerEpoch, EncoderInput::Log1p));
        let cells = toy_cells();
        let data = loaded.data(cells, std::path::Path::new("toy"), std::path::Path::new("toy")).unwrap();
        assert!(loaded.loglik(&data, 2, &|| ()).unwrap().iter().all(|v| v.is_finite()));
        let m = &loaded.meta;
        let mut trainer = Trainer::new(m.config.clone(), m.covariates.clone(), m.genes.clone(), m.train_ids.clone(), m.val_ids.clone(), &Device::Cpu).unwrap();
        let err = trainer.restore(tmp.path(), "last").expect_err("a format-2 checkpoint must not resume").to_string();
        assert!(err.contains("cannot resume") && err.contains("perturbgen-model-2"), "{err}");
        let path = tmp.path().join("model.json");
        let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        meta["format"] = "perturbgen-model-1".into();
        std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
        let err = perturbgen_models::loglik::LoadedModel::load(tmp.path(), &Device::Cpu).err().expect("format 1 is refused").to_string();
        assert!(err.contains("perturbgen-model-1") && err.contains("expected") && !err.contains('\n'), "{err}");
    }
}

#[test]
fn kl_weight_is_the_write_ups_ramp() {
    use perturbgen_models::train::kl_weight;
    // min(1, 1e-5·W + (1 − 1e-5·W)·e/W) with e the 0-based epoch.
    assert!((kl_weight(1, 50) - 5e-4).abs() < 1e-15);
    assert!((kl_weight(26, 50) - (5e-4 + (1.0 - 5e-4) * 0.5)).abs() < 1e-15);
    assert_eq!(kl_weight(51, 50), 1.0);
    assert_eq!(kl_weight(80, 50), 1.0);
    assert_eq!(kl_weight(1, 0), 1.0);
}

#[test]
fn f32_exp_and_ln_are_within_a_few_ulps() {
    use perturbgen_models::nb_loss::{exp_f32, ln_f32};
    let ulps = |ours: f32, exact: f64| ((ours as f64 - exact) / (f32::EPSILON as f64 * exact.abs())).abs();
    let mut worst = (0f64, 0f64);
    for i in 0..=200_000 {
        let x = -87.0 + 175.0 * i as f32 / 200_000.0;
        worst.0 = worst.0.max(ulps(exp_f32(x), (x as f64).exp()));
        let y = f32::from_bits(0x0080_0000 + i * 10_000); // normal floats from 1.2e-38 up to ~2e36
        if y.is_finite() && y > 0.0 && (y as f64 - 1.0).abs() > 1e-3 {
            worst.1 = worst.1.max(ulps(ln_f32(y), (y as f64).ln()));
        }
    }
    assert!(worst.0 <= 3.0 && worst.1 <= 3.0, "worst exp {} ulps, ln {} ulps", worst.0, worst.1);
    // Near 1, ln's absolute error stays at a few ulps of its (small) value.
    for x in [1.0f32, 1.0 + f32::EPSILON, 1.001, 0.999, 1.25] {
        assert!((ln_f32(x) as f64 - (x as f64).ln()).abs() <= 3.0 * f32::EPSILON as f64 * (x as f64).ln().abs().max(f32::EPSILON as f64), "ln({x})");
    }
    assert_eq!(exp_f32(-1000.0), exp_f32(-87.336_55), "clamped below");
    assert!(exp_f32(0.0) == 1.0 && ln_f32(1.0) == 0.0);
}

/// The dense pass picked for this CPU's vector units (AVX2 here) gives the same bits as the same
/// code compiled for the baseline ISA: no CPU-model dependence from the vectorisation.
#[test]
fn dense_row_dispatch_matches_baseline_bit_for_bit() {
    use perturbgen_models::nb_loss::{dense_row_generic, DenseFloat, DenseRow};
    use rand::{Rng, SeedableRng};
    use std::mem::MaybeUninit;
    let g = 1037;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let x: Vec<f32> = (0..g).map(|_| rng.random_range(-40.0..40.0)).collect();
    let r: Vec<f32> = (0..g).map(|_| rng.random_range(0.01..50.0)).collect();
    let dr: Vec<f32> = r.iter().map(|v| v - 0.5).collect();
    let run = |generic: bool, softplus: bool, grad: bool| {
        let mut scratch = vec![0f32; g];
        let (mut gx, mut gt) = (vec![MaybeUninit::new(f32::NAN); g], vec![MaybeUninit::new(f32::NAN); g]);
        let row = DenseRow { x: &x, r: &r, dr: &dr, scale: 37.0, nll: &mut scratch };
        let grads = grad.then_some((&mut gx[..], &mut gt[..]));
        let total = match (generic, softplus) {
            (true, false) => dense_row_generic::<f32, false>(row, grads),
            (true, true) => dense_row_generic::<f32, true>(row, grads),
            (false, false) => <f32 as DenseFloat>::dense_row::<false>(row, grads),
            (false, true) => <f32 as DenseFloat>::dense_row::<true>(row, grads),
        };
        // SAFETY: initialised with NaN above.
        let bits = |v: &[MaybeUninit<f32>]| v.iter().map(|e| unsafe { e.assume_init() }.to_bits()).collect::<Vec<u32>>();
        (total.to_bits(), bits(&gx), bits(&gt))
    };
    for softplus in [false, true] {
        for grad in [false, true] {
            let (a, b) = (run(true, softplus, grad), run(false, softplus, grad));
            assert_eq!(a, b, "softplus {softplus}, grad {grad}");
            if grad {
                assert!(a.1.iter().chain(&a.2).all(|&v| f32::from_bits(v).is_finite()), "every gradient written");
            }
        }
    }
}
