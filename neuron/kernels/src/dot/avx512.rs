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
    const GEMV_MULTI_ROWS: usize = 4;
}

isa_entry_points!(Avx512, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");
