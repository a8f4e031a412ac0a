//! Shared by the integration tests (tests/network.rs, tests/train.rs, tests/precision_train.rs, tests/device.rs).
use perturbgen::cells::Cells;
use perturbgen::counts::CountMatrix;
use perturbgen::io::obs::{CellMeta, ObsTable};
use perturbgen_models::config::{ModelKind, ModelParams, TrainConfig};

/// 300 cells × 30 genes, two cell types and three plates, counts from a fixed pattern.
pub fn toy_cells() -> Cells {
    let genes: Vec<String> = (0..30).map(|g| format!("G{g}")).collect();
    let mut counts = CountMatrix::new(genes);
    let mut obs = ObsTable::default();
    for i in 0..300usize {
        let (ct, plate) = (["T cells", "NK cells"][i % 2], ["p1", "p2", "p3"][i % 3]);
        let id = format!("cell{i}");
        obs.push(&CellMeta {
            obs_id: &id, library_id: "lib", plate_name: plate, well: "A1", row: "A", col: 1, cell_id: "c", donor_id: "d",
            cell_type: ct, sm_lincs_id: "x", sm_name: "Dimethyl Sulfoxide", smiles: "C", dose_um: 0.0, timepoint_hr: 24.0, control: true,
        });
        let (mut idx, mut data) = (Vec::new(), Vec::new());
        for g in 0..30u32 {
            let k = ((i as u32 * 7 + g * 13) % 11).saturating_sub(if i % 2 == 0 { 4 } else { 6 }) * (1 + g % 3);
            if k > 0 {
                idx.push(g);
                data.push(k);
            }
        }
        counts.push_row(&idx, &data);
    }
    Cells { obs, counts }
}

/// A small network trained 10 epochs (min_epochs = max_epochs: no early stop).
pub fn small_config(model: ModelKind) -> TrainConfig {
    ModelParams {
        decoder_hidden: Some(vec![16, 32]),
        encoder_hidden: Some(vec![32, 16]),
        latent_dim: Some(3),
        batch_size: Some(64),
        max_epochs: Some(10),
        min_epochs: Some(10),
        kl_warmup: Some(3),
        checkpoint_every: Some(100),
        covariates: Some(vec!["cell_type".into(), "plate_name".into()]),
        ..Default::default()
    }
    .check(model)
    .unwrap()
}

/// Trains `model` on the toy cells (270 training, 30 validation) for 10 epochs on `device` with
/// the decoder's products in `precision`, 2 threads; (last.json as JSON, last.safetensors).
#[allow(dead_code)] // not every test crate that includes this module trains
pub fn train_toy(model: ModelKind, device: &candle_core::Device, precision: perturbgen_models::bf16::MatmulPrecision) -> (serde_json::Value, Vec<u8>) {
    use perturbgen_models::data::{Covariates, ModelData};
    use perturbgen_models::train::{train, Resume, TrainRun, Trainer};
    let cells = toy_cells();
    let (tc, vc) = (cells.take(&(0..300).filter(|i| i % 10 != 0).collect::<Vec<_>>()), cells.take(&(0..300).filter(|i| i % 10 == 0).collect::<Vec<_>>()));
    let config = small_config(model);
    let covariates = Covariates::fit(&tc.obs, &config.covariates).unwrap();
    let p = std::path::Path::new("toy");
    let (td, vd) = (ModelData::new(tc.clone(), config.scale, &covariates, p).unwrap(), ModelData::new(vc.clone(), config.scale, &covariates, p).unwrap());
    let tmp = tempfile::tempdir().unwrap();
    perturbgen::threads::with_threads(2, || {
        let mut trainer = Trainer::new(config, covariates, tc.counts.genes.clone(), tc.obs.obs_id.clone(), vc.obs.obs_id.clone(), device).unwrap();
        trainer.net.matmul = precision;
        let run = TrainRun { train: &td, val: &vd, out_dir: tmp.path().to_path_buf(), resume: Resume::No, stop_after: None };
        train(&mut trainer, &run).unwrap();
    })
    .unwrap();
    let meta = serde_json::from_slice(&std::fs::read(tmp.path().join("last.json")).unwrap()).unwrap();
    (meta, std::fs::read(tmp.path().join("last.safetensors")).unwrap())
}
