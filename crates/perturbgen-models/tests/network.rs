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

/// `train.effects`: each cell's logits are the MLP's plus its level's row of the effect table
/// (the same row whatever the cell type), and the table is trained with the decoder.
#[test]
fn an_effect_adds_its_row_of_the_table_to_the_logits() {
    use perturbgen_models::config::ModelParams;
    let cells = toy_cells();
    let config = ModelParams {
        decoder_hidden: Some(vec![16, 32]),
        latent_dim: Some(3),
        batch_size: Some(64),
        covariates: Some(vec!["cell_type".into()]),
        effects: Some(vec!["plate_name".into()]),
        ..Default::default()
    }
    .check(ModelKind::Dgd)
    .unwrap();
    let covariates = Covariates::fit(&cells.obs, &config.covariates).unwrap().with_effects(&cells.obs, &config.effects).unwrap();
    assert_eq!(covariates.effects, vec![("plate_name".to_string(), vec!["p1".to_string(), "p2".into(), "p3".into()])]);
    let data = ModelData::new(cells.clone(), config.scale, &covariates, std::path::Path::new("toy")).unwrap();
    let net = perturbgen_models::network::Network::new(config.clone(), covariates, cells.counts.genes.clone(), &Device::Cpu).unwrap();
    let rows: Vec<usize> = (0..12).collect();
    let z = candle_core::Tensor::from_vec((0..12 * 3).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect::<Vec<f32>>(), (12, 3), &Device::Cpu).unwrap();
    let cond = data.conditioning(&rows, &Device::Cpu).unwrap();
    let before = net.decode(&z, &cond).unwrap().to_vec2::<f32>().unwrap();
    // Row p of the table = (p + 1) · (gene index) / 100.
    let table: Vec<f32> = (0..3).flat_map(|p| (0..30).map(move |g| (p + 1) as f32 * g as f32 / 100.0)).collect();
    net.effect.as_ref().unwrap().set(&candle_core::Tensor::from_vec(table, (3, 30), &Device::Cpu).unwrap()).unwrap();
    let after = net.decode(&z, &cond).unwrap().to_vec2::<f32>().unwrap();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let plate = i % 3; // toy cell i is on plate p{i % 3 + 1}
        for g in 0..30 {
            let want = (plate + 1) as f32 * g as f32 / 100.0;
            assert!((a[g] - b[g] - want).abs() < 1e-5, "cell {i} gene {g}: added {}, expected {want}", a[g] - b[g]);
        }
    }
    let z = vec![0.05f32; 12 * 3];
    let batch = net.dgd_batch(&data, &rows, z, None).unwrap();
    let grad = batch.grads.get(net.effect.as_ref().unwrap().as_tensor()).expect("the effect table gets a gradient");
    assert!(grad.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
}

/// A column is either in the decoder's input or an additive effect, never both.
#[test]
fn an_effect_that_is_also_a_covariate_is_refused() {
    use perturbgen_models::config::ModelParams;
    let err = ModelParams { covariates: Some(vec!["cell_type".into(), "sm_name".into()]), effects: Some(vec!["sm_name".into()]), ..Default::default() }.check(ModelKind::Dgd).unwrap_err();
    assert!(err.to_string().contains("train.effects") && err.to_string().contains("sm_name"), "{err}");
    let err = ModelParams { effects: Some(vec!["compound".into()]), ..Default::default() }.check(ModelKind::Dgd).unwrap_err();
    assert!(err.to_string().contains("unknown obs column `compound`"), "{err}");
}

/// `train.interaction`: each cell's logits gain (F[a] ⊙ F[b]) · W for its levels a and b of the
/// two columns (recomputed here by hand from the factors), the term starts at zero (W = 0), and
/// the penalty λ·(‖F‖² + ‖W‖²) per cell gives the factors the gradient 2λ·F·cells/batch_size
/// while W = 0 (the likelihood does not depend on F then).
#[test]
fn an_interaction_adds_the_product_of_its_levels_factors_times_the_loadings() {
    use perturbgen_models::config::ModelParams;
    let cells = toy_cells();
    let (rank, lambda) = (2usize, 0.5f64);
    let config = ModelParams {
        decoder_hidden: Some(vec![16, 32]),
        latent_dim: Some(3),
        batch_size: Some(64),
        covariates: Some(vec!["cell_type".into()]),
        interaction: Some(vec!["cell_type".into(), "plate_name".into()]),
        interaction_rank: Some(rank),
        interaction_penalty: Some(lambda),
        ..Default::default()
    }
    .check(ModelKind::Dgd)
    .unwrap();
    let covariates = Covariates::fit(&cells.obs, &config.covariates).unwrap().with_effects(&cells.obs, &config.effects).unwrap().with_interaction(&cells.obs, &config.interaction).unwrap();
    assert_eq!(covariates.interaction[0], ("cell_type".to_string(), vec!["NK cells".to_string(), "T cells".into()]));
    assert_eq!(covariates.interaction[1].1, vec!["p1".to_string(), "p2".into(), "p3".into()]);
    let data = ModelData::new(cells.clone(), config.scale, &covariates, std::path::Path::new("toy")).unwrap();
    let net = perturbgen_models::network::Network::new(config.clone(), covariates, cells.counts.genes.clone(), &Device::Cpu).unwrap();
    let rows: Vec<usize> = (0..12).collect();
    let cond = data.conditioning(&rows, &Device::Cpu).unwrap();
    let z = candle_core::Tensor::from_vec((0..12 * 3).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect::<Vec<f32>>(), (12, 3), &Device::Cpu).unwrap();
    let (factors, loadings) = net.interaction.as_ref().unwrap();
    let f = factors.as_tensor().to_vec2::<f32>().unwrap();
    assert_eq!(f.len(), 5);
    let before = net.decode(&z, &cond).unwrap().to_vec2::<f32>().unwrap();

    // The penalty's gradient, while W = 0.
    let batch = net.dgd_batch(&data, &rows, vec![0.05f32; 12 * 3], None).unwrap();
    let grad = batch.grads.get(factors.as_tensor()).expect("the factors get a gradient").to_vec2::<f32>().unwrap();
    for (l, (g_row, f_row)) in grad.iter().zip(&f).enumerate() {
        for k in 0..rank {
            let want = 2.0 * lambda * f_row[k] as f64 * 12.0 / 64.0;
            assert!((g_row[k] as f64 - want).abs() <= 1e-5 * want.abs().max(1e-3), "factor [{l}, {k}]: gradient {}, expected {want}", g_row[k]);
        }
    }
    let w_grad = batch.grads.get(loadings.as_tensor()).expect("the loadings get a gradient");
    assert!(w_grad.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);

    let w: Vec<f32> = (0..rank).flat_map(|k| (0..30).map(move |g| (k + 1) as f32 * g as f32 / 50.0)).collect();
    loadings.set(&candle_core::Tensor::from_vec(w.clone(), (rank, 30), &Device::Cpu).unwrap()).unwrap();
    let after = net.decode(&z, &cond).unwrap().to_vec2::<f32>().unwrap();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        // Toy cell i: T cells (level 1) when i is even, NK cells (0) when odd; plate p{i % 3 + 1}
        // (rows 2–4: the second column's levels follow the first's).
        let (ct, plate) = (if i % 2 == 0 { 1 } else { 0 }, 2 + i % 3);
        for g in 0..30 {
            let want: f32 = (0..rank).map(|k| f[ct][k] * f[plate][k] * w[k * 30 + g]).sum();
            assert!((a[g] - b[g] - want).abs() < 1e-4 * want.abs().max(1.0), "cell {i} gene {g}: added {}, expected {want}", a[g] - b[g]);
        }
    }
}

#[test]
fn an_interaction_needs_two_different_known_columns() {
    use perturbgen_models::config::ModelParams;
    for (columns, fragment) in [(vec!["cell_type"], "expected two different obs columns"), (vec!["cell_type", "cell_type"], "expected two different"), (vec!["cell_type", "drug"], "unknown obs column `drug`")] {
        let err = ModelParams { interaction: Some(columns.iter().map(|c| c.to_string()).collect()), ..Default::default() }.check(ModelKind::Dgd).unwrap_err().to_string();
        assert!(err.contains("train.interaction") && err.contains(fragment), "{err}");
    }
    let err = ModelParams { interaction_rank: Some(0), ..Default::default() }.check(ModelKind::Dgd).unwrap_err().to_string();
    assert!(err.contains("train.interaction_rank"), "{err}");
}

/// The NB-VAE encoder on the sparse counts (`encode_batch`: on the CPU the first layer is a
/// sparse product unless bf16 runs on AMX tiles) gives the dense input's encoding
/// (`encode(encoder_input)`, candle's f32 matmul) and the same gradients to the first layer,
/// both input kinds, within f32 summation-order rounding.
#[test]
fn the_sparse_encoder_input_encodes_and_trains_as_the_dense_one() {
    use perturbgen_models::bf16::MatmulPrecision;
    use perturbgen_models::config::EncoderInput;
    let cells = toy_cells();
    for input in [EncoderInput::Counts, EncoderInput::Log1p] {
        let mut config = small_config(ModelKind::Nbvae);
        config.encoder_input = input;
        let covariates = Covariates::fit(&cells.obs, &config.covariates).unwrap();
        let data = ModelData::new(cells.clone(), config.scale, &covariates, std::path::Path::new("toy")).unwrap();
        let net = perturbgen_models::network::Network::new(config, covariates, cells.counts.genes.clone(), &Device::Cpu).unwrap();
        assert!(perturbgen_models::sparse_linear::sparse_first_layer(MatmulPrecision::F32, &Device::Cpu), "f32 on the CPU takes the sparse path");
        let rows: Vec<usize> = (0..64).collect();
        let batch = data.batch(&rows);
        let c = data.onehot(&rows, &Device::Cpu).unwrap();
        let first = &net.encoder.as_ref().unwrap().layers[0];
        // A loss that weighs every output differently, so that the gradients are not symmetric.
        let run = |(mu, logvar): (candle_core::Tensor, candle_core::Tensor)| {
            let weights = candle_core::Tensor::arange(0f32, (64 * 3) as f32, &Device::Cpu).unwrap().reshape((64, 3)).unwrap().affine(0.01, -0.5).unwrap();
            let loss = ((&mu * &weights).unwrap().sum_all().unwrap() + logvar.sqr().unwrap().sum_all().unwrap()).unwrap();
            let grads = loss.backward().unwrap();
            let get = |v: &candle_core::Var| grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (mu.flatten_all().unwrap().to_vec1::<f32>().unwrap(), logvar.flatten_all().unwrap().to_vec1::<f32>().unwrap(), get(&first.weight), get(&first.bias))
        };
        let sparse = run(net.encode_batch(&batch, &c).unwrap());
        let dense = run(net.encode(&net.encoder_input(&batch).unwrap(), &c).unwrap());
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len());
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{input:?} {what}: all zero");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!((x - y).abs() <= 1e-5 * scale, "{input:?} {what}[{i}]: sparse {x}, dense {y}");
            }
        };
        close(&sparse.0, &dense.0, "mu");
        close(&sparse.1, &dense.1, "logvar");
        close(&sparse.2, &dense.2, "dW of the first layer");
        close(&sparse.3, &dense.3, "db of the first layer");
        // Training hands dW over instead of autograd's store: the same bits once moved in.
        let handed = perturbgen_models::handed_grads::HandedGrads::default();
        let (mu, logvar) = net.encode_batch_with(&batch, &c, Some(&handed)).unwrap();
        let weights = candle_core::Tensor::arange(0f32, (64 * 3) as f32, &Device::Cpu).unwrap().reshape((64, 3)).unwrap().affine(0.01, -0.5).unwrap();
        let mut grads = ((&mu * &weights).unwrap().sum_all().unwrap() + logvar.sqr().unwrap().sum_all().unwrap()).unwrap().backward().unwrap();
        assert!(grads.get(first.weight.as_tensor()).is_none(), "{input:?}: dW went to autograd's store");
        assert_eq!(handed.move_into(&mut grads).unwrap(), 1);
        assert_eq!(grads.get(first.weight.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), sparse.2, "{input:?}: dW handed over");
    }
}

/// A training step's decoder head with bf16 products (`decode_nll` with handed gradients: the
/// last layer and the NB op as one op, `nb_head`) gives the composed ops' per-cell NLL and the
/// same gradient to every parameter and to z, with effects (the table's rows added in the NB op)
/// and without; the last layer's weight, θ and the table get theirs handed over, not through
/// autograd's store.
#[test]
fn the_fused_decoder_head_gives_the_composed_ops_values_and_gradients() {
    use perturbgen_models::bf16::{self, MatmulPrecision};
    use perturbgen_models::config::ModelParams;
    use perturbgen_models::handed_grads::HandedGrads;
    if let Err(why) = bf16::backend_check() {
        // scripts/test sets PGEN_REQUIRE_BF16=1 where the CPU has the units and libdnnl loads.
        assert!(std::env::var("PGEN_REQUIRE_BF16").as_deref() != Ok("1"), "PGEN_REQUIRE_BF16=1 but no oneDNN bf16 matmul: {why}");
        eprintln!("skipped: {why}");
        return;
    }
    let cells = toy_cells();
    for effects in [None, Some(vec!["plate_name".to_string()])] {
        let config = ModelParams { decoder_hidden: Some(vec![16, 32]), latent_dim: Some(3), batch_size: Some(64), covariates: Some(vec!["cell_type".into()]), effects: effects.clone(), ..Default::default() }
            .check(ModelKind::Dgd)
            .unwrap();
        let covariates = Covariates::fit(&cells.obs, &config.covariates).unwrap().with_effects(&cells.obs, &config.effects).unwrap();
        let data = ModelData::new(cells.clone(), config.scale, &covariates, std::path::Path::new("toy")).unwrap();
        let mut net = perturbgen_models::network::Network::new(config, covariates, cells.counts.genes.clone(), &Device::Cpu).unwrap();
        net.matmul = MatmulPrecision::Bf16;
        if let Some(effect) = &net.effect {
            // A non-zero table (it starts at zero), rows differing per level and gene.
            let table: Vec<f32> = (0..3 * 30).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.03).collect();
            effect.set(&candle_core::Tensor::from_vec(table, (3, 30), &Device::Cpu).unwrap()).unwrap();
        }
        let rows: Vec<usize> = (0..40).collect();
        let cond = data.conditioning(&rows, &Device::Cpu).unwrap();
        let z = candle_core::Var::from_vec((0..40 * 3).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.05).collect::<Vec<f32>>(), (40, 3), &Device::Cpu).unwrap();
        let last = net.decoder.layers.last().unwrap();
        let mut vars: Vec<(String, candle_core::Var)> = net.network_vars();
        vars.push(("z".into(), z.clone()));
        let step = |handed: Option<&HandedGrads>| {
            let nll = net.decode_nll(z.as_tensor(), &cond, std::sync::Arc::new(data.batch(&rows)), true, handed).unwrap();
            // Unequal cell weights, as a loss that is not a plain sum would give.
            let w = candle_core::Tensor::from_vec((0..40).map(|i| 0.5 + i as f32 / 40.0).collect::<Vec<f32>>(), 40, &Device::Cpu).unwrap();
            let mut grads = (&nll * &w).unwrap().sum_all().unwrap().backward().unwrap();
            if let Some(handed) = handed {
                assert!(grads.get(last.weight.as_tensor()).is_none(), "{effects:?}: the last layer's dW went through autograd's store");
                assert_eq!(handed.move_into(&mut grads).unwrap(), if effects.is_some() { 3 } else { 2 }, "{effects:?}: dW, dθ (and the table's) handed over");
            }
            let grads: Vec<(String, Vec<f32>)> = vars.iter().map(|(name, v)| (name.clone(), grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{effects:?}: no gradient for {name}")).flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
            (nll.to_vec1::<f32>().unwrap(), grads)
        };
        let calls = bf16::linear_calls();
        let composed = step(None);
        assert!(bf16::linear_calls() > calls, "the composed step ran the bf16 layer op");
        let fused = step(Some(&HandedGrads::default()));
        assert_eq!(fused.0, composed.0, "{effects:?}: per-cell NLL");
        for ((name, a), (_, b)) in fused.1.iter().zip(&composed.1) {
            assert!(b.iter().any(|&v| v != 0.0), "{effects:?}: {name}'s gradient is all zero");
            assert_eq!(a, b, "{effects:?}: gradient of {name}");
        }
    }
}
