//! AVX2 (+FMA, F16C) instantiation of the generic kernels: 4-byte dot
//! products with `vpmaddubsw` + `vpmaddwd`; Q8_0 weights (signed) use the
//! sign trick (`|w| * sign(a, w)`), since their +128 offset form would
//! saturate `vpmaddubsw`.
//!
//! SAFETY (module-wide): the functions here are `unsafe fn`s whose bodies
//! are SIMD intrinsics and the unaligned vector loads/stores feeding them,
//! so `unsafe_op_in_unsafe_fn` is allowed rather than wrapping every
//! intrinsic. Their contracts (`# Safety` sections) are: the CPU has the
//! features (guaranteed by run-time dispatch on `simd::detected`) and the
//! buffers have the sizes `matmul::run` validated (checked again by
//! `debug_assert!`s in debug builds).
#![allow(unsafe_op_in_unsafe_fn)]

use super::isa::Isa;
use super::panel::Panel;
use super::{ActRow, gemm as gemm_generic, gemv as gemv_generic};
use crate::QuantType;
use crate::quantize_act::QAct;
use std::arch::x86_64::*;

pub(crate) struct Avx2;

impl Isa for Avx2 {
    #[inline(always)]
    unsafe fn dot_u8(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        let p = _mm256_maddubs_epi16(w, a);
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }
    #[inline(always)]
    unsafe fn dot_q8_offset(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        Self::dot_q8_signed(acc, _mm256_xor_si256(w, _mm256_set1_epi8(-128)), a)
    }
    #[inline(always)]
    unsafe fn dot_q8_signed(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }
    const Q8_SELF_CENTERED: bool = true;
    const GEMM_MR: usize = 2;
}

/// See `gemv::gemv`.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; the contract of `gemv::gemv` holds.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemv(
    qtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    rows: std::ops::Range<usize>,
    acts: &[ActRow<'_>],
    out: &mut [f32],
    out_stride: usize,
) {
    gemv_generic::gemv::<Avx2>(qtype, w, row_bytes, cols, rows, acts, out, out_stride)
}

/// See `gemm::gemm`.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; the contract of `gemm::gemm` holds.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm(
    qtype: QuantType,
    panel: &Panel,
    qa: &QAct,
    m: usize,
    cols: usize,
    out: &mut [f32],
) {
    gemm_generic::gemm::<Avx2>(qtype, panel, qa, m, cols, out)
}

/// `Panel::build` compiled for AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn build_panel(
    panel: &mut Panel,
    qtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    row0: usize,
    nrows: usize,
) {
    panel.build(qtype, w, row_bytes, cols, row0, nrows)
}
