//! Training with `precision` f32 and bf16 on toy cells (its own test process: it counts the bf16
//! op's calls, which other tests running alongside would change).
mod common;
use candle_core::Device;
use perturbgen_models::bf16::{self, MatmulPrecision};
use perturbgen_models::config::ModelKind;


/// Trains `model` for 10 epochs; (history's train NLL per epoch, last.safetensors).
fn train_toy(model: ModelKind, precision: MatmulPrecision) -> (Vec<f64>, Vec<u8>) {
    let (meta, bytes) = common::train_toy(model, &Device::Cpu, precision);
    let history = meta["history"].as_array().unwrap();
    // Every epoch records what its products ran in.
    assert!(history.iter().all(|h| h["precision"] == precision.name()), "{model:?}: {history:?}");
    (history.iter().map(|h| h["train_recon"].as_f64().unwrap()).collect(), bytes)
}

#[test]
fn bf16_training_follows_f32_and_f32_never_runs_the_op() {
    for model in [ModelKind::Dgd, ModelKind::Nbvae] {
        let calls = bf16::linear_calls();
        let (f32_recon, f32_bytes) = train_toy(model, MatmulPrecision::F32);
        assert_eq!(bf16::linear_calls(), calls, "{model:?}: f32 training ran the bf16 op");
        assert_eq!(train_toy(model, MatmulPrecision::F32).1, f32_bytes, "{model:?}: f32 is not deterministic");
        match bf16::backend_check() {
            Err(why) => {
                // scripts/test sets PGEN_REQUIRE_BF16=1 where the CPU has the units and libdnnl loads.
                assert!(std::env::var("PGEN_REQUIRE_BF16").as_deref() != Ok("1"), "PGEN_REQUIRE_BF16=1 but no oneDNN bf16 matmul: {why}");
                eprintln!("skipped the bf16 half: {why}")
            }
            Ok(_) => {
                let (bf16_recon, _) = train_toy(model, MatmulPrecision::Bf16);
                assert!(bf16::linear_calls() > calls, "{model:?}: bf16 training did not run the bf16 op");
                let (first, last) = (bf16_recon[0], bf16_recon[bf16_recon.len() - 1]);
                assert!(last < 0.95 * first, "{model:?}: bf16 train NLL {first} → {last}");
                // Same trajectory within bf16's rounding: the per-epoch train NLL within 2 %.
                for (e, (a, b)) in bf16_recon.iter().zip(&f32_recon).enumerate() {
                    assert!((a - b).abs() <= 0.02 * b.abs(), "{model:?} epoch {}: bf16 {a} vs f32 {b}", e + 1);
                }
            }
        }
    }
}
