//! `train.precision`: the bf16 product and the decoder layer's custom op against f64 / f32
//! references, `auto`'s resolution with the CPU's units faked, the config key, and the f32 path
//! staying candle's own ops. The oneDNN tests skip (saying so) where libdnnl.so.2 or a bf16
//! kernel is missing.
use candle_core::{Device, Tensor, Var};
use perturbgen::params::ParamGuard;
use perturbgen_models::bf16::{self, CpuBf16, MatmulPrecision};
use perturbgen_models::config::{Precision, TrainSection};
use perturbgen_models::nn::Mlp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bf16_available() -> bool {
    match bf16::backend_check() {
        Ok(kernel) => {
            eprintln!("oneDNN bf16 kernel: {kernel}");
            true
        }
        Err(why) => {
            // scripts/test sets PGEN_REQUIRE_BF16=1 where the CPU has the units and libdnnl
            // loads: there a missing kernel is a failure, not a skip.
            assert!(std::env::var("PGEN_REQUIRE_BF16").as_deref() != Ok("1"), "PGEN_REQUIRE_BF16=1 but no oneDNN bf16 matmul: {why}");
            eprintln!("skipped: no oneDNN bf16 matmul here ({why})");
            false
        }
    }
}

/// The bf16 op's call counter is per process: the tests that run the op, and the one that
/// asserts the f32 path never does, take turns (cargo runs a file's tests on parallel threads).
static OP_COUNTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn op_counter() -> std::sync::MutexGuard<'static, ()> {
    OP_COUNTER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random(n: usize, scale: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn round_bf16(v: &[f32]) -> Vec<f32> {
    bf16::to_bf16(v).into_iter().map(bf16::from_bf16_bits).collect()
}

#[test]
fn bf16_rounding_is_nearest_even() {
    for (x, bits) in [(1.0f32, 0x3f80u16), (-2.5, 0xc020), (0.0, 0), (f32::INFINITY, 0x7f80), (f32::MAX, 0x7f80)] {
        assert_eq!(bf16::to_bf16_bits(x), bits, "{x}");
    }
    // Halfway cases go to the even neighbour; just above halfway rounds up.
    assert_eq!(bf16::to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
    assert_eq!(bf16::to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
    assert_eq!(bf16::to_bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
    assert!(bf16::from_bf16_bits(bf16::to_bf16_bits(f32::NAN)).is_nan());
    assert!(bf16::from_bf16_bits(bf16::to_bf16_bits(f32::from_bits(0x7f80_0001))).is_nan(), "a NaN must not round to inf");
    // Every value within 2^-8 relative.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for v in random(10_000, 1e3, &mut rng) {
        let r = bf16::from_bf16_bits(bf16::to_bf16_bits(v));
        assert!((r - v).abs() <= v.abs() * 2f32.powi(-8), "{v} → {r}");
    }
}

#[test]
fn bf16_product_matches_f64_reference() {
    let _turn = op_counter();
    if !bf16_available() {
        return;
    }
    let (m, k, n) = (37, 301, 129);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (a, b) = (random(m * k, 1.0, &mut rng), random(k * n, 1.0, &mut rng));
    let c = bf16::matmul(&a, &b, m, k, n).unwrap();
    let (ar, br) = (round_bf16(&a), round_bf16(&b));
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut of_rounded, mut abs) = (0f64, 0f64, 0f64);
            for l in 0..k {
                exact += a[i * k + l] as f64 * b[l * n + j] as f64;
                of_rounded += ar[i * k + l] as f64 * br[l * n + j] as f64;
                abs += (a[i * k + l] as f64 * b[l * n + j] as f64).abs();
            }
            let got = c[i * n + j] as f64;
            // The products of the rounded inputs, accumulated in f32: f32 accuracy.
            assert!((got - of_rounded).abs() <= 1e-5 * abs, "[{i},{j}] {got} vs {of_rounded} (rounded inputs)");
            // Against the exact product of the f32 inputs: two roundings to 8 bits each.
            assert!((got - exact).abs() <= 2.0 * 2f64.powi(-8) * abs, "[{i},{j}] {got} vs {exact}");
        }
    }
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
    let n = b.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
    (d / n).sqrt()
}

#[test]
fn custom_op_gradients_match_f32_matmul() {
    let _turn = op_counter();
    if !bf16_available() {
        return;
    }
    let dev = Device::Cpu;
    let (m, k, n) = (48, 113, 70);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = Var::from_vec(random(m * k, 1.0, &mut rng), (m, k), &dev).unwrap();
    let w = Var::from_vec(random(k * n, 0.1, &mut rng), (k, n), &dev).unwrap();
    let b = Var::from_vec(random(n, 0.1, &mut rng), n, &dev).unwrap();
    let target = Tensor::from_vec(random(m * n, 1.0, &mut rng), (m, n), &dev).unwrap();
    let loss = |y: Tensor| (y - &target).unwrap().sqr().unwrap().sum_all().unwrap();
    let y32 = x.as_tensor().matmul(w.as_tensor()).unwrap().broadcast_add(b.as_tensor()).unwrap();
    let y16 = bf16::linear(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
    assert!(rel(&y16, &y32) < 1e-2, "forward: {}", rel(&y16, &y32));
    let (g32, g16) = (loss(y32).backward().unwrap(), loss(y16).backward().unwrap());
    for (name, v) in [("x", &x), ("weight", &w), ("bias", &b)] {
        let (a, r) = (g16.get(v.as_tensor()).unwrap(), g32.get(v.as_tensor()).unwrap());
        assert_eq!(a.dims(), r.dims(), "{name}");
        let e = rel(a, r);
        assert!(e < 1e-2, "d/d{name}: relative error {e}");
    }
}

#[test]
fn f32_path_is_candles_own_ops() {
    let _turn = op_counter();
    let dev = Device::Cpu;
    let mlp = Mlp::new(&[9, 16, 33], 4, &dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = Var::from_vec(random(20 * 9, 1.0, &mut rng), (20, 9), &dev).unwrap();
    let calls = bf16::linear_calls();
    let y = mlp.forward_in(x.as_tensor(), MatmulPrecision::F32).unwrap();
    // The pre-precision decoder, written out: x·W + b, ReLU, x·W + b.
    let (l0, l1) = (&mlp.layers[0], &mlp.layers[1]);
    let h = x.as_tensor().matmul(l0.weight.as_tensor()).unwrap().broadcast_add(l0.bias.as_tensor()).unwrap().relu().unwrap();
    let reference = h.matmul(l1.weight.as_tensor()).unwrap().broadcast_add(l1.bias.as_tensor()).unwrap();
    let bytes = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bytes(&y), bytes(&reference));
    let (g, gr) = (y.sum_all().unwrap().backward().unwrap(), reference.sum_all().unwrap().backward().unwrap());
    for v in [&l0.weight, &l1.weight, &x] {
        assert_eq!(bytes(g.get(v.as_tensor()).unwrap()), bytes(gr.get(v.as_tensor()).unwrap()));
    }
    assert_eq!(bf16::linear_calls(), calls, "the f32 path ran the bf16 op");
    assert_eq!(MatmulPrecision::default(), MatmulPrecision::F32);
}

#[test]
fn auto_resolution_with_faked_cpus() {
    let none = CpuBf16::default();
    let amx = CpuBf16 { amx_bf16: true, ..none };
    let avx = CpuBf16 { avx512_bf16: true, ..none };
    let lib = || Ok(());
    let nolib = || Err("cannot load oneDNN".to_string());
    use MatmulPrecision::{Bf16, F32};
    for cpu in [none, amx, avx] {
        assert_eq!(bf16::resolve(Precision::F32, cpu, lib()), Ok(F32));
        assert_eq!(bf16::resolve(Precision::F32, cpu, nolib()), Ok(F32));
        assert_eq!(bf16::resolve(Precision::Auto, cpu, nolib()), Ok(F32), "auto without the library falls back");
    }
    assert_eq!(bf16::resolve(Precision::Auto, none, lib()), Ok(F32));
    assert_eq!(bf16::resolve(Precision::Auto, amx, lib()), Ok(Bf16));
    assert_eq!(bf16::resolve(Precision::Auto, avx, lib()), Ok(Bf16));
    assert_eq!(bf16::resolve(Precision::Bf16, amx, lib()), Ok(Bf16));
    let err = bf16::resolve(Precision::Bf16, none, lib()).unwrap_err();
    assert!(err.contains("AMX-BF16 or AVX512-BF16"), "{err}");
    let err = bf16::resolve(Precision::Bf16, avx, nolib()).unwrap_err();
    assert!(err.contains("oneDNN"), "{err}");
}

#[test]
fn precision_key_parses_defaults_to_auto_and_names_itself() {
    assert_eq!(TrainSection::default().precision, Precision::Auto);
    // (The `train.precision` key in messages comes from perturbgen-cli's serde_path_to_error.)
    let parse = |v: &str| serde_json::from_str::<TrainSection>(&format!("{{\"precision\": \"{v}\"}}"));
    assert_eq!(parse("bf16").unwrap().precision, Precision::Bf16);
    assert_eq!(parse("f32").unwrap().precision, Precision::F32);
    assert_eq!(parse("auto").unwrap().precision, Precision::Auto);
    let err = parse("fp16").unwrap_err().to_string();
    assert!(err.contains("unknown variant `fp16`") && err.contains("bf16"), "{err}");
    let plan = TrainSection { precision: Precision::F32, ..Default::default() }.check().unwrap();
    assert_eq!(plan.precision, Precision::F32);
    if cfg!(feature = "cuda") {
        // bf16 on a GPU is candle's BF16 tensors (linear_via_tensors).
        let plan = (TrainSection { precision: Precision::Bf16, device: "cuda".into(), ..Default::default() }).check().unwrap();
        assert_eq!(plan.precision, Precision::Bf16);
    }
}

#[test]
fn tensor_bf16_path_rounds_once_and_passes_gradients() {
    let _turn = op_counter();
    // The GPU's bf16 path, run here on the CPU (candle's BF16 matmul exists there too): the
    // product of the bf16-rounded inputs, rounded once more to bf16, plus the bias; gradients
    // reach the f32 weights and follow f32's.
    let dev = Device::Cpu;
    let (m, k, n) = (40, 113, 64);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (xv, wv, bv) = (random(m * k, 1.0, &mut rng), random(k * n, 0.1, &mut rng), random(n, 0.1, &mut rng));
    let x = Var::from_vec(xv.clone(), (m, k), &dev).unwrap();
    let w = Var::from_vec(wv.clone(), (k, n), &dev).unwrap();
    let b = Var::from_vec(bv.clone(), n, &dev).unwrap();
    let y = bf16::linear_via_tensors(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
    assert_eq!(y.dtype(), candle_core::DType::F32);
    let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (xr, wr) = (round_bf16(&xv), round_bf16(&wv));
    for i in 0..m {
        for j in 0..n {
            let exact: f64 = (0..k).map(|l| xr[i * k + l] as f64 * wr[l * n + j] as f64).sum();
            // One bf16 rounding of the product (2^-8 relative) plus the f32 bias.
            let want = exact + bv[j] as f64;
            let tol = exact.abs() * 2f64.powi(-8) + 1e-4;
            assert!((got[i * n + j] as f64 - want).abs() <= tol, "({i}, {j}): {} vs {want}", got[i * n + j]);
        }
    }
    let target = Tensor::from_vec(random(m * n, 1.0, &mut rng), (m, n), &dev).unwrap();
    let loss = |y: Tensor| (y - &target).unwrap().sqr().unwrap().sum_all().unwrap();
    let y32 = x.as_tensor().matmul(w.as_tensor()).unwrap().broadcast_add(b.as_tensor()).unwrap();
    let (g32, g16) = (loss(y32).backward().unwrap(), loss(y).backward().unwrap());
    for (name, v) in [("x", &x), ("weight", &w), ("bias", &b)] {
        let (a, r) = (g16.get(v.as_tensor()).unwrap(), g32.get(v.as_tensor()).unwrap());
        assert_eq!((a.dims(), a.dtype()), (r.dims(), r.dtype()), "{name}");
        assert!(rel(a, r) < 2e-2, "d/d{name}: relative error {}", rel(a, r));
    }
}

/// The bias gradient's column sums (computed while rounding the output gradient to bf16)
/// against f64 sums, and the rounding against the scalar rounding, across row blocks.
#[test]
fn bf16_conversion_with_column_sums_matches_f64_sums() {
    let (rows, cols) = (70, 13);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let src = random(rows * cols, 1.0, &mut rng);
    let (bits, sums) = bf16::to_bf16_with_column_sums(&src, cols);
    assert_eq!(bits, src.iter().map(|&v| bf16::to_bf16_bits(v)).collect::<Vec<_>>());
    for j in 0..cols {
        let want: f64 = (0..rows).map(|i| src[i * cols + j] as f64).sum();
        assert!((sums[j] as f64 - want).abs() < 1e-5, "column {j}: {} vs {want}", sums[j]);
    }
}

/// y = x·W + b and its loss' gradients in f64, by hand: the reference for the data-input ops.
fn linear_f64_reference(x: &[f32], w: &[f32], b: &[f32], t: &[f32], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    // loss = Σ (y − t)²: dy = 2 (y − t); dW = xᵀ dy; db = Σ_rows dy.
    let mut dy = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let y: f64 = (0..k).map(|l| x[i * k + l] as f64 * w[l * n + j] as f64).sum::<f64>() + b[j] as f64;
            dy[i * n + j] = 2.0 * (y - t[i * n + j] as f64);
        }
    }
    let mut dw = vec![0f64; k * n];
    for l in 0..k {
        for j in 0..n {
            dw[l * n + j] = (0..m).map(|i| x[i * k + l] as f64 * dy[i * n + j]).sum();
        }
    }
    let db = (0..n).map(|j| (0..m).map(|i| dy[i * n + j]).sum()).collect();
    (dw, db)
}

fn rel_f64(got: &Tensor, want: &[f64]) -> f64 {
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let d: f64 = got.iter().zip(want).map(|(&a, &b)| (a as f64 - b).powi(2)).sum();
    (d / want.iter().map(|b| b * b).sum::<f64>()).sqrt()
}

#[test]
fn data_input_layer_gives_weight_gradients_of_f64_and_none_to_its_input() {
    // The NB-VAE encoder's first layer (Linear::forward_of_data): the counts get no gradient
    // (no dY·Wᵀ product), dW and db match an f64 reference: to f32 accuracy in f32, to bf16
    // accuracy in bf16 (where oneDNN has a bf16 kernel).
    let _turn = op_counter();
    let dev = Device::Cpu;
    let (m, k, n) = (40, 157, 33);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mlp = Mlp::new(&[k, n], 7, &dev).unwrap();
    let layer = &mlp.layers[0];
    let xs = random(m * k, 1.0, &mut rng);
    let ts = random(m * n, 1.0, &mut rng);
    let x = Var::from_vec(xs.clone(), (m, k), &dev).unwrap();
    let target = Tensor::from_vec(ts.clone(), (m, n), &dev).unwrap();
    let flat = |v: &Var| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (dw_ref, db_ref) = linear_f64_reference(&xs, &flat(&layer.weight), &flat(&layer.bias), &ts, m, k, n);
    let mut precisions = vec![(MatmulPrecision::F32, 1e-5)];
    if bf16_available() {
        precisions.push((MatmulPrecision::Bf16, 1e-2));
    }
    for (precision, tolerance) in precisions {
        let y = mlp.forward_of_data(x.as_tensor(), precision).unwrap();
        let g = (y - &target).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_none(), "{precision:?}: the data got a gradient");
        let (ew, eb) = (rel_f64(g.get(layer.weight.as_tensor()).unwrap(), &dw_ref), rel_f64(g.get(layer.bias.as_tensor()).unwrap(), &db_ref));
        assert!(ew < tolerance && eb < tolerance, "{precision:?}: dW {ew}, db {eb} relative to f64");
    }
}

/// A small sparse batch: `cells` × `genes` counts at ~10 % density, scale 1.
fn sparse_batch(cells: usize, genes: usize, rng: &mut ChaCha8Rng) -> perturbgen_models::nb_loss::SparseBatch {
    let mut b = perturbgen_models::nb_loss::SparseBatch { n_genes: genes, indptr: vec![0], scale: vec![1.0; cells], ..Default::default() };
    for _ in 0..cells {
        for j in 0..genes {
            if rng.random::<f64>() < 0.1 {
                b.indices.push(j as u32);
                b.data.push(rng.random_range(1..40) as f32);
            }
        }
        b.indptr.push(b.indices.len());
    }
    b
}

#[test]
fn bf16_encoder_input_from_sparse_counts_is_the_rounded_dense_concatenation() {
    // The NB-VAE's bf16 input built from the sparse counts must be bit for bit what rounding
    // the f32 dense copy (raw or log1p) concatenated with the covariates gives.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (cells, genes, width) = (23, 301, 7);
    let batch = sparse_batch(cells, genes, &mut rng);
    let cov: Vec<f32> = (0..cells * width).map(|i| if i % width == i / width % width { 1.0 } else { 0.0 }).collect();
    for (dense, f) in [(batch.dense_counts(), (|k| k) as fn(f32) -> f32), (batch.dense_log1p(), f32::ln_1p as fn(f32) -> f32)] {
        let joined: Vec<f32> = (0..cells).flat_map(|c| dense[c * genes..(c + 1) * genes].iter().chain(&cov[c * width..(c + 1) * width]).copied().collect::<Vec<_>>()).collect();
        assert_eq!(batch.encoder_input_bf16(f, &cov, width), bf16::to_bf16(&joined));
    }
}

#[test]
fn bf16_data_layer_on_prerounded_input_gives_the_same_bits() {
    // linear_of_bf16_data (the encoder's first layer fed from the sparse counts) against
    // linear_of_data on the f32 input: the same output, dW and db, bit for bit.
    if !bf16_available() {
        return;
    }
    let _turn = op_counter();
    let dev = Device::Cpu;
    let (m, k, n) = (37, 211, 29);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mlp = Mlp::new(&[k, n], 13, &dev).unwrap();
    let layer = &mlp.layers[0];
    let xs = random(m * k, 3.0, &mut rng);
    let target = Tensor::from_vec(random(m * n, 1.0, &mut rng), (m, n), &dev).unwrap();
    let x = Tensor::from_vec(xs.clone(), (m, k), &dev).unwrap();
    let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let run = |y: Tensor| {
        let g = (&y - &target).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        (bits(&y), bits(g.get(layer.weight.as_tensor()).unwrap()), bits(g.get(layer.bias.as_tensor()).unwrap()))
    };
    let dense = run(layer.forward_of_data(&x, MatmulPrecision::Bf16).unwrap());
    let prerounded = run(bf16::linear_of_bf16_data(bf16::to_bf16(&xs), m, layer.weight.as_tensor(), layer.bias.as_tensor(), None).unwrap());
    assert!(dense == prerounded, "the pre-rounded input's layer differs from the dense one's");
    // A training step hands dW over instead (the AMX path of the NB-VAE encoder): the same bits.
    let handed = perturbgen_models::handed_grads::HandedGrads::default();
    let y = bf16::linear_of_bf16_data(bf16::to_bf16(&xs), m, layer.weight.as_tensor(), layer.bias.as_tensor(), Some(handed.clone())).unwrap();
    let mut g = (&y - &target).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(layer.weight.as_tensor()).is_none(), "dW went through autograd's store");
    assert_eq!(handed.move_into(&mut g).unwrap(), 1);
    assert!(bits(g.get(layer.weight.as_tensor()).unwrap()) == prerounded.1, "the handed dW differs");
    assert!(bf16::linear_of_bf16_data(vec![0; 5], m, layer.weight.as_tensor(), layer.bias.as_tensor(), None).is_err(), "a short input is refused");
}

#[test]
fn bf16_transpose_matches_the_transpose_by_hand() {
    for (rows, cols) in [(1, 1), (3, 70), (130, 65), (64, 64), (200, 3)] {
        let src: Vec<u16> = (0..rows * cols).map(|i| (i * 7 % 65_521) as u16).collect();
        let hand: Vec<u16> = (0..cols).flat_map(|c| (0..rows).map(move |r| (r, c))).map(|(r, c)| src[r * cols + c]).collect();
        assert_eq!(bf16::transpose(&src, rows, cols), hand, "{rows} × {cols}");
    }
}
