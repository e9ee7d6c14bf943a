//! Generic SIMD GEMM micro-kernel: a tile of MR activation rows against one
//! 16-row weight panel. Each 4-byte activation chunk is broadcast and dotted
//! with 16 rows at once (two 8-lane vectors), so every weight byte loaded is
//! reused MR times and every activation byte 16 times; integer sums are
//! scaled to f32 once per scale group.
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
use super::panel::{NR, Panel};
use super::{T_Q4_0, T_Q4_1, T_Q4K, T_Q5K, T_Q6K, T_Q8_0, qtype_of};
use crate::QuantType;
use crate::quantize_act::QAct;
use std::arch::x86_64::*;

/// `out[i * NR + r] = dot(panel row r, activation row i)` for `i < m`.
///
/// # Safety
/// CPU features of `I`; `panel` built for `qtype` and `cols`; `qa` holds `m`
/// rows of `cols` quantized for `qtype`; `out.len() >= m * NR`.
#[inline(always)]
pub(crate) unsafe fn gemm<I: Isa>(
    qtype: QuantType,
    panel: &Panel,
    qa: &QAct,
    m: usize,
    cols: usize,
    out: &mut [f32],
) {
    match qtype {
        QuantType::Q4_0 => drive::<I, T_Q4_0>(panel, qa, m, cols, out),
        QuantType::Q4_1 => drive::<I, T_Q4_1>(panel, qa, m, cols, out),
        QuantType::Q8_0 => drive::<I, T_Q8_0>(panel, qa, m, cols, out),
        QuantType::Q4K => drive::<I, T_Q4K>(panel, qa, m, cols, out),
        QuantType::Q5K => drive::<I, T_Q5K>(panel, qa, m, cols, out),
        QuantType::Q6K => drive::<I, T_Q6K>(panel, qa, m, cols, out),
    }
}

#[inline(always)]
unsafe fn drive<I: Isa, const T: u8>(
    panel: &Panel,
    qa: &QAct,
    m: usize,
    cols: usize,
    out: &mut [f32],
) {
    let groups = cols / qtype_of(T).group_elems();
    debug_assert!(
        qa.qs.len() >= m * cols
            && qa.d.len() >= m * groups
            && out.len() >= m * NR
            && panel.a.len() == groups * NR
    );
    let mut i = 0;
    if I::GEMM_MR == 4 {
        while i + 4 <= m {
            tile::<I, T, 4>(panel, qa, i, cols, groups, &mut out[i * NR..(i + 4) * NR]);
            i += 4;
        }
    }
    while i + 2 <= m {
        tile::<I, T, 2>(panel, qa, i, cols, groups, &mut out[i * NR..(i + 2) * NR]);
        i += 2;
    }
    while i < m {
        tile::<I, T, 1>(panel, qa, i, cols, groups, &mut out[i * NR..(i + 1) * NR]);
        i += 1;
    }
}

#[inline(always)]
unsafe fn tile<I: Isa, const T: u8, const MR: usize>(
    panel: &Panel,
    qa: &QAct,
    i0: usize,
    cols: usize,
    groups: usize,
    out: &mut [f32],
) {
    let g = qtype_of(T).group_elems();
    let g4 = g / 4;
    let zero_shift = qtype_of(T)
        .zero_shift()
        .filter(|_| !(T == T_Q8_0 && I::Q8_SELF_CENTERED));
    let has_off = qtype_of(T).has_offset();
    let mut facc = [[_mm256_setzero_ps(); 2]; MR];
    let qp = panel.q.as_ptr();
    let ap = panel.a.as_ptr();
    let bp = panel.b.as_ptr();
    for gg in 0..groups {
        let mut iacc = [[_mm256_setzero_si256(); 2]; MR];
        if let Some(zs) = zero_shift {
            for (i, acc) in iacc.iter_mut().enumerate() {
                let s = -(*qa.isum.get_unchecked((i0 + i) * groups + gg) << zs);
                let v = _mm256_set1_epi32(s);
                *acc = [v, v];
            }
        }
        let wp = qp.add(gg * g4 * NR * 4);
        for k4 in 0..g4 {
            let w0 = _mm256_loadu_si256(wp.add(k4 * NR * 4) as *const __m256i);
            let w1 = _mm256_loadu_si256(wp.add(k4 * NR * 4 + 32) as *const __m256i);
            for (i, acc) in iacc.iter_mut().enumerate() {
                let ap4 = qa.qs.as_ptr().add((i0 + i) * cols + gg * g + 4 * k4);
                let av = _mm256_set1_epi32(std::ptr::read_unaligned(ap4 as *const i32));
                if T == T_Q8_0 {
                    acc[0] = I::dot_q8_offset(acc[0], w0, av);
                    acc[1] = I::dot_q8_offset(acc[1], w1, av);
                } else {
                    acc[0] = I::dot_u8(acc[0], w0, av);
                    acc[1] = I::dot_u8(acc[1], w1, av);
                }
            }
        }
        let a0 = _mm256_loadu_ps(ap.add(gg * NR));
        let a1 = _mm256_loadu_ps(ap.add(gg * NR + 8));
        for i in 0..MR {
            let sd = _mm256_set1_ps(*qa.d.get_unchecked((i0 + i) * groups + gg));
            facc[i][0] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(iacc[i][0]),
                _mm256_mul_ps(a0, sd),
                facc[i][0],
            );
            facc[i][1] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(iacc[i][1]),
                _mm256_mul_ps(a1, sd),
                facc[i][1],
            );
        }
        if has_off {
            let b0 = _mm256_loadu_ps(bp.add(gg * NR));
            let b1 = _mm256_loadu_ps(bp.add(gg * NR + 8));
            for (i, f) in facc.iter_mut().enumerate() {
                let ss = _mm256_set1_ps(*qa.s.get_unchecked((i0 + i) * groups + gg));
                f[0] = _mm256_fmadd_ps(b0, ss, f[0]);
                f[1] = _mm256_fmadd_ps(b1, ss, f[1]);
            }
        }
    }
    for (i, f) in facc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(i * NR), f[0]);
        _mm256_storeu_ps(out.as_mut_ptr().add(i * NR + 8), f[1]);
    }
}
