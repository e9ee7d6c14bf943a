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

use super::isa::{Isa, hsum, neg_shl, nibbles};
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
/// registers hold accumulators for. The 32-element types always take four
/// (their accumulators are per activation row, see `rows_32`); the K-quants
/// take four for one activation row or on AVX-512, else two.
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
    if K == 1 || I::GEMV_MULTI_ROWS >= 4 || !is_k_quant(T) {
        drive_k::<I, T, K, 4>(w, row_bytes, cols, rows, acts, out, out_stride)
    } else {
        drive_k::<I, T, K, 2>(w, row_bytes, cols, rows, acts, out, out_stride)
    }
}

const fn is_k_quant(t: u8) -> bool {
    t == T_Q4K || t == T_Q5K || t == T_Q6K
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
        let res = if is_k_quant(T) {
            rows_k::<I, T, K, 1>(w.as_ptr().add(r * row_bytes), row_bytes, ahead, nb, &acts)
                .map(|rk| rk[0])
        } else {
            // The four-row kernel on four copies of this row (stride 0), so
            // a row left over at the end gets exactly the operations it gets
            // in a group of four.
            rows_32::<I, T, K>(w.as_ptr().add(r * row_bytes), 0, ahead, nb, &acts).map(|rk| rk[0])
        };
        for (k, v) in res.iter().enumerate() {
            out[k * out_stride + o] = *v;
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
    if is_k_quant(T) {
        rows_k::<I, T, K, R>(base, row_bytes, ahead, nb, acts)
    } else {
        debug_assert!(R == 4);
        let four = rows_32::<I, T, K>(base, row_bytes, ahead, nb, acts);
        four.map(|rk| std::array::from_fn(|r| rk[r]))
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

/// Four Q4_0 / Q4_1 / Q8_0 rows against Q8 activation blocks of 32.
///
/// Per block and activation row, the four rows' integer dot products are
/// summed across lanes in the integer domain (exact, `lane_sums`), leaving
/// lanes `[r0 r1 r2 r3 | r0 r1 r2 r3]` (each half a partial
/// sum of one row); so one conversion, one scale product and one FMA serve
/// four weight rows, and the Q4_1 min term is one FMA over the rows. Every
/// lane's arithmetic is that row's alone, whatever the other rows and
/// activation rows are (row invariance).
#[inline(always)]
unsafe fn rows_32<I: Isa, const T: u8, const K: usize>(
    base: *const u8,
    row_bytes: usize,
    ahead: usize,
    nb: usize,
    acts: &[ActRow<'_>; K],
) -> [[f32; 4]; K] {
    let bb = qtype_of(T).block_bytes();
    let mut acc = [_mm256_setzero_ps(); K];
    let mut off = [_mm_setzero_ps(); K];
    for b in 0..nb {
        let blk: [*const u8; 4] = std::array::from_fn(|r| base.add(r * row_bytes + b * bb));
        let wv: [__m256i; 4] = std::array::from_fn(|r| {
            prefetch(blk[r], ahead);
            if T == T_Q4_1 {
                nibbles(blk[r].add(4))
            } else if T == T_Q4_0 {
                nibbles(blk[r].add(2))
            } else {
                _mm256_loadu_si256(blk[r].add(2) as *const __m256i)
            }
        });
        // The rows' scales `dw` in lanes r and r + 4 (and Q4_1's mins),
        // gathered in registers (a vector load of scalars just stored
        // would stall on store forwarding).
        let head = |r: usize| std::ptr::read_unaligned(blk[r] as *const i32);
        let (dw, mw) = if T == T_Q4_1 {
            // f16 pairs (d, m) per row → [d0 m0 d1 m1 d2 m2 d3 m3].
            let h = _mm_insert_epi32::<3>(
                _mm_insert_epi32::<2>(
                    _mm_insert_epi32::<1>(_mm_cvtsi32_si128(head(0)), head(1)),
                    head(2),
                ),
                head(3),
            );
            let dm = _mm256_cvtph_ps(h);
            let d = _mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
            let m = _mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7));
            (d, _mm256_castps256_ps128(m))
        } else {
            // One f16 per row → lanes 0..4 of the low half.
            let h = _mm_insert_epi32::<3>(
                _mm_insert_epi32::<2>(
                    _mm_insert_epi32::<1>(_mm_cvtsi32_si128(head(0)), head(1)),
                    head(2),
                ),
                head(3),
            );
            let d = _mm_cvtph_ps(_mm_shuffle_epi8(
                h,
                _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1),
            ));
            (_mm256_set_m128(d, d), _mm_setzero_ps())
        };
        for k in 0..K {
            let a = _mm256_loadu_si256(acts[k].qs.as_ptr().add(32 * b) as *const __m256i);
            let init = if T == T_Q4_0 {
                neg_shl::<3>(I::sum4(a))
            } else if T == T_Q8_0 && !I::Q8_SELF_CENTERED {
                neg_shl::<7>(I::sum4(a))
            } else {
                _mm256_setzero_si256()
            };
            let dot = |w| {
                if T == T_Q8_0 {
                    I::dot_q8_signed(init, w, a)
                } else {
                    I::dot_u8(init, w, a)
                }
            };
            let p = lane_sums(dot(wv[0]), dot(wv[1]), dot(wv[2]), dot(wv[3]));
            // dw·da per lane: the same single rounding as the scalar product.
            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(*acts[k].d.get_unchecked(b)));
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc[k]);
            if T == T_Q4_1 {
                off[k] = _mm_fmadd_ps(mw, _mm_set1_ps(*acts[k].s.get_unchecked(b)), off[k]);
            }
        }
    }
    let mut res = [[0.0f32; 4]; K];
    for k in 0..K {
        let halves = _mm_add_ps(
            _mm256_castps256_ps128(acc[k]),
            _mm256_extractf128_ps::<1>(acc[k]),
        );
        _mm_storeu_ps(res[k].as_mut_ptr(), _mm_add_ps(halves, off[k]));
    }
    res
}

/// Lane sums of four vectors, two partial sums each: `[s0 s1 s2 s3 | s0 s1
/// s2 s3]` where `s_i` of the low half sums lanes 0..4 of `p_i` and of the
/// high half lanes 4..8. Unpacks and adds (one µop each), cheaper than
/// `hadd` chains.
#[inline(always)]
unsafe fn lane_sums(p0: __m256i, p1: __m256i, p2: __m256i, p3: __m256i) -> __m256i {
    let s01 = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
    let s23 = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
    _mm256_add_epi32(
        _mm256_unpacklo_epi64(s01, s23),
        _mm256_unpackhi_epi64(s01, s23),
    )
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
