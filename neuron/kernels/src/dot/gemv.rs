//! Generic SIMD GEMV: up to four quantized activation rows (a decode batch)
//! against a range of weight rows read straight from their ggml blocks, so
//! each weight block is read once for all of them. Every output is computed
//! by exactly the same operations whatever the number of activation rows, so
//! a sequence decoded in a batch gets bit for bit what it gets alone.
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

/// Dot products of weight rows `rows` (of `w`, `row_bytes` each) with each
/// activation row of `acts`: row `i`'s results go to
/// `out[i * out_stride + (r - rows.start)]`.
///
/// # Safety
/// CPU features of `I`; `w` holds every row in `rows` with `row_bytes` =
/// `cols / block_elems * block_bytes`; each act has `cols` values;
/// `out.len() >= (acts.len() - 1) * out_stride + rows.len()`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemv<I: Isa>(
    qtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    rows: std::ops::Range<usize>,
    acts: &[ActRow<'_>],
    out: &mut [f32],
    out_stride: usize,
) {
    match qtype {
        QuantType::Q4_0 => drive::<I, T_Q4_0>(w, row_bytes, cols, rows, acts, out, out_stride),
        QuantType::Q4_1 => drive::<I, T_Q4_1>(w, row_bytes, cols, rows, acts, out, out_stride),
        QuantType::Q8_0 => drive::<I, T_Q8_0>(w, row_bytes, cols, rows, acts, out, out_stride),
        QuantType::Q4K => drive::<I, T_Q4K>(w, row_bytes, cols, rows, acts, out, out_stride),
        QuantType::Q5K => drive::<I, T_Q5K>(w, row_bytes, cols, rows, acts, out, out_stride),
        QuantType::Q6K => drive::<I, T_Q6K>(w, row_bytes, cols, rows, acts, out, out_stride),
    }
}

#[inline(always)]
unsafe fn drive<I: Isa, const T: u8>(
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    rows: std::ops::Range<usize>,
    acts: &[ActRow<'_>],
    out: &mut [f32],
    out_stride: usize,
) {
    let mut i = 0;
    while i < acts.len() {
        let left = acts.len() - i;
        let o = &mut out[i * out_stride..];
        let a = &acts[i..];
        // One weight read serves up to four activation rows.
        match left {
            1 => drive_n::<I, T, 1>(w, row_bytes, cols, rows.clone(), [a[0]], o, out_stride),
            2 => drive_n::<I, T, 2>(
                w,
                row_bytes,
                cols,
                rows.clone(),
                [a[0], a[1]],
                o,
                out_stride,
            ),
            3 => drive_n::<I, T, 3>(
                w,
                row_bytes,
                cols,
                rows.clone(),
                [a[0], a[1], a[2]],
                o,
                out_stride,
            ),
            _ => drive_n::<I, T, 4>(
                w,
                row_bytes,
                cols,
                rows.clone(),
                [a[0], a[1], a[2], a[3]],
                o,
                out_stride,
            ),
        }
        i += left.min(4);
    }
}

/// `K` activation rows, with as many weight rows per step as the
/// registers hold accumulators for: four for one activation row or on
/// AVX-512, else two.
#[inline(always)]
unsafe fn drive_n<I: Isa, const T: u8, const K: usize>(
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    rows: std::ops::Range<usize>,
    acts: [ActRow<'_>; K],
    out: &mut [f32],
    out_stride: usize,
) {
    if K == 1 || I::GEMV_MULTI_ROWS >= 4 {
        drive_k::<I, T, K, 4>(w, row_bytes, cols, rows, acts, out, out_stride)
    } else {
        drive_k::<I, T, K, 2>(w, row_bytes, cols, rows, acts, out, out_stride)
    }
}

#[inline(always)]
unsafe fn drive_k<I: Isa, const T: u8, const K: usize, const RMAX: usize>(
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    rows: std::ops::Range<usize>,
    acts: [ActRow<'_>; K],
    out: &mut [f32],
    out_stride: usize,
) {
    debug_assert!(
        w.len() >= rows.end * row_bytes
            && out.len() >= (K - 1) * out_stride + rows.len()
            && acts.iter().all(|a| a.qs.len() == cols)
    );
    let nb = cols / qtype_of(T).block_elems();
    // Computed once: a division per block would bound the whole kernel.
    let ahead = prefetch_distance(row_bytes);
    let mut r = rows.start;
    let mut o = 0;
    while r + RMAX <= rows.end {
        let res =
            rows_n::<I, T, K, RMAX>(w.as_ptr().add(r * row_bytes), row_bytes, ahead, nb, &acts);
        for (k, rk) in res.iter().enumerate() {
            out[k * out_stride + o..k * out_stride + o + RMAX].copy_from_slice(rk);
        }
        r += RMAX;
        o += RMAX;
    }
    while r < rows.end {
        let res = rows_n::<I, T, K, 1>(w.as_ptr().add(r * row_bytes), row_bytes, ahead, nb, &acts);
        for (k, rk) in res.iter().enumerate() {
            out[k * out_stride + o] = rk[0];
        }
        r += 1;
        o += 1;
    }
}

#[inline(always)]
unsafe fn rows_n<I: Isa, const T: u8, const K: usize, const R: usize>(
    base: *const u8,
    row_bytes: usize,
    ahead: usize,
    nb: usize,
    acts: &[ActRow<'_>; K],
) -> [[f32; R]; K] {
    if T == T_Q4K || T == T_Q5K || T == T_Q6K {
        rows_k::<I, T, K, R>(base, row_bytes, ahead, nb, acts)
    } else {
        rows_32::<I, T, K, R>(base, row_bytes, ahead, nb, acts)
    }
}

/// How far ahead to prefetch weights, in bytes (rounded to whole rows):
/// weight matrices usually stream from DRAM (a model's weights do not fit in
/// cache), and rows of a few hundred bytes, read four at a time, are too
/// short for the hardware prefetcher to ramp up. Measured on Zen 4 (Q8_0
/// 49152x576, 2 threads): none 1.6 ms, 2.5 KiB 0.85 ms, 10 KiB 0.7 ms.
const PREFETCH_BYTES: usize = 8192;

/// Bytes ahead to prefetch: `PREFETCH_BYTES` rounded up to whole rows, so
/// the hint lands on the same block of a later row.
#[inline(always)]
fn prefetch_distance(row_bytes: usize) -> usize {
    PREFETCH_BYTES.div_ceil(row_bytes.max(1)) * row_bytes
}

/// Prefetches `ahead` bytes past `blk` (a hint: never faults, so the
/// address may lie past the matrix).
#[inline(always)]
unsafe fn prefetch(blk: *const u8, ahead: usize) {
    _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(ahead) as *const i8);
}

/// Q4_0 / Q4_1 / Q8_0 rows against Q8 activation blocks of 32.
#[inline(always)]
unsafe fn rows_32<I: Isa, const T: u8, const K: usize, const R: usize>(
    base: *const u8,
    row_bytes: usize,
    ahead: usize,
    nb: usize,
    acts: &[ActRow<'_>; K],
) -> [[f32; R]; K] {
    let bb = qtype_of(T).block_bytes();
    let mut acc = [[_mm256_setzero_ps(); R]; K];
    let mut off = [[0.0f32; R]; K];
    for b in 0..nb {
        let mut a = [_mm256_setzero_si256(); K];
        let mut dav = [_mm256_setzero_ps(); K];
        let mut init = [_mm256_setzero_si256(); K];
        for k in 0..K {
            a[k] = _mm256_loadu_si256(acts[k].qs.as_ptr().add(32 * b) as *const __m256i);
            dav[k] = _mm256_set1_ps(*acts[k].d.get_unchecked(b));
            init[k] = if T == T_Q4_0 {
                neg_shl::<3>(I::sum4(a[k]))
            } else if T == T_Q8_0 && !I::Q8_SELF_CENTERED {
                neg_shl::<7>(I::sum4(a[k]))
            } else {
                _mm256_setzero_si256()
            };
        }
        for r in 0..R {
            let blk = base.add(r * row_bytes + b * bb);
            prefetch(blk, ahead);
            let (wv, dw, mw) = if T == T_Q4_1 {
                let (dw, mw) = f16x2(blk);
                (nibbles(blk.add(4)), dw, mw)
            } else if T == T_Q4_0 {
                (nibbles(blk.add(2)), f16x1(blk), 0.0)
            } else {
                (
                    _mm256_loadu_si256(blk.add(2) as *const __m256i),
                    f16x1(blk),
                    0.0,
                )
            };
            let dwv = _mm256_set1_ps(dw);
            for k in 0..K {
                let p = if T == T_Q8_0 {
                    I::dot_q8_signed(init[k], wv, a[k])
                } else {
                    I::dot_u8(init[k], wv, a[k])
                };
                if T == T_Q4_1 {
                    off[k][r] += mw * *acts[k].s.get_unchecked(b);
                }
                // dw·da in every lane: the same single rounding as the
                // scalar product, without a broadcast per row and act.
                acc[k][r] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dwv, dav[k]), acc[k][r]);
            }
        }
    }
    let mut res = [[0.0f32; R]; K];
    for k in 0..K {
        for r in 0..R {
            res[k][r] = hsum(acc[k][r]) + off[k][r];
        }
    }
    res
}

/// K-quant rows against Q8K activations: each super-block is unpacked to
/// unsigned bytes and per-16 scales (once for all activation rows), then
/// dotted 32 bytes at a time.
#[inline(always)]
unsafe fn rows_k<I: Isa, const T: u8, const K: usize, const R: usize>(
    base: *const u8,
    row_bytes: usize,
    ahead: usize,
    nb: usize,
    acts: &[ActRow<'_>; K],
) -> [[f32; R]; K] {
    let qt = qtype_of(T);
    let bb = qt.block_bytes();
    let mut q = [[0u8; 256]; R];
    let mut sa = [[0.0f32; 16]; R];
    let mut sb = [[0.0f32; 16]; R];
    let mut acc = [[_mm256_setzero_ps(); R]; K];
    let mut bacc = [[_mm256_setzero_ps(); R]; K];
    for b in 0..nb {
        for r in 0..R {
            for line in (0..bb).step_by(64) {
                prefetch(base.add(r * row_bytes + b * bb + line), ahead);
            }
            let blk = std::slice::from_raw_parts(base.add(r * row_bytes + b * bb), bb);
            unpack_block(qt, blk, &mut q[r], &mut sa[r], &mut sb[r]);
        }
        for k in 0..K {
            let qs = acts[k].qs.as_ptr();
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
                    let sv =
                        _mm256_set_m128(_mm_set1_ps(sa[r][2 * c + 1]), _mm_set1_ps(sa[r][2 * c]));
                    accb[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sv, accb[r]);
                }
            }
            let da = _mm256_set1_ps(*acts[k].d.get_unchecked(16 * b));
            let s0 = _mm256_loadu_ps(acts[k].s.as_ptr().add(16 * b));
            let s1 = _mm256_loadu_ps(acts[k].s.as_ptr().add(16 * b + 8));
            for r in 0..R {
                acc[k][r] = _mm256_fmadd_ps(accb[r], da, acc[k][r]);
                if T != T_Q6K {
                    bacc[k][r] = _mm256_fmadd_ps(_mm256_loadu_ps(sb[r].as_ptr()), s0, bacc[k][r]);
                    bacc[k][r] =
                        _mm256_fmadd_ps(_mm256_loadu_ps(sb[r].as_ptr().add(8)), s1, bacc[k][r]);
                }
            }
        }
    }
    let mut res = [[0.0f32; R]; K];
    for k in 0..K {
        for r in 0..R {
            res[k][r] = hsum(_mm256_add_ps(acc[k][r], bacc[k][r]));
        }
    }
    res
}
