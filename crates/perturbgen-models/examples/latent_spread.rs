//! DGD diagnostic: the mixture prior's learned component sd (exp(−logprec/2)) and the spread of
//! `Gmm::sample` draws against the spread of the fitted training latents, per latent dimension.
//! `cargo run --release -p perturbgen-models --example latent_spread -- results/models/dgd [n]`
use candle_core::Device;
use perturbgen_models::checkpoint;
use perturbgen_models::loglik::LoadedModel;
use rand::SeedableRng;

fn sd_per_dim(z: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = z.len() / d;
    let mean: Vec<f64> = (0..d).map(|j| (0..n).map(|i| z[i * d + j] as f64).sum::<f64>() / n as f64).collect();
    let sd = (0..d).map(|j| ((0..n).map(|i| (z[i * d + j] as f64 - mean[j]).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()).collect();
    (mean, sd)
}

fn fmt(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(" ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(args.get(1).expect("usage: latent_spread MODEL_DIR [N]"));
    let n: usize = args.get(2).map(|s| s.parse().expect("N")).unwrap_or(100_000);
    let model = LoadedModel::load(dir, &Device::Cpu).expect("model");
    let gmm = model.net.gmm.as_ref().expect("a DGD model");
    let d = gmm.dim;
    let logprec = gmm.logprec.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let comp_sd: Vec<f64> = logprec.iter().map(|&l| (-0.5 * l as f64).exp()).collect();
    let means = gmm.mean.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (_, tensors) = checkpoint::load(dir, "model", &Device::Cpu).expect("checkpoint");
    let z = checkpoint::tensor(&tensors, "latent.train", dir).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (z_mean, z_sd) = sd_per_dim(&z, d);
    let draws = gmm.sample(n, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0)).unwrap();
    let (_, s_sd) = sd_per_dim(&draws, d);
    let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    println!("model {} (epoch {}), mixture_prior_weight {:?}, dispersion {:?}", dir.display(), model.meta.best_epoch, model.meta.config.mixture_prior_weight, model.meta.config.dispersion);
    println!("component means      {}", fmt(&means.iter().map(|&v| v as f64).collect::<Vec<_>>()));
    println!("component sd         {}  (rms {:.4})", fmt(&comp_sd), rms(&comp_sd));
    println!("training latent mean {}", fmt(&z_mean));
    println!("training latent sd   {}  (rms {:.4})", fmt(&z_sd), rms(&z_sd));
    println!("sample sd ({n})  {}  (rms {:.4})", fmt(&s_sd), rms(&s_sd));
    let ratio: Vec<f64> = s_sd.iter().zip(&z_sd).map(|(s, z)| s / z).collect();
    println!("sample sd / latent sd {}  (of the rms: {:.3})", fmt(&ratio), rms(&s_sd) / rms(&z_sd));
    if gmm.config.components == 1 {
        let offset: Vec<f64> = (0..d).map(|j| (means[j] as f64 - z_mean[j]) / z_sd[j]).collect();
        println!("(component mean − latent mean) / latent sd: {}  (rms {:.3})", fmt(&offset), rms(&offset));
    }
}
