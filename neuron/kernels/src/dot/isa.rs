//! The integer dot-product primitive the generic SIMD kernels are written
//! against, plus small AVX2 helpers shared by both instruction sets.
//!
//! SAFETY (module-wide): the functions here are `unsafe fn`s whose bodies
//! are SIMD intrinsics and the unaligned vector loads/stores feeding them,
//! so `unsafe_op_in_unsafe_fn` is allowed rather than wrapping every
//! intrinsic. Their contracts (`# Safety` sections) are: the CPU has the
//! features (guaranteed by run-time dispatch on `simd::detected`) and the
//! buffers have the sizes `matmul::run` validated (checked again by
//! `debug_assert!`s in debug builds).
#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// An instruction set's 8-lane 4-byte dot product.
///
/// # Safety
/// Implementations use CPU features; they may only be called from functions
/// compiled with those features, on a CPU that has them.
pub(crate) trait Isa {
    /// `acc[l] + sum_{j<4} w[4l+j] * a[4l+j]` with `w` unsigned bytes of at
    /// most 63 (any value for VNNI) and `a` signed bytes in -127..=127.
    unsafe fn dot_u8(acc: __m256i, w: __m256i, a: __m256i) -> __m256i;
    /// Same with `w` = a Q8_0 weight + 128 (any u8). Returns the dot with the
    /// *centered* weight if `Q8_SELF_CENTERED`, else with `w` itself (then the
    /// caller's `acc` carries the `-128 * sum(a)` correction).
    unsafe fn dot_q8_offset(acc: __m256i, w: __m256i, a: __m256i) -> __m256i;
    /// Same as `dot_q8_offset` but with the raw signed Q8_0 weight bytes.
    unsafe fn dot_q8_signed(acc: __m256i, w: __m256i, a: __m256i) -> __m256i;
    const Q8_SELF_CENTERED: bool;
    /// Activation rows per GEMM micro-tile.
    const GEMM_MR: usize;
    /// Weight rows a K-quant GEMV step takes when it serves 2–4 activation
    /// rows: as many as the vector registers hold accumulators for.
    const GEMV_MULTI_ROWS: usize;

    /// Per-lane sums of 4 activation bytes.
    #[inline(always)]
    unsafe fn sum4(a: __m256i) -> __m256i {
        Self::dot_u8(_mm256_setzero_si256(), _mm256_set1_epi8(1), a)
    }
}

/// 16 bytes of nibbles → 32 bytes: low nibbles then high nibbles.
#[inline(always)]
pub(crate) unsafe fn nibbles(p: *const u8) -> __m256i {
    let x = _mm_loadu_si128(p as *const __m128i);
    let m = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(x, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), m);
    _mm256_set_m128i(hi, lo)
}

/// Horizontal sum of 8 floats.
#[inline(always)]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `-(x << S)` per lane.
#[inline(always)]
pub(crate) unsafe fn neg_shl<const S: i32>(x: __m256i) -> __m256i {
    _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<S>(x))
}
