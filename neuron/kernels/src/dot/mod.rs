//! Dot-product kernels. `scalar` is the portable reference; `avx2` and
//! `avx512` instantiate the generic SIMD kernels in `gemv` (one activation
//! row against weight rows, straight from ggml blocks) and `gemm` (a tile of
//! activation rows against a 16-row weight `panel`) with their integer
//! dot-product primitive, behind `#[target_feature]` entry points.

pub(crate) mod scalar;

/// The `#[target_feature]` entry points of one instruction set: `gemv`,
/// `gemm` and `Panel::build`, each the generic kernel compiled with
/// `$features` for the [`isa::Isa`] type `$isa`. Invoked once per ISA module.
///
/// The generated `gemv` and `gemm` are `unsafe`: callers guarantee the CPU
/// has `$features` (run-time dispatch on `simd::detected`) and the contracts
/// of `gemv::gemv` / `gemm::gemm`.
#[cfg(target_arch = "x86_64")]
macro_rules! isa_entry_points {
    ($isa:ty, $features:literal) => {
        /// See `gemv::gemv`.
        ///
        /// # Safety
        /// The CPU has the module's features; the contract of `gemv::gemv`.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn gemv(
            qtype: crate::QuantType,
            w: &[u8],
            row_bytes: usize,
            cols: usize,
            rows: std::ops::Range<usize>,
            acts: &[super::ActRow<'_>],
            out: &mut [f32],
            out_stride: usize,
        ) {
            super::gemv::gemv::<$isa>(qtype, w, row_bytes, cols, rows, acts, out, out_stride)
        }

        /// See `gemm::gemm`.
        ///
        /// # Safety
        /// The CPU has the module's features; the contract of `gemm::gemm`.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn gemm(
            qtype: crate::QuantType,
            panel: &super::panel::Panel,
            qa: &crate::quantize_act::QAct,
            m: usize,
            cols: usize,
            out: &mut [f32],
        ) {
            super::gemm::gemm::<$isa>(qtype, panel, qa, m, cols, out)
        }

        /// `Panel::build` compiled with the module's features.
        #[target_feature(enable = $features)]
        pub(crate) fn build_panel(
            panel: &mut super::panel::Panel,
            qtype: crate::QuantType,
            w: &[u8],
            row_bytes: usize,
            cols: usize,
            row0: usize,
            nrows: usize,
        ) {
            panel.build(qtype, w, row_bytes, cols, row0, nrows)
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod gemm;
#[cfg(target_arch = "x86_64")]
pub(crate) mod gemv;
#[cfg(target_arch = "x86_64")]
pub(crate) mod isa;

pub(crate) mod panel;

use crate::QuantType;
use crate::quantize_act::QAct;

/// Const-generic tags for the quant types (kernels are monomorphised per type).
pub(crate) const T_Q4_0: u8 = 0;
pub(crate) const T_Q4_1: u8 = 1;
pub(crate) const T_Q8_0: u8 = 2;
pub(crate) const T_Q4K: u8 = 3;
pub(crate) const T_Q5K: u8 = 4;
pub(crate) const T_Q6K: u8 = 5;

/// The `QuantType` of a const tag.
#[inline(always)]
pub(crate) const fn qtype_of(t: u8) -> QuantType {
    match t {
        T_Q4_0 => QuantType::Q4_0,
        T_Q4_1 => QuantType::Q4_1,
        T_Q8_0 => QuantType::Q8_0,
        T_Q4K => QuantType::Q4K,
        T_Q5K => QuantType::Q5K,
        _ => QuantType::Q6K,
    }
}

/// One quantized activation row.
#[derive(Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub isum: &'a [i32],
}

impl QAct {
    /// Row `i` of `cols` values.
    pub(crate) fn row(&self, i: usize, cols: usize) -> ActRow<'_> {
        let g = self.groups;
        ActRow {
            qs: &self.qs[i * cols..(i + 1) * cols],
            d: &self.d[i * g..(i + 1) * g],
            s: &self.s[i * g..(i + 1) * g],
            isum: &self.isum[i * g..(i + 1) * g],
        }
    }
}
