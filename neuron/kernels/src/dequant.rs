//! Reference dequantization of ggml blocks to f32, following ggml's
//! `dequantize_row_*` formulas exactly (independently of `unpack_block`).

use crate::QuantType;
use crate::blocks::{f16_at, q6k, qk45, scale_min_k4};

/// Dequantizes one block into `out` (`qtype.block_elems()` values).
pub(crate) fn dequantize_block(qtype: QuantType, blk: &[u8], out: &mut [f32]) {
    match qtype {
        QuantType::Q4_0 => {
            let d = f16_at(blk, 0);
            for j in 0..16 {
                let x = blk[2 + j];
                out[j] = (i32::from(x & 0x0F) - 8) as f32 * d;
                out[j + 16] = (i32::from(x >> 4) - 8) as f32 * d;
            }
        }
        QuantType::Q4_1 => {
            let d = f16_at(blk, 0);
            let m = f16_at(blk, 2);
            for j in 0..16 {
                let x = blk[4 + j];
                out[j] = f32::from(x & 0x0F) * d + m;
                out[j + 16] = f32::from(x >> 4) * d + m;
            }
        }
        QuantType::Q8_0 => {
            let d = f16_at(blk, 0);
            for j in 0..32 {
                out[j] = f32::from(blk[2 + j] as i8) * d;
            }
        }
        QuantType::Q4K | QuantType::Q5K => {
            let d = f16_at(blk, qk45::D);
            let dmin = f16_at(blk, qk45::DMIN);
            let scales = &blk[qk45::SCALES..qk45::SCALES + 12];
            let is5 = qtype == QuantType::Q5K;
            for c in 0..4 {
                let (sc1, m1) = scale_min_k4(2 * c, scales);
                let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
                let (d1, mm1) = (d * f32::from(sc1), dmin * f32::from(m1));
                let (d2, mm2) = (d * f32::from(sc2), dmin * f32::from(m2));
                for l in 0..32 {
                    let (x, hbits) = if is5 {
                        (blk[qk45::QS5 + 32 * c + l], blk[qk45::QH5 + l])
                    } else {
                        (blk[qk45::QS4 + 32 * c + l], 0)
                    };
                    let h1 = ((hbits >> (2 * c)) & 1) << 4;
                    let h2 = ((hbits >> (2 * c + 1)) & 1) << 4;
                    out[64 * c + l] = d1 * f32::from((x & 0x0F) + h1) - mm1;
                    out[64 * c + 32 + l] = d2 * f32::from((x >> 4) + h2) - mm2;
                }
            }
        }
        QuantType::Q6K => {
            let d = f16_at(blk, q6k::D);
            for half in 0..2 {
                let ql = q6k::QL + 64 * half;
                let qh = q6k::QH + 32 * half;
                let sc = q6k::SCALES + 8 * half;
                let y = &mut out[128 * half..128 * half + 128];
                for l in 0..32 {
                    let is = l / 16;
                    let h = blk[qh + l];
                    let q1 = i32::from((blk[ql + l] & 0x0F) | ((h & 3) << 4)) - 32;
                    let q2 = i32::from((blk[ql + l + 32] & 0x0F) | (((h >> 2) & 3) << 4)) - 32;
                    let q3 = i32::from((blk[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
                    let q4 = i32::from((blk[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
                    let s = |i: usize| d * f32::from(blk[sc + i] as i8);
                    y[l] = s(is) * q1 as f32;
                    y[l + 32] = s(is + 2) * q2 as f32;
                    y[l + 64] = s(is + 4) * q3 as f32;
                    y[l + 96] = s(is + 6) * q4 as f32;
                }
            }
        }
    }
}
