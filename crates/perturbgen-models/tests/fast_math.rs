//! The NB op's f32 dense pass: the exp/ln/log1p polynomials within a few ulps, and the dense row
//! picked for the CPU's vector units bit for bit equal to the baseline ISA's.

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
