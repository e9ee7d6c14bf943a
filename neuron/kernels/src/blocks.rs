//! ggml block layouts: field offsets, f16 scale reads, and `unpack_block`,
//! which turns any block into one uniform form the kernels consume:
//! unsigned quants `q` plus, per scale group, a float scale `A` and offset `B`,
//! so that value = A * (q - z) + B with the type's zero point z (a power of two).

use crate::QuantType;

/// Reads a little-endian f16 at `off` as f32.
#[inline(always)]
pub(crate) fn f16_at(blk: &[u8], off: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([blk[off], blk[off + 1]]))
}

/// Exact IEEE half → single conversion in plain integer code (the `half`
/// crate checks the CPU on every call, too slow inside unpacking loops).
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1F);
    let man = u32::from(h & 0x3FF);
    if exp == 0 {
        // Zero or subnormal: man * 2^-24, exact in f32.
        let v = man as f32 * (1.0 / 16_777_216.0);
        f32::from_bits(sign | v.to_bits())
    } else if exp == 31 {
        f32::from_bits(sign | 0x7F80_0000 | (man << 13))
    } else {
        f32::from_bits(sign | ((exp + 112) << 23) | (man << 13))
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8)
/// of a Q4K/Q5K super-block.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Byte offsets inside a Q6K block.
pub(crate) mod q6k {
    pub const QL: usize = 0;
    pub const QH: usize = 128;
    pub const SCALES: usize = 192;
    pub const D: usize = 208;
}

/// Byte offsets inside a Q4K / Q5K block.
pub(crate) mod qk45 {
    pub const D: usize = 0;
    pub const DMIN: usize = 2;
    pub const SCALES: usize = 4;
    /// Q4K quants; Q5K has its high bits here and quants at `QS5`.
    pub const QS4: usize = 16;
    pub const QH5: usize = 16;
    pub const QS5: usize = 48;
}

/// Unpacks one block (`blk.len() == qtype.block_bytes()`) into unsigned quants
/// `q` (`block_elems` values) and per-group `a` (scale) and `b` (offset), one
/// entry per `group_elems` values. See the module doc for the value formula.
#[inline(always)]
pub(crate) fn unpack_block(
    qtype: QuantType,
    blk: &[u8],
    q: &mut [u8],
    a: &mut [f32],
    b: &mut [f32],
) {
    match qtype {
        QuantType::Q4_0 => {
            let d = f16_at(blk, 0);
            let qs = &blk[2..18];
            let (lo, hi) = q[..32].split_at_mut(16);
            for j in 0..16 {
                lo[j] = qs[j] & 0x0F;
                hi[j] = qs[j] >> 4;
            }
            a[0] = d;
            b[0] = 0.0;
        }
        QuantType::Q4_1 => {
            let d = f16_at(blk, 0);
            let m = f16_at(blk, 2);
            let qs = &blk[4..20];
            let (lo, hi) = q[..32].split_at_mut(16);
            for j in 0..16 {
                lo[j] = qs[j] & 0x0F;
                hi[j] = qs[j] >> 4;
            }
            a[0] = d;
            b[0] = m;
        }
        QuantType::Q8_0 => {
            let d = f16_at(blk, 0);
            let qs = &blk[2..34];
            for j in 0..32 {
                q[j] = qs[j] ^ 0x80;
            }
            a[0] = d;
            b[0] = 0.0;
        }
        QuantType::Q4K | QuantType::Q5K => {
            let d = f16_at(blk, qk45::D);
            let dmin = f16_at(blk, qk45::DMIN);
            let scales = &blk[qk45::SCALES..qk45::SCALES + 12];
            for j in 0..8 {
                let (sc, mn) = scale_min_k4(j, scales);
                let (sa, sb) = (d * f32::from(sc), -dmin * f32::from(mn));
                a[2 * j] = sa;
                a[2 * j + 1] = sa;
                b[2 * j] = sb;
                b[2 * j + 1] = sb;
            }
            if qtype == QuantType::Q4K {
                let qs = &blk[qk45::QS4..qk45::QS4 + 128];
                for c in 0..4 {
                    let src = &qs[c * 32..c * 32 + 32];
                    let dst = &mut q[c * 64..c * 64 + 64];
                    let (lo, hi) = dst.split_at_mut(32);
                    for l in 0..32 {
                        lo[l] = src[l] & 0x0F;
                        hi[l] = src[l] >> 4;
                    }
                }
            } else {
                let qh = &blk[qk45::QH5..qk45::QH5 + 32];
                let qs = &blk[qk45::QS5..qk45::QS5 + 128];
                for c in 0..4 {
                    let src = &qs[c * 32..c * 32 + 32];
                    let dst = &mut q[c * 64..c * 64 + 64];
                    let (lo, hi) = dst.split_at_mut(32);
                    for l in 0..32 {
                        lo[l] = (src[l] & 0x0F) | (((qh[l] >> (2 * c)) & 1) << 4);
                        hi[l] = (src[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
                    }
                }
            }
        }
        QuantType::Q6K => {
            let d = f16_at(blk, q6k::D);
            for g in 0..16 {
                a[g] = d * f32::from(blk[q6k::SCALES + g] as i8);
                b[g] = 0.0;
            }
            for half in 0..2 {
                let ql = &blk[q6k::QL + 64 * half..q6k::QL + 64 * half + 64];
                let qh = &blk[q6k::QH + 32 * half..q6k::QH + 32 * half + 32];
                let dst = &mut q[128 * half..128 * half + 128];
                for l in 0..32 {
                    dst[l] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
                    dst[l + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
                    dst[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    dst[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn f16_conversion_matches_half_for_every_value() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            let got = super::f16_to_f32(bits);
            assert!(
                want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                "{bits:#06x}"
            );
        }
    }
}
