//! Single-token steps (decode) on the CPU, fused: each sequence's new key
//! and value written straight into its KV cache's storage (the key rotated
//! on the way), then every sequence's query rotated and attended in one
//! parallel pass, all from the rows of the fused q/k/v projection. Two
//! in-place ops per sequence and one pass per layer instead of a dozen ops
//! per sequence, which is most of what a batched decode step costs beyond
//! its matmuls.
//!
//! The arithmetic is exactly that of the generic path (candle's rope ops,
//! [`super::attention_cpu::CausalAttention`]), so either path gives the same
//! bits for a row.

use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use super::attention_cpu::{PARALLEL_WORK, one_row, rows as rows_of, with_scores};
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

/// One sequence's single token in a group: where its row is in the q/k/v
/// projection, and its layer's caches (the new key and value already
/// written at `at.pos` by [`AppendKv`]).
pub struct DecodeRow {
    pub at: QkvRow,
    pub keys: Tensor,
    pub values: Tensor,
}

/// Attention of several sequences' single tokens at once: each row's query
/// rotated and attended over its own cache's first `pos + 1` rows, every
/// (sequence, head) pair shared out over the threads together — one
/// dispatch per layer, however many sequences decode. Returns
/// `(rows.len(), heads · head_dim)`, in `rows` order. Each pair is computed
/// exactly as [`super::attention_cpu::CausalAttention`] computes it.
pub fn attend_rows(qkv: &Tensor, rows: &[DecodeRow], rope: &Rope, scale: f32) -> Result<Tensor> {
    let Some(first) = rows.first() else {
        candle_core::bail!("decode attention: no rows");
    };
    let (h, kvh, hd) = (first.at.heads, first.at.kv_heads, first.at.head_dim);
    if kvh == 0 || h % kvh != 0 || hd == 0 {
        candle_core::bail!("decode attention: {h} heads over {kvh} kv heads of {hd}");
    }
    let group = h / kvh;
    // Read access to every storage for the whole computation.
    let (qs, ql) = qkv.storage_and_layout();
    let Storage::Cpu(qs) = &*qs else {
        candle_core::bail!("decode attention runs on the CPU");
    };
    let mut guards = Vec::with_capacity(rows.len());
    for r in rows {
        if (r.at.heads, r.at.kv_heads, r.at.head_dim) != (h, kvh, hd) {
            candle_core::bail!("decode attention: rows of different shapes");
        }
        guards.push((r.keys.storage_and_layout(), r.values.storage_and_layout()));
    }
    let mut caches = Vec::with_capacity(rows.len());
    let mut queries = Vec::with_capacity(rows.len() * h * hd);
    for (r, ((ks, kl), (vs, vl))) in rows.iter().zip(&guards) {
        let (Storage::Cpu(ks), Storage::Cpu(vs)) = (&**ks, &**vs) else {
            candle_core::bail!("decode attention runs on the CPU");
        };
        let (k, k_heads, capacity) = rows_of(ks, kl, "k")?;
        let (v, _, _) = rows_of(vs, vl, "v")?;
        if kl.shape() != vl.shape() || k_heads != kvh || r.at.pos >= capacity {
            candle_core::bail!(
                "decode attention: caches {:?} / {:?} at {}",
                kl.shape(),
                vl.shape(),
                r.at.pos
            );
        }
        caches.push((k, v, r.at.pos + 1));
        let start = queries.len();
        queries.extend_from_slice(&r.at.values(qs, ql)?[..h * hd]);
        for head in queries[start..].chunks_mut(hd) {
            rope.rotate(head, r.at.pos)?;
        }
    }
    let mut out = vec![0f32; rows.len() * h * hd];
    let run = |(item, o): (usize, &mut [f32])| {
        let (seq, head) = (item / h, item % h);
        let (k, v, visible) = caches[seq];
        with_scores(|scores| {
            one_row(
                &queries[item * hd..(item + 1) * hd],
                k,
                v,
                head / group,
                visible,
                hd,
                scale,
                scores,
                o,
            )
        })
    };
    let work: usize = caches.iter().map(|c| c.2 * h).sum();
    if work < PARALLEL_WORK {
        out.chunks_mut(hd).enumerate().for_each(run);
    } else {
        out.par_chunks_mut(hd).enumerate().for_each(run);
    }
    drop(guards);
    Tensor::from_vec(out, (rows.len(), h * hd), qkv.device())
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
        let row = DecodeRow {
            at,
            keys: k.clone(),
            values: v.clone(),
        };
        attend_rows(qkv, &[row], rope, (1.0 / (HD as f64).sqrt()) as f32).unwrap()
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
    fn sequences_attended_together_get_what_each_gets_alone() {
        let rope = Rope::new(
            HD,
            10_000.0,
            600,
            RopeStyle::Interleaved,
            &RopeScaling::None,
            None,
            &Device::Cpu,
        )
        .unwrap();
        let qkv = Tensor::randn(0f32, 1.0, (3, (H + 2 * KVH) * HD), &Device::Cpu).unwrap();
        let priors = [0, 9, 500];
        let mut alone = Vec::new();
        let mut together = Vec::new();
        for (row, prior) in priors.into_iter().enumerate() {
            let mut a = cache(prior);
            let mut b = a.copy_prefix(prior).unwrap();
            alone.push(generic(&qkv, row, &mut a, &rope));
            let at = QkvRow {
                row,
                heads: H,
                kv_heads: KVH,
                head_dim: HD,
                pos: prior,
            };
            let (k, v) = b.layer_full(0, prior + 1).unwrap();
            k.inplace_op2(
                &qkv,
                &AppendKv {
                    at,
                    rope: Some(&rope),
                },
            )
            .unwrap();
            v.inplace_op2(&qkv, &AppendKv { at, rope: None }).unwrap();
            together.push(DecodeRow {
                at,
                keys: k.clone(),
                values: v.clone(),
            });
        }
        let got = attend_rows(&qkv, &together, &rope, (1.0 / (HD as f64).sqrt()) as f32).unwrap();
        assert_eq!(got.dims(), &[3, H * HD]);
        for (i, want) in alone.iter().enumerate() {
            assert_eq!(bits(&got.get(i).unwrap()), bits(want), "sequence {i}");
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
