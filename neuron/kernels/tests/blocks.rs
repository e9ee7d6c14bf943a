//! Block layouts: hand-built blocks dequantize to exactly the values ggml's
//! format defines, our dequantization matches candle's (an independent ggml
//! implementation) bit for bit, and quantize → dequantize stays within
//! per-type error bounds.

#![allow(clippy::needless_range_loop)] // expected values are computed from the index

mod common;

use common::Rng;
use half::f16;
use neuron_kernels::{QMatrix, QuantType, quantize};

fn h(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

fn dequant_one(qt: QuantType, blk: Vec<u8>) -> Vec<f32> {
    let n = qt.block_elems();
    let qm = QMatrix::new(qt, 1, n, blk).expect("one block");
    let mut row = vec![0.0; n];
    qm.dequantize_row(0, &mut row).expect("row 0");
    assert_eq!(row, qm.dequantize());
    row
}

#[test]
fn q4_0_hand_built() {
    let mut b = h(0.5).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let v = dequant_one(QuantType::Q4_0, b);
    for j in 0..16 {
        assert_eq!(v[j], (j as f32 - 8.0) * 0.5);
        assert_eq!(v[j + 16], (7.0 - j as f32) * 0.5);
    }
}

#[test]
fn q4_1_hand_built() {
    let mut b = h(0.25).to_vec();
    b.extend(h(-1.0));
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let v = dequant_one(QuantType::Q4_1, b);
    for j in 0..16 {
        assert_eq!(v[j], j as f32 * 0.25 - 1.0);
        assert_eq!(v[j + 16], (15 - j) as f32 * 0.25 - 1.0);
    }
}

#[test]
fn q8_0_hand_built() {
    let mut b = h(2.0).to_vec();
    b.extend((0..32i32).map(|j| (j * 8 - 128) as i8 as u8));
    let v = dequant_one(QuantType::Q8_0, b);
    for j in 0..32 {
        assert_eq!(v[j], (j as f32 * 8.0 - 128.0) * 2.0);
    }
}

/// ggml's 12-byte K4 scale layout: bytes 0..4 hold scale j (6 bits) plus
/// bits 4-5 of scale j+4 on top; bytes 4..8 the same for mins; bytes 8..12
/// the low nibbles of scale j+4 (low) and min j+4 (high).
fn k4_scales(ls: [u8; 8], lm: [u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = ls[j] | ((ls[j + 4] >> 4) << 6);
        s[j + 4] = lm[j] | ((lm[j + 4] >> 4) << 6);
        s[j + 8] = (ls[j + 4] & 0x0F) | ((lm[j + 4] & 0x0F) << 4);
    }
    s
}

const LS: [u8; 8] = [1, 2, 3, 4, 17, 33, 50, 63];
const LM: [u8; 8] = [0, 1, 2, 63, 20, 40, 60, 5];

/// Nibble of value `l` (0..32) in the low (hi = false) or high half.
fn nib(l: usize, hi: bool) -> u8 {
    if hi {
        15 - (l % 16) as u8
    } else {
        (l % 16) as u8
    }
}

#[test]
fn q4k_hand_built() {
    let mut b = h(1.0).to_vec();
    b.extend(h(0.5));
    b.extend(k4_scales(LS, LM));
    // 4 chunks of 32 bytes: low nibbles = values 64c..64c+32, high = the next 32.
    for _c in 0..4 {
        b.extend((0..32).map(|l| nib(l, false) | (nib(l, true) << 4)));
    }
    let v = dequant_one(QuantType::Q4K, b);
    for e in 0..256 {
        let (c, w) = (e / 64, e % 64);
        let q = nib(w % 32, w >= 32);
        let sub = 2 * c + usize::from(w >= 32);
        let want = 1.0 * f32::from(LS[sub]) * f32::from(q) - 0.5 * f32::from(LM[sub]);
        assert_eq!(v[e], want, "element {e}");
    }
}

#[test]
fn q5k_hand_built() {
    let qh: Vec<u8> = (0..32u32).map(|l| (l * 37 + 11) as u8).collect();
    let mut b = h(0.5).to_vec();
    b.extend(h(0.25));
    b.extend(k4_scales(LS, LM));
    b.extend(&qh);
    for _c in 0..4 {
        b.extend((0..32).map(|l| nib(l, false) | (nib(l, true) << 4)));
    }
    let v = dequant_one(QuantType::Q5K, b);
    for e in 0..256 {
        let (c, w) = (e / 64, e % 64);
        let l = w % 32;
        let hi = w >= 32;
        // bit 2c of qh[l] is the 5th bit of the low-nibble value, 2c+1 of the high one.
        let bit = (qh[l] >> (2 * c + usize::from(hi))) & 1;
        let q = nib(l, hi) + 16 * bit;
        let sub = 2 * c + usize::from(hi);
        let want = 0.5 * f32::from(LS[sub]) * f32::from(q) - 0.25 * f32::from(LM[sub]);
        assert_eq!(v[e], want, "element {e}");
    }
}

#[test]
fn q6k_hand_built() {
    let ql: Vec<u8> = (0..128u32).map(|i| (i * 29 + 3) as u8).collect();
    let qh: Vec<u8> = (0..64u32).map(|i| (i * 53 + 7) as u8).collect();
    let sc: Vec<i8> = (0..16i32).map(|i| (i * 9 - 70) as i8).collect();
    let mut b = ql.clone();
    b.extend(&qh);
    b.extend(sc.iter().map(|&s| s as u8));
    b.extend(h(0.5));
    let v = dequant_one(QuantType::Q6K, b);
    for e in 0..256 {
        // Halves of 128; within a half, quarter k = 0..4 of 32 values l:
        // low 4 bits from ql[64h + l + 32*(k&1)] (low nibble for k<2, high
        // for k>=2), 2 high bits from qh[32h + l] bits 2k..2k+1; scale
        // index 8h + 2k + l/16; value = d * scale * (q - 32).
        let (hf, r) = (e / 128, e % 128);
        let (k, l) = (r / 32, r % 32);
        let byte = ql[64 * hf + l + 32 * (k & 1)];
        let low = if k < 2 { byte & 0x0F } else { byte >> 4 };
        let high = (qh[32 * hf + l] >> (2 * k)) & 3;
        let q = i32::from(low | (high << 4)) - 32;
        let s = sc[8 * hf + 2 * k + l / 16];
        let want = 0.5 * f32::from(s) * q as f32;
        assert_eq!(v[e], want, "element {e}");
    }
}

fn candle_dtype(qt: QuantType) -> candle_core::quantized::GgmlDType {
    use candle_core::quantized::GgmlDType as G;
    match qt {
        QuantType::Q4_0 => G::Q4_0,
        QuantType::Q4_1 => G::Q4_1,
        QuantType::Q8_0 => G::Q8_0,
        QuantType::Q4K => G::Q4K,
        QuantType::Q5K => G::Q5K,
        QuantType::Q6K => G::Q6K,
    }
}

#[test]
fn dequantize_matches_candle_bit_for_bit() {
    use candle_core::quantized::{QStorage, QTensor};
    let mut rng = Rng::new(10);
    for qt in QuantType::ALL {
        let (rows, cols) = (3, 2 * qt.block_elems());
        // Random bytes with finite f16 scales: take our quantizer's blocks
        // and scramble the quants (every non-scale byte).
        let w = rng.vec(rows * cols, 0.3);
        let qm = quantize(qt, &w, rows, cols).expect("quantize");
        let ours = qm.dequantize();
        let dev = candle_core::Device::Cpu;
        let storage = QStorage::from_data(
            std::borrow::Cow::Borrowed(qm.data()),
            &dev,
            candle_dtype(qt),
        )
        .expect("storage");
        let qtensor = QTensor::new(storage, (rows, cols)).expect("qtensor");
        let theirs: Vec<f32> = qtensor
            .dequantize(&dev)
            .expect("dequantize")
            .flatten_all()
            .expect("flatten")
            .to_vec1()
            .expect("to_vec1");
        assert_eq!(ours, theirs, "{qt}");
    }
}

/// Quantize → dequantize error bounds. Per block: the largest error must stay
/// within a fraction of the block's largest magnitude (one quantization step
/// for Q4_0, whose ggml rounding can clamp the top value by a full step; half
/// a step plus f16 rounding of the scales otherwise; the K-quants also round
/// their sub-block scales to 6 bits / i8, costing up to a few more steps),
/// and the RMS error must be small relative to the data.
#[test]
fn quantize_round_trip_bounds() {
    let mut rng = Rng::new(11);
    // (type, max |err| / block amax, rms err / rms x)
    // Theory, for these near-normal blocks (amax ~ 2.3 sigma): Q4_0 step =
    // amax/8 and its top value can clamp a full step; Q4_1/Q4K step = range/15,
    // Q5K range/31, Q6K amax/32 (top value may clamp a step), Q8_0 amax/127
    // with half a step max error; RMS error ~ step/sqrt(12).
    let cases = [
        (QuantType::Q4_0, 0.13, 0.10),
        (QuantType::Q4_1, 0.075, 0.09),
        (QuantType::Q8_0, 0.0045, 0.0065),
        (QuantType::Q4K, 0.12, 0.09),
        (QuantType::Q5K, 0.06, 0.045),
        (QuantType::Q6K, 0.035, 0.022),
    ];
    for (qt, max_rel, rms_rel) in cases {
        let (rows, cols) = (16, 4 * qt.block_elems());
        let x = rng.vec(rows * cols, 1.0);
        let y = quantize(qt, &x, rows, cols).expect("quantize").dequantize();
        let be = qt.block_elems();
        let mut worst = 0.0f32;
        for (xb, yb) in x.chunks(be).zip(y.chunks(be)) {
            let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let err = xb
                .iter()
                .zip(yb)
                .fold(0.0f32, |a, (p, q)| a.max((p - q).abs()));
            worst = worst.max(err / amax);
        }
        let se: f64 = x
            .iter()
            .zip(&y)
            .map(|(p, q)| f64::from(p - q).powi(2))
            .sum();
        let sx: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum();
        let rms = (se / sx).sqrt();
        println!("{qt}: max err/amax {worst:.4}, rms rel {rms:.4}");
        assert!(worst <= max_rel, "{qt}: max err/amax {worst} > {max_rel}");
        assert!(rms <= rms_rel, "{qt}: rms rel {rms} > {rms_rel}");
    }
    // Zeros and constants round-trip exactly.
    for qt in QuantType::ALL {
        let n = qt.block_elems();
        let z = quantize(qt, &vec![0.0; n], 1, n)
            .expect("zeros")
            .dequantize();
        assert!(z.iter().all(|v| *v == 0.0), "{qt} zeros");
    }
}
