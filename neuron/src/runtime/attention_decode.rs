//! One sequence's single-token step (decode) on the CPU, fused: its new key
//! and value written straight into the KV cache's storage (the key rotated
//! on the way), then the query rotated and attended, all from the rows of
//! the fused q/k/v projection. Three candle ops instead of a dozen per
//! sequence and layer, which is most of what a batched decode step costs
//! beyond its matmuls.
//!
//! The arithmetic is exactly that of the generic path (candle's rope ops,
//! [`super::attention_cpu::CausalAttention`]), so either path gives the same
//! bits for a row.

use candle_core::{CpuStorage, CustomOp3, InplaceOp2, Layout, Result, Shape};
use rayon::prelude::*;

use super::attention_cpu::{PARALLEL_WORK, one_row, rows, with_scores};
use super::rope::Rope;

/// Where one sequence's row sits in the q/k/v projection output
/// `(rows, q_dim + 2 · kv_dim)`, and the shape of its heads.
#[derive(Clone, Copy)]
pub struct QkvRow {
    pub row: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Position of the token (tokens already in the cache).
    pub pos: usize,
}

impl QkvRow {
    fn width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// The row's values, checked against the projection's layout.
    fn values<'a>(&self, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("decode attention: q/k/v must be f32");
        };
        let (rows, width) = l.shape().dims2()?;
        let Some((start, _)) = l.contiguous_offsets() else {
            candle_core::bail!("decode attention: q/k/v must be contiguous");
        };
        if width != self.width() || self.row >= rows {
            candle_core::bail!(
                "decode attention: row {} of {rows}, width {width} (want {})",
                self.row,
                self.width()
            );
        }
        let at = start + self.row * width;
        Ok(&data[at..at + width])
    }
}

/// In place on a layer's K (or V) cache `(1, kv_heads, capacity, head_dim)`:
/// writes the row's key (rotated) or value at `pos`.
pub struct AppendKv<'a> {
    pub at: QkvRow,
    /// The key (rotated with `rope`) or the value (`None`).
    pub rope: Option<&'a Rope>,
}

impl InplaceOp2 for AppendKv<'_> {
    fn name(&self) -> &'static str {
        "neuron-append-kv"
    }

    fn cpu_fwd(
        &self,
        cs: &mut CpuStorage,
        cl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<()> {
        let a = self.at;
        let row = a.values(ys, yl)?;
        let (hd, kvh) = (a.head_dim, a.kv_heads);
        let col = a.heads * hd + if self.rope.is_some() { 0 } else { kvh * hd };
        let src = &row[col..col + kvh * hd];
        let CpuStorage::F32(cache) = cs else {
            candle_core::bail!("kv cache must be f32");
        };
        let (_, heads, capacity, d) = cl.shape().dims4()?;
        let st = cl.stride();
        if heads != kvh || d != hd || a.pos >= capacity || st[3] != 1 {
            candle_core::bail!(
                "kv cache {:?} cannot take head {kvh}x{hd} at {}",
                cl.shape(),
                a.pos
            );
        }
        for h in 0..kvh {
            let at = cl.start_offset() + h * st[1] + a.pos * st[2];
            let dst = &mut cache[at..at + hd];
            dst.copy_from_slice(&src[h * hd..(h + 1) * hd]);
            if let Some(rope) = self.rope {
                rope.rotate(dst, a.pos)?;
            }
        }
        Ok(())
    }
}

/// The row's query, rotated, attended over the cache's first `pos + 1`
/// rows: `(q/k/v, K cache, V cache)` → `(1, heads · head_dim)`.
pub struct DecodeAttention<'a> {
    pub at: QkvRow,
    pub rope: &'a Rope,
    pub scale: f32,
}

impl CustomOp3 for DecodeAttention<'_> {
    fn name(&self) -> &'static str {
        "neuron-decode-attention"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = self.at;
        let (h, kvh, hd) = (a.heads, a.kv_heads, a.head_dim);
        let mut q = a.values(ys, yl)?[..h * hd].to_vec();
        for head in q.chunks_mut(hd.max(1)) {
            self.rope.rotate(head, a.pos)?;
        }
        let (k, k_heads, capacity) = rows(ks, kl, "k")?;
        let (v, _, _) = rows(vs, vl, "v")?;
        if kl.shape() != vl.shape() || k_heads != kvh || kvh == 0 || h % kvh != 0 {
            candle_core::bail!(
                "decode attention: {h} heads over caches {:?} / {:?}",
                kl.shape(),
                vl.shape()
            );
        }
        if a.pos >= capacity {
            candle_core::bail!("decode attention: position {} past the cache", a.pos);
        }
        let group = h / kvh;
        let mut out = vec![0f32; h * hd];
        if hd == 0 {
            return Ok((CpuStorage::F32(out), Shape::from((1, 0))));
        }
        let visible = a.pos + 1;
        let run = |(head, o): (usize, &mut [f32])| {
            with_scores(|scores| {
                one_row(
                    &q[head * hd..(head + 1) * hd],
                    k,
                    v,
                    head / group,
                    visible,
                    hd,
                    self.scale,
                    scores,
                    o,
                )
            })
        };
        if h * visible < PARALLEL_WORK {
            out.chunks_mut(hd).enumerate().for_each(run);
        } else {
            out.par_chunks_mut(hd).enumerate().for_each(run);
        }
        Ok((CpuStorage::F32(out), Shape::from((1, h * hd))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::{Device, Tensor};

    use super::*;
    use crate::runtime::attention_cpu::CausalAttention;
    use crate::runtime::kv_cache::{KvCache, KvLayout, KvMeter};
    use crate::runtime::rope::{RopeScaling, RopeStyle};

    const H: usize = 6;
    const KVH: usize = 2;
    const HD: usize = 16;

    fn cache(prior: usize) -> KvCache {
        let layout = Arc::new(KvLayout {
            layers: 1,
            kv_heads: KVH,
            head_dim: HD,
            max_tokens: 600,
            device: Device::Cpu,
        });
        let mut c = KvCache::new(layout, Arc::new(KvMeter::default()));
        if prior > 0 {
            let k = Tensor::randn(0f32, 1.0, (1, KVH, prior, HD), &Device::Cpu).unwrap();
            let v = Tensor::randn(0f32, 1.0, (1, KVH, prior, HD), &Device::Cpu).unwrap();
            c.append(0, &k, &v).unwrap();
            c.advance(prior);
        }
        c
    }

    /// The generic path's ops on row `row` of `qkv`.
    fn generic(qkv: &Tensor, row: usize, c: &mut KvCache, rope: &Rope) -> Tensor {
        let (qd, kd) = (H * HD, KVH * HD);
        let r = qkv.narrow(0, row, 1).unwrap();
        let heads = |t: Tensor, n: usize| {
            t.contiguous()
                .unwrap()
                .reshape((1, 1, n, HD))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
        };
        let start = c.len();
        let q = rope
            .apply(&heads(r.narrow(1, 0, qd).unwrap(), H), start)
            .unwrap();
        let k = rope
            .apply(&heads(r.narrow(1, qd, kd).unwrap(), KVH), start)
            .unwrap();
        let v = heads(r.narrow(1, qd + kd, kd).unwrap(), KVH)
            .contiguous()
            .unwrap();
        let (keys, values) = c.append(0, &k, &v).unwrap();
        let op = CausalAttention {
            start,
            scale: (1.0 / (HD as f64).sqrt()) as f32,
        };
        q.apply_op3_no_bwd(&keys, &values, &op).unwrap()
    }

    fn fused(qkv: &Tensor, row: usize, c: &mut KvCache, rope: &Rope) -> Tensor {
        let at = QkvRow {
            row,
            heads: H,
            kv_heads: KVH,
            head_dim: HD,
            pos: c.len(),
        };
        let (k, v) = c.layer_full(0, at.pos + 1).unwrap();
        k.inplace_op2(
            qkv,
            &AppendKv {
                at,
                rope: Some(rope),
            },
        )
        .unwrap();
        v.inplace_op2(qkv, &AppendKv { at, rope: None }).unwrap();
        let op = DecodeAttention {
            at,
            rope,
            scale: (1.0 / (HD as f64).sqrt()) as f32,
        };
        qkv.apply_op3_no_bwd(k, v, &op).unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn the_fused_step_gives_the_generic_paths_bits_and_cache() {
        for style in [RopeStyle::Interleaved, RopeStyle::Halves] {
            let rope = Rope::new(
                HD,
                10_000.0,
                600,
                style,
                &RopeScaling::None,
                None,
                &Device::Cpu,
            )
            .unwrap();
            // Short and long contexts: one thread and the parallel split.
            for prior in [0, 9, 500] {
                let qkv = Tensor::randn(0f32, 1.0, (3, (H + 2 * KVH) * HD), &Device::Cpu).unwrap();
                let mut a = cache(prior);
                let mut b = a.copy_prefix(prior).unwrap();
                let want = generic(&qkv, 1, &mut a, &rope);
                let got = fused(&qkv, 1, &mut b, &rope);
                assert_eq!(bits(&got), bits(&want), "{style:?} after {prior}");
                let (ka, va) = a.layer_full(0, prior + 1).unwrap();
                let (ka, va) = (ka.clone(), va.clone());
                let (kb, vb) = b.layer_full(0, prior + 1).unwrap();
                for (x, y) in [(&ka, kb), (&va, vb)] {
                    let x = x.narrow(2, 0, prior + 1).unwrap();
                    let y = y.narrow(2, 0, prior + 1).unwrap();
                    assert_eq!(bits(&x), bits(&y), "{style:?} cache after {prior}");
                }
            }
        }
    }

    #[test]
    fn a_row_outside_the_projection_is_an_error() {
        let rope = Rope::new(
            HD,
            10_000.0,
            8,
            RopeStyle::Halves,
            &RopeScaling::None,
            None,
            &Device::Cpu,
        )
        .unwrap();
        let qkv = Tensor::zeros(
            (1, (H + 2 * KVH) * HD),
            candle_core::DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let mut c = cache(0);
        let at = QkvRow {
            row: 1,
            heads: H,
            kv_heads: KVH,
            head_dim: HD,
            pos: 0,
        };
        let (k, _) = c.layer_full(0, 1).unwrap();
        let err = k
            .inplace_op2(
                &qkv,
                &AppendKv {
                    at,
                    rope: Some(&rope),
                },
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1 of 1"), "{err}");
    }
}
