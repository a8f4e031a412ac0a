//! The fused Adam against hand-computed steps.
use perturbgen_models::adam::{AdamParams, AdamState};

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
