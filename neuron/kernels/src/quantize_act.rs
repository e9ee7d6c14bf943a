//! Activation quantization: f32 rows → signed 8-bit quants with one f32 scale
//! per 32 values (Q8_0/Q8_1 style, for Q4_0/Q4_1/Q8_0 weights) or per 256
//! values (Q8K style, for K-quant weights), plus per scale-group integer sums
//! (ggml's Q8_1 `s` / Q8K `bsums`) used for the weights' zero points and mins.
//! Rounding follows ggml's reference quantizers (see `quantize_impl`);
//! quants lie in -127..=127.

use crate::{QuantType, SimdLevel};

/// Quantized activations: `m` rows of `cols` values, in groups of
/// `qtype.group_elems()` values.
#[derive(Default)]
pub(crate) struct QAct {
    /// Quants, row-major, `m * cols`.
    pub qs: Vec<i8>,
    /// Scale of each group (`m * groups`); the same for all groups of a
    /// 256-value super-block.
    pub d: Vec<f32>,
    /// `d * sum(quants)` of each group.
    pub s: Vec<f32>,
    /// Integer sum of the quants of each group.
    pub isum: Vec<i32>,
    /// Groups per row.
    pub groups: usize,
}

/// Mutable views of a range of `QAct` rows.
pub(crate) struct QActRows<'a> {
    pub qs: &'a mut [i8],
    pub d: &'a mut [f32],
    pub s: &'a mut [f32],
    pub isum: &'a mut [i32],
}

impl QAct {
    /// Sizes the buffers for `m` rows of `cols` values of `qtype` activations.
    pub(crate) fn prepare(&mut self, qtype: QuantType, m: usize, cols: usize) {
        let groups = cols / qtype.group_elems();
        self.groups = groups;
        resize(&mut self.qs, m * cols, 0);
        resize(&mut self.d, m * groups, 0.0);
        resize(&mut self.s, m * groups, 0.0);
        resize(&mut self.isum, m * groups, 0);
    }
}

fn resize<T: Copy>(v: &mut Vec<T>, n: usize, fill: T) {
    if v.len() < n {
        v.resize(n, fill);
    }
}

/// Quantizes whole rows `x` (a multiple of the block size long) into `dst`.
pub(crate) fn quantize_rows(level: SimdLevel, qtype: QuantType, x: &[f32], dst: QActRows<'_>) {
    let dblock = if qtype.is_k() { 256 } else { 32 };
    let g = qtype.group_elems();
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512Vnni => {
            // SAFETY: a level above Scalar is only used when the CPU supports
            // AVX2 (`simd::detected`, checked by every caller).
            unsafe { quantize_avx2(x, dst, dblock, g) }
        }
        _ => quantize_impl(x, dst, dblock, g),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_avx2(x: &[f32], dst: QActRows<'_>, dblock: usize, g: usize) {
    quantize_impl(x, dst, dblock, g)
}

/// Plain code written to auto-vectorize when inlined into a SIMD function.
///
/// The rounding follows ggml's reference quantizers exactly, so results
/// track llama.cpp's (and candle's): per 32 values (Q8_0 / Q8_1) the scale
/// is `amax / 127` stored as f16, quants `round(x / d)` half away from
/// zero, and the Q8_1 sum `s` is stored as f16 too; per 256 values (Q8_K)
/// the scale is `1 / (127 / amax)` in f32, quants rounded half to even.
#[inline(always)]
fn quantize_impl(x: &[f32], dst: QActRows<'_>, dblock: usize, g: usize) {
    let per_block = dblock / g;
    for (b, (xs, qs)) in x
        .chunks_exact(dblock)
        .zip(dst.qs.chunks_exact_mut(dblock))
        .enumerate()
    {
        let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = if dblock == 32 {
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = (v * id).round() as i8;
            }
            d
        } else {
            let iscale = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = (v * iscale).round_ties_even().min(127.0) as i8;
            }
            if iscale != 0.0 { 1.0 / iscale } else { 0.0 }
        };
        let stored = if dblock == 32 { f16_round(d) } else { d };
        for k in 0..per_block {
            let gi = b * per_block + k;
            let sum: i32 = qs[k * g..(k + 1) * g].iter().map(|&q| i32::from(q)).sum();
            dst.d[gi] = stored;
            dst.isum[gi] = sum;
            dst.s[gi] = if dblock == 32 {
                f16_round(sum as f32 * d)
            } else {
                stored * sum as f32
            };
        }
    }
}

#[inline(always)]
fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}
