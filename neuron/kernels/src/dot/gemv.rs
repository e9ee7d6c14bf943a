//! Generic SIMD GEMV: one quantized activation row against a range of weight
//! rows read straight from their ggml blocks, four rows at a time so each
//! activation block is loaded once per four weight rows.
//!
//! Everything here is `#[inline(always)]` and instantiated inside the
//! `#[target_feature]` entry points of `avx2` / `avx512`.
//!
//! SAFETY (module-wide): the functions here are `unsafe fn`s whose bodies
//! are SIMD intrinsics and the unaligned vector loads/stores feeding them,
//! so `unsafe_op_in_unsafe_fn` is allowed rather than wrapping every
//! intrinsic. Their contracts (`# Safety` sections) are: the CPU has the
//! features (guaranteed by run-time dispatch on `simd::detected`) and the
//! buffers have the sizes `matmul::run` validated (checked again by
//! `debug_assert!`s in debug builds).
#![allow(unsafe_op_in_unsafe_fn)]

use super::isa::{Isa, f16x1, f16x2, hsum, neg_shl, nibbles};
use super::{ActRow, T_Q4_0, T_Q4_1, T_Q4K, T_Q5K, T_Q6K, T_Q8_0, qtype_of};
use crate::QuantType;
use crate::blocks::unpack_block;
use std::arch::x86_64::*;

/// Dot products of weight rows `rows` (of `w`, `row_bytes` each) with `act`,
/// written to `out[r - rows.start]`.
///
/// # Safety
/// CPU features of `I`; `w` holds every row in `rows` with `row_bytes` =
/// `cols / block_elems * block_bytes`; `act` has `cols` values;
/// `out.len() >= rows.len()`.
#[inline(always)]
pub(crate) unsafe fn gemv<I: Isa>(
    qtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    rows: std::ops::Range<usize>,
    act: ActRow<'_>,
    out: &mut [f32],
) {
    match qtype {
        QuantType::Q4_0 => drive::<I, T_Q4_0>(w, row_bytes, cols, rows, act, out),
        QuantType::Q4_1 => drive::<I, T_Q4_1>(w, row_bytes, cols, rows, act, out),
        QuantType::Q8_0 => drive::<I, T_Q8_0>(w, row_bytes, cols, rows, act, out),
        QuantType::Q4K => drive::<I, T_Q4K>(w, row_bytes, cols, rows, act, out),
        QuantType::Q5K => drive::<I, T_Q5K>(w, row_bytes, cols, rows, act, out),
        QuantType::Q6K => drive::<I, T_Q6K>(w, row_bytes, cols, rows, act, out),
    }
}

#[inline(always)]
unsafe fn drive<I: Isa, const T: u8>(
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    rows: std::ops::Range<usize>,
    act: ActRow<'_>,
    out: &mut [f32],
) {
    debug_assert!(
        w.len() >= rows.end * row_bytes && out.len() >= rows.len() && act.qs.len() == cols
    );
    let nb = cols / qtype_of(T).block_elems();
    let mut r = rows.start;
    let mut o = 0;
    while r + 4 <= rows.end {
        let res = rows_n::<I, T, 4>(w.as_ptr().add(r * row_bytes), row_bytes, nb, act);
        out[o..o + 4].copy_from_slice(&res);
        r += 4;
        o += 4;
    }
    while r < rows.end {
        let res = rows_n::<I, T, 1>(w.as_ptr().add(r * row_bytes), row_bytes, nb, act);
        out[o] = res[0];
        r += 1;
        o += 1;
    }
}

#[inline(always)]
unsafe fn rows_n<I: Isa, const T: u8, const R: usize>(
    base: *const u8,
    row_bytes: usize,
    nb: usize,
    act: ActRow<'_>,
) -> [f32; R] {
    if T == T_Q4K || T == T_Q5K || T == T_Q6K {
        rows_k::<I, T, R>(base, row_bytes, nb, act)
    } else {
        rows_32::<I, T, R>(base, row_bytes, nb, act)
    }
}

/// How far ahead to prefetch weights, in bytes (rounded to whole rows):
/// weight matrices usually stream from DRAM (a model's weights do not fit in
/// cache), and rows of a few hundred bytes, read four at a time, are too
/// short for the hardware prefetcher to ramp up. Measured on Zen 4 (Q8_0
/// 49152x576, 2 threads): none 1.6 ms, 2.5 KiB 0.85 ms, 10 KiB 0.7 ms.
const PREFETCH_BYTES: usize = 8192;

/// Prefetches the same block about `PREFETCH_BYTES` ahead (a hint: never
/// faults, so the address may lie past the matrix).
#[inline(always)]
unsafe fn prefetch(blk: *const u8, row_bytes: usize) {
    let ahead = blk.wrapping_add(PREFETCH_BYTES.div_ceil(row_bytes) * row_bytes);
    _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
}

/// Q4_0 / Q4_1 / Q8_0 rows against Q8 activation blocks of 32.
#[inline(always)]
unsafe fn rows_32<I: Isa, const T: u8, const R: usize>(
    base: *const u8,
    row_bytes: usize,
    nb: usize,
    act: ActRow<'_>,
) -> [f32; R] {
    let bb = qtype_of(T).block_bytes();
    let mut acc = [_mm256_setzero_ps(); R];
    let mut off = [0.0f32; R];
    let qs = act.qs.as_ptr();
    for b in 0..nb {
        let a = _mm256_loadu_si256(qs.add(32 * b) as *const __m256i);
        let da = *act.d.get_unchecked(b);
        let init = if T == T_Q4_0 {
            neg_shl::<3>(I::sum4(a))
        } else if T == T_Q8_0 && !I::Q8_SELF_CENTERED {
            neg_shl::<7>(I::sum4(a))
        } else {
            _mm256_setzero_si256()
        };
        for r in 0..R {
            let blk = base.add(r * row_bytes + b * bb);
            prefetch(blk, row_bytes);
            let (p, dw) = if T == T_Q4_1 {
                let (dw, mw) = f16x2(blk);
                off[r] += mw * *act.s.get_unchecked(b);
                (I::dot_u8(init, nibbles(blk.add(4)), a), dw)
            } else if T == T_Q4_0 {
                (I::dot_u8(init, nibbles(blk.add(2)), a), f16x1(blk))
            } else {
                let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                (I::dot_q8_signed(init, wv, a), f16x1(blk))
            };
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * da), acc[r]);
        }
    }
    let mut res = [0.0f32; R];
    for r in 0..R {
        res[r] = hsum(acc[r]) + off[r];
    }
    res
}

/// K-quant rows against Q8K activations: each super-block is unpacked to
/// unsigned bytes and per-16 scales, then dotted 32 bytes at a time.
#[inline(always)]
unsafe fn rows_k<I: Isa, const T: u8, const R: usize>(
    base: *const u8,
    row_bytes: usize,
    nb: usize,
    act: ActRow<'_>,
) -> [f32; R] {
    let qt = qtype_of(T);
    let bb = qt.block_bytes();
    let mut q = [[0u8; 256]; R];
    let mut sa = [[0.0f32; 16]; R];
    let mut sb = [[0.0f32; 16]; R];
    let mut acc = [_mm256_setzero_ps(); R];
    let mut bacc = [_mm256_setzero_ps(); R];
    let qs = act.qs.as_ptr();
    for b in 0..nb {
        for r in 0..R {
            for line in (0..bb).step_by(64) {
                prefetch(base.add(r * row_bytes + b * bb + line), row_bytes);
            }
            let blk = std::slice::from_raw_parts(base.add(r * row_bytes + b * bb), bb);
            unpack_block(qt, blk, &mut q[r], &mut sa[r], &mut sb[r]);
        }
        let mut accb = [_mm256_setzero_ps(); R];
        for c in 0..8 {
            let a = _mm256_loadu_si256(qs.add(256 * b + 32 * c) as *const __m256i);
            let init = if T == T_Q6K {
                neg_shl::<5>(I::sum4(a))
            } else {
                _mm256_setzero_si256()
            };
            for r in 0..R {
                let wv = _mm256_loadu_si256(q[r].as_ptr().add(32 * c) as *const __m256i);
                let p = I::dot_u8(init, wv, a);
                let sv = _mm256_set_m128(_mm_set1_ps(sa[r][2 * c + 1]), _mm_set1_ps(sa[r][2 * c]));
                accb[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sv, accb[r]);
            }
        }
        let da = _mm256_set1_ps(*act.d.get_unchecked(16 * b));
        let s0 = _mm256_loadu_ps(act.s.as_ptr().add(16 * b));
        let s1 = _mm256_loadu_ps(act.s.as_ptr().add(16 * b + 8));
        for r in 0..R {
            acc[r] = _mm256_fmadd_ps(accb[r], da, acc[r]);
            if T != T_Q6K {
                bacc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(sb[r].as_ptr()), s0, bacc[r]);
                bacc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(sb[r].as_ptr().add(8)), s1, bacc[r]);
            }
        }
    }
    let mut res = [0.0f32; R];
    for r in 0..R {
        res[r] = hsum(_mm256_add_ps(acc[r], bacc[r]));
    }
    res
}
