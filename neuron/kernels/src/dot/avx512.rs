//! AVX-512 VNNI instantiation of the generic kernels: 4-byte dot products
//! with one `vpdpbusd` on 256-bit vectors (AVX512VL; on Zen 4 a 512-bit
//! `vpdpbusd` is double-pumped, so 256 bits give the same throughput, and
//! VL gives 32 registers for a 4-row GEMM tile). Q8_0 weights go in their
//! +128 offset form, corrected through the activation sums.
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

pub(crate) struct Avx512;

impl Isa for Avx512 {
    #[inline(always)]
    unsafe fn dot_u8(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, w, a)
    }
    #[inline(always)]
    unsafe fn dot_q8_offset(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, w, a)
    }
    #[inline(always)]
    unsafe fn dot_q8_signed(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, _mm256_xor_si256(w, _mm256_set1_epi8(-128)), a)
    }
    const Q8_SELF_CENTERED: bool = false;
    const GEMM_MR: usize = 4;
}

/// See `gemv::gemv`.
///
/// # Safety
/// The CPU supports AVX2, FMA, F16C, AVX512F/BW/VL/VNNI; the contract of
/// `gemv::gemv` holds.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
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
    gemv_generic::gemv::<Avx512>(qtype, w, row_bytes, cols, rows, acts, out, out_stride)
}

/// See `gemm::gemm`.
///
/// # Safety
/// As for `gemv`, with the contract of `gemm::gemm`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn gemm(
    qtype: QuantType,
    panel: &Panel,
    qa: &QAct,
    m: usize,
    cols: usize,
    out: &mut [f32],
) {
    gemm_generic::gemm::<Avx512>(qtype, panel, qa, m, cols, out)
}

/// `Panel::build` compiled for AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
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
