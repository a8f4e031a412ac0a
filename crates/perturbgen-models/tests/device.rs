//! CUDA against the CPU (built only with `--features cuda`; `bench/gpu/check.sh` runs it on a GPU
//! machine): the NB op's values and gradients through the device round trip, and a toy training
//! run whose per-epoch losses follow the CPU's. The device's sums run in another order than the
//! CPU's, so the comparisons allow for f32 rounding, not for differences of method.
#![cfg(feature = "cuda")]
mod common;
use candle_core::{DType, Device, Tensor, Var};
use perturbgen_models::bf16::MatmulPrecision;
use perturbgen_models::config::ModelKind;
use perturbgen_models::nb_loss::{nb_nll, Dispersion, Link, SparseBatch};
use std::sync::Arc;

fn cuda() -> Device {
    Device::new_cuda(0).expect("a CUDA device (this test is built with --features cuda to run on one)")
}

/// 64 cells × 300 genes with a fixed pattern of counts (about a third non-zero).
fn batch() -> (Arc<SparseBatch>, Vec<f32>) {
    let (cells, genes) = (64usize, 300usize);
    let mut b = SparseBatch { n_genes: genes, indptr: vec![0], ..Default::default() };
    let mut logits = Vec::with_capacity(cells * genes);
    for i in 0..cells {
        for g in 0..genes {
            let k = ((i * 31 + g * 17) % 13) as u32;
            if k > 8 {
                b.indices.push(g as u32);
                b.data.push((k - 8) as f32 * (1 + g % 4) as f32);
            }
            logits.push(((i * 7 + g * 3) % 19) as f32 / 4.0 - 2.5);
        }
        b.indptr.push(b.indices.len());
        b.scale.push(5.0 + (i % 9) as f32);
    }
    (Arc::new(b), logits)
}

fn close(a: &[f32], b: &[f32], rel: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= rel * y.abs().max(1e-3), "{what}[{i}]: device {x} vs cpu {y}");
    }
}

#[test]
fn nb_op_on_the_device_equals_the_cpu_values_and_gradients() {
    let (b, logits) = batch();
    let (n, g) = (b.indptr.len() - 1, b.n_genes);
    for link in [Link::Sigmoid, Link::Softplus] {
        let mut out = Vec::new();
        for device in [Device::Cpu, cuda()] {
            let x = Var::from_tensor(&Tensor::from_vec(logits.clone(), (n, g), &device).unwrap()).unwrap();
            let theta = Var::from_tensor(&Tensor::from_vec((0..g).map(|j| (j % 5) as f32 * 0.4 - 0.5).collect::<Vec<_>>(), g, &device).unwrap()).unwrap();
            let nll = nb_nll(x.as_tensor(), theta.as_tensor(), b.clone(), Dispersion::Exp, link, true).unwrap();
            assert!(nll.device().same_device(&device), "{link:?}: the op's result left the device");
            let grads = nll.sum_all().unwrap().backward().unwrap();
            let to_vec = |t: &Tensor| t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            out.push((to_vec(&nll), to_vec(grads.get(x.as_tensor()).unwrap()), to_vec(grads.get(theta.as_tensor()).unwrap())));
        }
        let (cpu, dev) = (&out[0], &out[1]);
        close(&dev.0, &cpu.0, 1e-6, &format!("{link:?} NLL"));
        close(&dev.1, &cpu.1, 1e-6, &format!("{link:?} dNLL/dlogit"));
        close(&dev.2, &cpu.2, 1e-5, &format!("{link:?} dNLL/dθ"));
    }
}

/// 10 epochs of `model` on the toy cells on `device`: the history's train NLL per epoch.
fn train_toy(model: ModelKind, device: &Device) -> Vec<f64> {
    let (meta, _) = common::train_toy(model, device, MatmulPrecision::F32);
    meta["history"].as_array().unwrap().iter().map(|h| h["train_recon"].as_f64().unwrap()).collect()
}

#[test]
fn training_on_the_device_follows_the_cpu() {
    for model in [ModelKind::Dgd, ModelKind::Nbvae] {
        let (cpu, dev) = (train_toy(model, &Device::Cpu), train_toy(model, &cuda()));
        assert!(dev[dev.len() - 1] < 0.95 * dev[0], "{model:?}: device training does not lower the loss: {dev:?}");
        for (e, (d, c)) in dev.iter().zip(&cpu).enumerate() {
            assert!((d - c).abs() <= 1e-3 * c.abs(), "{model:?} epoch {}: device {d} vs cpu {c}", e + 1);
        }
    }
}
