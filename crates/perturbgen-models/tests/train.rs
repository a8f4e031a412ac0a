//! Training in-process: determinism / exact resume, the loss going down, the KL ramp, and
//! checkpoints of an older format (loaded for scoring, not resumed).
mod common;
use common::{small_config, toy_cells};
use candle_core::Device;
use perturbgen_models::config::ModelKind;
use perturbgen_models::data::{Covariates, ModelData};
use perturbgen_models::nb_loss::Link;
use perturbgen_models::train::{train, Resume, TrainRun, Trainer};

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

/// Training updates every tensor of the main optimiser (decoder, dispersions, encoder; a gradient that never reaches the optimiser, e.g.
/// the NB-VAE encoder's first weight handed over outside autograd, would leave one as it started).
#[test]
fn training_moves_every_network_parameter() {
    for model in [ModelKind::Dgd, ModelKind::Nbvae] {
        let cells = toy_cells();
        let config = small_config(model);
        let covariates = Covariates::fit(&cells.obs, &config.covariates).unwrap();
        let data = ModelData::new(cells.clone(), config.scale, &covariates, std::path::Path::new("toy")).unwrap();
        let mut trainer = Trainer::new(config, covariates, cells.counts.genes.clone(), cells.obs.obs_id.clone(), vec![], &Device::Cpu).unwrap();
        let values = |t: &Trainer| -> Vec<(String, Vec<f32>)> { t.net.network_vars().into_iter().map(|(n, v)| (n, v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect() };
        let before = values(&trainer);
        trainer.bench(&data, 2).unwrap();
        for ((name, a), (_, b)) in before.iter().zip(&values(&trainer)) {
            assert!(a != b, "{model:?}: {name} did not change in two training steps");
        }
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

/// Checkpoints are candle's safetensors bytes (loaded and saved again by candle: the same file),
/// and a finished run leaves only its named outputs in the folder, no hidden temporaries.
#[test]
fn checkpoints_are_candles_format_and_leave_no_temporaries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let last = train_once(ModelKind::Nbvae, &dir, 2, None, false);
    let tensors = candle_core::safetensors::load(dir.join("last.safetensors"), &Device::Cpu).unwrap();
    let again = tmp.path().join("again.safetensors");
    candle_core::safetensors::save(&tensors, &again).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), last, "candle writes these tensors differently");
    let hidden: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect();
    assert!(hidden.is_empty(), "hidden files left in the model folder: {hidden:?}");
}
