//! Weight quantization (f32 rows → ggml blocks).
//!
//! Q4_0, Q4_1 and Q8_0 follow ggml's reference quantizers (round to nearest).
//! The K-quants use a simpler, sound scheme than ggml's iterative
//! `make_qkx2`/`make_qx` searches: per sub-block min/max (Q4K/Q5K) or signed
//! abs-max (Q6K) scales, the scales themselves quantized (6-bit / i8) against a
//! per-super-block f16 factor, then every value re-quantized round-to-nearest
//! against the *quantized* scales, so the error is bounded by half a step of
//! the stored scale.

use crate::QuantType;
use half::f16;

/// Quantizes one block of `qtype.block_elems()` values into `out`
/// (`qtype.block_bytes()` bytes).
pub(crate) fn quantize_block(qtype: QuantType, x: &[f32], out: &mut [u8]) {
    match qtype {
        QuantType::Q4_0 => q4_0(x, out),
        QuantType::Q4_1 => q4_1(x, out),
        QuantType::Q8_0 => q8_0(x, out),
        QuantType::Q4K => qk45(x, out, false),
        QuantType::Q5K => qk45(x, out, true),
        QuantType::Q6K => q6k(x, out),
    }
}

fn put_f16(out: &mut [u8], off: usize, v: f32) -> f32 {
    let h = f16::from_f32(v);
    out[off..off + 2].copy_from_slice(&h.to_bits().to_le_bytes());
    h.to_f32()
}

fn inv(d: f32) -> f32 {
    if d != 0.0 && d.is_finite() {
        1.0 / d
    } else {
        0.0
    }
}

fn q4_0(x: &[f32], out: &mut [u8]) {
    // ggml quantize_row_q4_0_ref: d = max / -8 with max the signed value of largest magnitude.
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = inv(d);
    put_f16(out, 0, d);
    for j in 0..16 {
        let q0 = ((x[j] * id + 8.5) as i32).clamp(0, 15) as u8;
        let q1 = ((x[j + 16] * id + 8.5) as i32).clamp(0, 15) as u8;
        out[2 + j] = q0 | (q1 << 4);
    }
}

fn q4_1(x: &[f32], out: &mut [u8]) {
    let mut min = f32::INFINITY;
    let mut max = f32::NEG_INFINITY;
    for &v in x {
        min = min.min(v);
        max = max.max(v);
    }
    let d = (max - min) / 15.0;
    let id = inv(d);
    put_f16(out, 0, d);
    put_f16(out, 2, min);
    for j in 0..16 {
        let q0 = (((x[j] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        let q1 = (((x[j + 16] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        out[4 + j] = q0 | (q1 << 4);
    }
}

fn q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inv(d);
    put_f16(out, 0, d);
    for j in 0..32 {
        out[2 + j] = ((x[j] * id).round() as i32).clamp(-127, 127) as i8 as u8;
    }
}

/// Packs eight 6-bit scales and mins into ggml's 12-byte K4 layout.
fn pack_scales_k4(ls: &[u8; 8], lm: &[u8; 8], out: &mut [u8]) {
    out[..12].fill(0);
    for j in 0..8 {
        if j < 4 {
            out[j] = ls[j];
            out[j + 4] = lm[j];
        } else {
            out[j + 4] = (ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4);
            out[j - 4] |= (ls[j] >> 4) << 6;
            out[j] |= (lm[j] >> 4) << 6;
        }
    }
}

fn qk45(x: &[f32], out: &mut [u8], five: bool) {
    let nmax = if five { 31.0 } else { 15.0 };
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    for j in 0..8 {
        let sub = &x[32 * j..32 * j + 32];
        let lo = sub.iter().fold(0.0f32, |a, &v| a.min(v)); // min clamped to <= 0
        let hi = sub.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        mins[j] = -lo;
        scales[j] = ((hi - lo) / nmax).max(0.0);
    }
    let max_scale = scales.iter().fold(0.0f32, |a, &v| a.max(v));
    let max_min = mins.iter().fold(0.0f32, |a, &v| a.max(v));
    let d = put_f16(out, 0, max_scale / 63.0);
    let dmin = put_f16(out, 2, max_min / 63.0);
    let (id, idmin) = (inv(d), inv(dmin));
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        ls[j] = ((scales[j] * id).round() as i32).clamp(0, 63) as u8;
        lm[j] = ((mins[j] * idmin).round() as i32).clamp(0, 63) as u8;
    }
    pack_scales_k4(&ls, &lm, &mut out[4..16]);
    let mut l = [0u8; 256];
    for j in 0..8 {
        let dd = d * f32::from(ls[j]);
        let dm = dmin * f32::from(lm[j]);
        let idd = inv(dd);
        for i in 0..32 {
            let v = (x[32 * j + i] + dm) * idd;
            l[32 * j + i] = (v.round() as i32).clamp(0, nmax as i32) as u8;
        }
    }
    if five {
        let (qh, qs) = out[16..176].split_at_mut(32);
        qh.fill(0);
        for c in 0..4 {
            for i in 0..32 {
                let mut lo = l[64 * c + i];
                let mut hi = l[64 * c + 32 + i];
                if lo > 15 {
                    lo -= 16;
                    qh[i] |= 1 << (2 * c);
                }
                if hi > 15 {
                    hi -= 16;
                    qh[i] |= 1 << (2 * c + 1);
                }
                qs[32 * c + i] = lo | (hi << 4);
            }
        }
    } else {
        for c in 0..4 {
            for i in 0..32 {
                out[16 + 32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

fn q6k(x: &[f32], out: &mut [u8]) {
    let mut scales = [0.0f32; 16];
    for (g, s) in scales.iter_mut().enumerate() {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in &x[16 * g..16 * g + 16] {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        *s = max / -32.0;
    }
    let mut amax = 0.0f32;
    let mut max_scale = 0.0f32;
    for &s in &scales {
        if s.abs() > amax {
            amax = s.abs();
            max_scale = s;
        }
    }
    let iscale = if max_scale != 0.0 {
        -128.0 / max_scale
    } else {
        0.0
    };
    let d = put_f16(out, 208, inv(iscale));
    let mut l = [0u8; 256];
    for g in 0..16 {
        let sc = ((iscale * scales[g]).round() as i32).clamp(-128, 127) as i8;
        out[192 + g] = sc as u8;
        let dd = d * f32::from(sc);
        let idd = inv(dd);
        for i in 0..16 {
            let v = (x[16 * g + i] * idd).round() as i32;
            l[16 * g + i] = (v.clamp(-32, 31) + 32) as u8;
        }
    }
    for half in 0..2 {
        for i in 0..32 {
            let b = 128 * half;
            let (q1, q2, q3, q4) = (l[b + i], l[b + i + 32], l[b + i + 64], l[b + i + 96]);
            out[64 * half + i] = (q1 & 0x0F) | ((q3 & 0x0F) << 4);
            out[64 * half + i + 32] = (q2 & 0x0F) | ((q4 & 0x0F) << 4);
            out[128 + 32 * half + i] =
                (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
}
