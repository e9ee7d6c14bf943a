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
    const GEMV_MULTI_ROWS: usize = 2;
}

isa_entry_points!(Avx2, "avx2,fma,f16c");
