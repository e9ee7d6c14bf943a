//! Matmul correctness: every type x every available SIMD level against an
//! f64 reference on the dequantized weights, SIMD levels against scalar, and
//! bad inputs rejected with errors.

mod common;

use common::Rng;
use neuron_kernels::{KernelError, QMatrix, QuantType, SimdLevel, quantize};

const ROWS: [usize; 4] = [1, 7, 33, 40];
const BLOCKS: [usize; 3] = [1, 2, 5];
const MS: [usize; 6] = [1, 2, 3, 4, 17, 64];

fn weights(rng: &mut Rng, qt: QuantType, rows: usize, cols: usize) -> QMatrix {
    // Per-row magnitudes vary so scales differ between rows and blocks.
    let mut w = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let scale = 0.05 + 0.02 * (r % 5) as f32;
        w.extend((0..cols).map(|_| rng.normal(scale)));
    }
    quantize(qt, &w, rows, cols).expect("valid shape")
}

/// Activations with an outlier per row (as real hidden states have).
fn acts(rng: &mut Rng, m: usize, cols: usize) -> Vec<f32> {
    let mut x = rng.vec(m * cols, 1.0);
    for i in 0..m {
        x[i * cols + (i * 7) % cols] = 6.0;
    }
    x
}

/// Checks `got` against the exact product of the dequantized weights with
/// the unquantized activations. The kernels quantize each activation block
/// (32 values, or 256 for K-quants) to 8 bits with step amax/127, so each
/// activation is off by at most amax/254; an output is therefore off by at
/// most sum_c |w_c| * amax(block of c) / 254. We allow that bound (+1%) plus
/// f32 accumulation error (1e-5 of sum |w_c x_c|).
fn check_against_reference(qm: &QMatrix, x: &[f32], m: usize, got: &[f32], what: &str) {
    let (rows, cols) = (qm.rows(), qm.cols());
    let w = qm.dequantize();
    let ablock = if qm.qtype().block_elems() == 256 {
        256
    } else {
        32
    };
    for i in 0..m {
        let xr = &x[i * cols..(i + 1) * cols];
        let amax: Vec<f32> = xr
            .chunks(ablock)
            .map(|c| c.iter().fold(0.0f32, |a, v| a.max(v.abs())))
            .collect();
        for j in 0..rows {
            let wr = &w[j * cols..(j + 1) * cols];
            let mut exact = 0.0f64;
            let mut qbound = 0.0f64;
            let mut mag = 0.0f64;
            for c in 0..cols {
                exact += f64::from(wr[c]) * f64::from(xr[c]);
                qbound += f64::from(wr[c].abs()) * f64::from(amax[c / ablock]) / 254.0;
                mag += f64::from((wr[c] * xr[c]).abs());
            }
            let tol = qbound * 1.01 + mag * 1e-5 + 1e-6;
            let g = f64::from(got[i * rows + j]);
            assert!(
                (g - exact).abs() <= tol,
                "{what}: out[{i},{j}] = {g}, exact {exact}, |err| {} > tol {tol}",
                (g - exact).abs()
            );
        }
    }
}

#[test]
fn matmul_matches_reference_all_types_levels_shapes() {
    let mut rng = Rng::new(1);
    for qt in QuantType::ALL {
        for &nb in &BLOCKS {
            let cols = nb * qt.block_elems();
            for &rows in &ROWS {
                let qm = weights(&mut rng, qt, rows, cols);
                for &m in &MS {
                    let x = acts(&mut rng, m, cols);
                    let mut scalar = vec![0.0f32; m * rows];
                    qm.matmul_with(SimdLevel::Scalar, &x, m, &mut scalar)
                        .expect("scalar");
                    for level in SimdLevel::available() {
                        let mut out = vec![f32::NAN; m * rows];
                        qm.matmul_with(level, &x, m, &mut out).expect("matmul");
                        let what = format!("{qt} {level} rows={rows} cols={cols} m={m}");
                        check_against_reference(&qm, &x, m, &out, &what);
                        // Same integer math: only f32 summation order differs.
                        for (k, (a, b)) in out.iter().zip(&scalar).enumerate() {
                            let tol = 2e-5 * (1.0 + b.abs());
                            assert!((a - b).abs() <= tol, "{what}: [{k}] {a} vs scalar {b}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn default_level_and_larger_shapes() {
    // Large enough to be split over the thread pool (both GEMV and GEMM paths).
    let mut rng = Rng::new(2);
    for qt in [
        QuantType::Q4_1,
        QuantType::Q8_0,
        QuantType::Q4K,
        QuantType::Q6K,
    ] {
        let (rows, cols) = (200, 512);
        let qm = weights(&mut rng, qt, rows, cols);
        for m in [1, 2, 9, 70] {
            let x = acts(&mut rng, m, cols);
            let mut out = vec![0.0f32; m * rows];
            qm.matmul(&x, m, &mut out).expect("matmul");
            check_against_reference(&qm, &x, m, &out, &format!("{qt} default m={m}"));
        }
    }
}

#[test]
fn output_may_be_larger_and_m_zero_is_a_no_op() {
    let mut rng = Rng::new(3);
    let qm = weights(&mut rng, QuantType::Q4_0, 5, 64);
    let x = acts(&mut rng, 1, 64);
    let mut out = vec![7.0f32; 8];
    qm.matmul(&x, 1, &mut out).expect("matmul");
    assert_eq!(&out[5..], &[7.0, 7.0, 7.0]);
    let mut none: [f32; 0] = [];
    qm.matmul(&[], 0, &mut none).expect("m = 0");
}

#[test]
fn bad_inputs_are_errors() {
    let qt = QuantType::Q4_1;
    assert!(matches!(
        QMatrix::new(qt, 2, 64, vec![0; 79]),
        Err(KernelError::DataLength {
            expected: 80,
            got: 79,
            ..
        })
    ));
    assert!(matches!(
        QMatrix::new(qt, 2, 48, vec![0; 60]),
        Err(KernelError::BadCols { .. })
    ));
    assert!(matches!(
        QMatrix::new(qt, 2, 0, vec![]),
        Err(KernelError::BadCols { .. })
    ));
    assert!(matches!(
        QMatrix::new(qt, 0, 32, vec![]),
        Err(KernelError::ZeroRows)
    ));
    assert!(matches!(
        QMatrix::new(QuantType::Q6K, 1, 32, vec![0; 210]),
        Err(KernelError::BadCols { .. })
    ));
    assert!(matches!(
        quantize(qt, &[0.0; 63], 2, 32),
        Err(KernelError::InputLength { .. })
    ));
    assert!(matches!(
        QMatrix::new(qt, usize::MAX, 64, vec![]),
        Err(KernelError::Overflow)
    ));

    let qm = QMatrix::new(qt, 2, 64, vec![0; 80]).expect("valid");
    let mut out = vec![0.0f32; 4];
    for level in SimdLevel::available() {
        assert!(matches!(
            qm.matmul_with(level, &[0.0; 127], 2, &mut out),
            Err(KernelError::InputLength { .. })
        ));
        assert!(matches!(
            qm.matmul_with(level, &[0.0; 128], 2, &mut out[..3]),
            Err(KernelError::OutputTooSmall { needed: 4, got: 3 })
        ));
        assert!(matches!(
            qm.matmul_with(level, &[0.0; 64], usize::MAX, &mut out),
            Err(KernelError::Overflow) | Err(KernelError::InputLength { .. })
        ));
    }
    let mut row = vec![0.0f32; 64];
    assert!(matches!(
        qm.dequantize_row(2, &mut row),
        Err(KernelError::RowOutOfRange { .. })
    ));
    assert!(matches!(
        qm.dequantize_row(0, &mut row[..63]),
        Err(KernelError::OutputTooSmall { .. })
    ));
    assert!(qm.dequantize_row(1, &mut row).is_ok());
}

#[test]
fn garbage_blocks_never_panic() {
    // Arbitrary bytes (including NaN/inf f16 scales) must not panic.
    let mut rng = Rng::new(4);
    for qt in QuantType::ALL {
        let cols = 2 * qt.block_elems();
        let data: Vec<u8> = (0..3 * 2 * qt.block_bytes())
            .map(|_| rng.next_u64() as u8)
            .collect();
        let qm = QMatrix::new(qt, 3, cols, data).expect("valid length");
        let x = rng.vec(5 * cols, 1.0);
        let mut out = vec![0.0f32; 15];
        for level in SimdLevel::available() {
            qm.matmul_with(level, &x, 5, &mut out).expect("runs");
            qm.matmul_with(level, &x[..cols], 1, &mut out)
                .expect("runs");
        }
        let _ = qm.dequantize();
    }
}

#[test]
fn simd_level_names_and_parsing() {
    assert_eq!(SimdLevel::Scalar.to_string(), "scalar");
    assert_eq!(SimdLevel::Avx2.to_string(), "avx2");
    assert_eq!(SimdLevel::Avx512Vnni.to_string(), "avx512-vnni");
    assert_eq!(SimdLevel::parse("AVX512"), Some(SimdLevel::Avx512Vnni));
    assert!(SimdLevel::available().contains(&neuron_kernels::simd_level()));
    assert!(neuron_kernels::threads() >= 1);
}

#[test]
fn quant_type_names() {
    for qt in QuantType::ALL {
        assert_eq!(QuantType::parse(qt.name()), Some(qt));
        assert_eq!(QuantType::parse(&qt.name().to_uppercase()), Some(qt));
    }
    assert_eq!(QuantType::parse("q4_k"), Some(QuantType::Q4K));
    assert_eq!(QuantType::parse("Q5_K"), Some(QuantType::Q5K));
    assert_eq!(QuantType::parse("q6_k"), Some(QuantType::Q6K));
    assert_eq!(QuantType::parse("q3_k"), None);
    let sizes: Vec<_> = QuantType::ALL
        .iter()
        .map(|q| (q.block_elems(), q.block_bytes()))
        .collect();
    assert_eq!(
        sizes,
        [
            (32, 18),
            (32, 20),
            (32, 34),
            (256, 144),
            (256, 176),
            (256, 210)
        ]
    );
}

/// Within one kernel mode, a row's result never depends on the other rows
/// of the call (how many, or where it sits): bit for bit. This is what lets
/// the runtime batch sequences and resume from cached prefixes without
/// changing any answer.
#[test]
fn each_mode_is_row_invariant_bit_for_bit() {
    use neuron_kernels::Mode;
    let mut rng = Rng::new(41);
    for qt in QuantType::ALL {
        let cols = qt.block_elems() * 3;
        let w = weights(&mut rng, qt, 37, cols);
        let x = acts(&mut rng, 19, cols);
        for mode in [Mode::Rowwise, Mode::Tiled] {
            let mut all = vec![0f32; 19 * 37];
            w.matmul_mode(mode, &x, 19, &mut all).unwrap();
            for (start, len) in [(5, 1), (0, 3), (4, 7), (11, 8)] {
                let mut part = vec![0f32; len * 37];
                w.matmul_mode(mode, &x[start * cols..(start + len) * cols], len, &mut part)
                    .unwrap();
                assert!(
                    part == all[start * 37..(start + len) * 37],
                    "{qt:?} {mode:?}: rows {start}..{} differ alone",
                    start + len
                );
            }
        }
    }
}
