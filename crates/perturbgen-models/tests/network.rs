//! The network's DGD batch: a cell's latent gradient does not depend on the batch it is in.
mod common;
use common::{small_config, toy_cells};
use candle_core::Device;
use perturbgen_models::config::ModelKind;
use perturbgen_models::data::{Covariates, ModelData};

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
