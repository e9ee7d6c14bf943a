//! Portable scalar kernels: the same integer math as the SIMD kernels
//! (unsigned weight quants x signed activation quants per scale group, zero
//! points and mins applied through the activation group sums), used as the
//! fallback and as the reference the SIMD levels are tested against.

use super::ActRow;
use crate::QuantType;
use crate::blocks::unpack_block;

/// Dot products of weight rows `rows` with `act`, into `out[r - rows.start]`.
pub(crate) fn gemv(
    qtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    rows: std::ops::Range<usize>,
    act: ActRow<'_>,
    out: &mut [f32],
) {
    let g = qtype.group_elems();
    let be = qtype.block_elems();
    let bb = qtype.block_bytes();
    let gpb = be / g;
    let nb = cols / be;
    let zs = qtype.zero_shift();
    let mut tq = [0u8; 256];
    let mut ta = [0.0f32; 16];
    let mut tb = [0.0f32; 16];
    for (o, r) in out.iter_mut().zip(rows) {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        let mut acc = 0.0f32;
        for blk in 0..nb {
            unpack_block(
                qtype,
                &row[blk * bb..(blk + 1) * bb],
                &mut tq,
                &mut ta,
                &mut tb,
            );
            for gl in 0..gpb {
                let gg = blk * gpb + gl;
                let wq = &tq[gl * g..(gl + 1) * g];
                let aq = &act.qs[gg * g..(gg + 1) * g];
                let mut isum: i32 = wq
                    .iter()
                    .zip(aq)
                    .map(|(&w, &a)| i32::from(w) * i32::from(a))
                    .sum();
                if let Some(zs) = zs {
                    isum -= act.isum[gg] << zs;
                }
                acc += ta[gl] * act.d[gg] * isum as f32 + tb[gl] * act.s[gg];
            }
        }
        *o = acc;
    }
}
