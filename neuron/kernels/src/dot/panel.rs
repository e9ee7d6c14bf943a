//! A weight panel: 16 consecutive weight rows unpacked and interleaved for
//! the GEMM micro-kernel. For scale group `gg` and 4-value step `k4` the
//! panel holds 16 rows x 4 unsigned bytes contiguously (64 bytes = two
//! 8-lane vectors, each lane one row), and per group the 16 rows' float
//! scales `a` and offsets `b` (see `blocks::unpack_block`). Rows past the
//! matrix are zero (scale 0), so they contribute nothing.

use super::{T_Q4_0, T_Q4_1, T_Q4K, T_Q5K, T_Q6K, T_Q8_0, qtype_of};
use crate::QuantType;
use crate::blocks::{f16_at, unpack_block};

/// Weight rows per panel.
pub(crate) const NR: usize = 16;

#[derive(Default)]
pub(crate) struct Panel {
    /// `[group][k4][row][4]` unsigned quants.
    pub q: Vec<u8>,
    /// `[group][row]` scales.
    pub a: Vec<f32>,
    /// `[group][row]` offsets.
    pub b: Vec<f32>,
}

impl Panel {
    /// Fills the panel with rows `row0..row0 + nrows` (`nrows <= NR`) of `w`.
    /// Plain code meant to be inlined into a SIMD entry point.
    #[inline(always)]
    pub(crate) fn build(
        &mut self,
        qtype: QuantType,
        w: &[u8],
        row_bytes: usize,
        cols: usize,
        row0: usize,
        nrows: usize,
    ) {
        match qtype {
            QuantType::Q4_0 => self.build_t::<T_Q4_0>(w, row_bytes, cols, row0, nrows),
            QuantType::Q4_1 => self.build_t::<T_Q4_1>(w, row_bytes, cols, row0, nrows),
            QuantType::Q8_0 => self.build_t::<T_Q8_0>(w, row_bytes, cols, row0, nrows),
            QuantType::Q4K => self.build_t::<T_Q4K>(w, row_bytes, cols, row0, nrows),
            QuantType::Q5K => self.build_t::<T_Q5K>(w, row_bytes, cols, row0, nrows),
            QuantType::Q6K => self.build_t::<T_Q6K>(w, row_bytes, cols, row0, nrows),
        }
    }

    #[inline(always)]
    fn build_t<const T: u8>(
        &mut self,
        w: &[u8],
        row_bytes: usize,
        cols: usize,
        row0: usize,
        nrows: usize,
    ) {
        let qtype = qtype_of(T);
        if !qtype.is_k() {
            self.build_32::<T>(w, row_bytes, cols, row0, nrows);
            return;
        }
        let g = qtype.group_elems();
        let be = qtype.block_elems();
        let bb = qtype.block_bytes();
        let gpb = be / g;
        let groups = cols / g;
        let nb = cols / be;
        if self.q.len() != groups * g * NR || self.a.len() != groups * NR {
            self.q = vec![0; groups * g * NR];
            self.a = vec![0.0; groups * NR];
            self.b = vec![0.0; groups * NR];
        } else if nrows < NR {
            self.a.fill(0.0);
            self.b.fill(0.0);
        }
        // Unpack the 16 rows of one block column, then interleave: for each
        // (group, k4) the 16 rows' 4-byte chunks form 64 contiguous bytes.
        let mut tq = [[0u8; 256]; NR];
        let mut ta = [[0.0f32; 16]; NR];
        let mut tb = [[0.0f32; 16]; NR];
        let nrows = nrows.min(NR);
        for blk in 0..nb {
            for r in 0..nrows {
                let off = (row0 + r) * row_bytes + blk * bb;
                unpack_block(qtype, &w[off..off + bb], &mut tq[r], &mut ta[r], &mut tb[r]);
            }
            for gl in 0..gpb {
                let gg = blk * gpb + gl;
                let (a, b) = (
                    &mut self.a[gg * NR..gg * NR + NR],
                    &mut self.b[gg * NR..gg * NR + NR],
                );
                for r in 0..nrows {
                    a[r] = ta[r][gl];
                    b[r] = tb[r][gl];
                }
                let base = gg * (g / 4) * NR * 4;
                let dst = &mut self.q[base..base + g * NR];
                for (k4, chunk) in dst.chunks_exact_mut(NR * 4).enumerate() {
                    let src = gl * g + 4 * k4;
                    // Rows past `nrows` copy zeros (never unpacked); their scales are 0.
                    for (d, row) in chunk.chunks_exact_mut(4).zip(&tq) {
                        d.copy_from_slice(&row[src..src + 4]);
                    }
                }
            }
        }
    }

    /// Q4_0 / Q4_1 / Q8_0: one group per block, so each row's 4-byte chunks
    /// are computed straight from the block bytes (no unpack buffer).
    #[inline(always)]
    fn build_32<const T: u8>(
        &mut self,
        w: &[u8],
        row_bytes: usize,
        cols: usize,
        row0: usize,
        nrows: usize,
    ) {
        let qtype = qtype_of(T);
        let bb = qtype.block_bytes();
        let nb = cols / 32;
        if self.q.len() != nb * 32 * NR || self.a.len() != nb * NR {
            self.q = vec![0; nb * 32 * NR];
            self.a = vec![0.0; nb * NR];
            self.b = vec![0.0; nb * NR];
        }
        let nrows = nrows.min(NR);
        if nrows < NR {
            self.q.fill(0);
            self.a.fill(0.0);
            self.b.fill(0.0);
        }
        let u32_at = |s: &[u8], i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        for r in 0..nrows {
            let row = &w[(row0 + r) * row_bytes..(row0 + r + 1) * row_bytes];
            for (blk, src) in row.chunks_exact(bb).take(nb).enumerate() {
                let dst = &mut self.q[blk * 32 * NR..(blk + 1) * 32 * NR];
                let mut put = |k4: usize, v: u32| {
                    let o = (k4 * NR + r) * 4;
                    dst[o..o + 4].copy_from_slice(&v.to_le_bytes());
                };
                match T {
                    T_Q8_0 => {
                        self.a[blk * NR + r] = f16_at(src, 0);
                        for k4 in 0..8 {
                            put(k4, u32_at(src, 2 + 4 * k4) ^ 0x8080_8080);
                        }
                    }
                    _ => {
                        let qs = if T == T_Q4_1 { 4 } else { 2 };
                        self.a[blk * NR + r] = f16_at(src, 0);
                        if T == T_Q4_1 {
                            self.b[blk * NR + r] = f16_at(src, 2);
                        }
                        for k4 in 0..4 {
                            let v = u32_at(src, qs + 4 * k4);
                            put(k4, v & 0x0F0F_0F0F);
                            put(k4 + 4, (v >> 4) & 0x0F0F_0F0F);
                        }
                    }
                }
            }
        }
    }
}
