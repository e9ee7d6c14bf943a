//! Causal self-attention with grouped-query heads: q/k/v projections
//! (fused into one matmul when the weights allow), optional per-head q/k
//! RMSNorm (qwen3), rope at each sequence's own position, the sequence's
//! KV cache, and the output projection.
//!
//! Rows of several sequences arrive stacked; projections run once over all
//! of them, attention runs per sequence against its own cache. Query heads
//! sharing a kv head are laid side by side so keys and values are never
//! repeated in memory.

use candle_core::{D, Result, Tensor};

use super::attention_decode::{AppendKv, DecodeRow, QkvRow, attend_rows};
use super::kv_cache::KvCache;
use super::linear::Linear;
use super::norm::RmsNorm;
use super::rope::Rope;

#[derive(Clone)]
enum Qkv {
    Fused(Linear),
    Separate(Linear, Linear, Linear),
}

#[derive(Clone)]
pub struct Attention {
    qkv: Qkv,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

/// One sequence's rows inside a stacked batch.
pub struct SeqRows<'a> {
    pub start_row: usize,
    pub len: usize,
    pub cache: &'a mut KvCache,
}

impl Attention {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        q: Linear,
        k: Linear,
        v: Linear,
        o: Linear,
        q_norm: Option<RmsNorm>,
        k_norm: Option<RmsNorm>,
        num_heads: usize,
        num_kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        let qkv = match Linear::fuse(&[&q, &k, &v])? {
            Some(fused) => Qkv::Fused(fused),
            None => Qkv::Separate(q, k, v),
        };
        Ok(Attention {
            qkv,
            o,
            q_norm,
            k_norm,
            num_heads,
            num_kv_heads,
            head_dim,
        })
    }

    pub fn bytes(&self) -> u64 {
        let qkv = match &self.qkv {
            Qkv::Fused(l) => l.bytes(),
            Qkv::Separate(q, k, v) => q.bytes() + k.bytes() + v.bytes(),
        };
        qkv + self.o.bytes()
            + self.q_norm.as_ref().map(RmsNorm::bytes).unwrap_or(0)
            + self.k_norm.as_ref().map(RmsNorm::bytes).unwrap_or(0)
    }

    /// `x`: `(rows, hidden)` for every sequence in `seqs` (the first
    /// `decode_rows` rows single tokens); returns the attention output for
    /// the same rows.
    pub fn forward(
        &self,
        x: &Tensor,
        decode_rows: usize,
        layer: usize,
        seqs: &mut [SeqRows<'_>],
        rope: &Rope,
    ) -> Result<Tensor> {
        let q_dim = self.num_heads * self.head_dim;
        let kv_dim = self.num_kv_heads * self.head_dim;
        let (q, k, v, fused) = match &self.qkv {
            Qkv::Fused(l) => {
                let y = l.forward_split(x, decode_rows)?;
                (
                    y.narrow(D::Minus1, 0, q_dim)?,
                    y.narrow(D::Minus1, q_dim, kv_dim)?,
                    y.narrow(D::Minus1, q_dim + kv_dim, kv_dim)?,
                    Some(y),
                )
            }
            Qkv::Separate(lq, lk, lv) => (
                lq.forward_split(x, decode_rows)?,
                lk.forward_split(x, decode_rows)?,
                lv.forward_split(x, decode_rows)?,
                None,
            ),
        };
        // Single tokens on the CPU take the fused path (same numbers, far
        // fewer ops); per-head q/k norms (qwen3) take the generic one.
        let fused = fused.filter(|y| {
            y.device().is_cpu()
                && rope.on_host()
                && self.q_norm.is_none()
                && self.k_norm.is_none()
                && y.is_contiguous()
        });
        let scale = (1.0 / (self.head_dim as f64).sqrt()) as f32;
        let mut outs = Vec::with_capacity(seqs.len());
        // Consecutive single tokens (the decode rows come first) are
        // attended together in one pass.
        let mut group: Vec<DecodeRow> = Vec::new();
        for s in seqs.iter_mut() {
            if let (Some(y), 1) = (&fused, s.len) {
                group.push(self.append_one(y, s.start_row, layer, s.cache, rope)?);
                continue;
            }
            if let Some(y) = &fused
                && !group.is_empty()
            {
                outs.push(attend_rows(y, &group, rope, scale)?);
                group.clear();
            }
            outs.push(self.attend(
                &q.narrow(0, s.start_row, s.len)?,
                &k.narrow(0, s.start_row, s.len)?,
                &v.narrow(0, s.start_row, s.len)?,
                layer,
                s.cache,
                rope,
            )?);
        }
        if let Some(y) = &fused
            && !group.is_empty()
        {
            outs.push(attend_rows(y, &group, rope, scale)?);
        }
        let y = if outs.len() == 1 {
            outs.pop().unwrap_or(q)
        } else {
            Tensor::cat(&outs, 0)?
        };
        self.o.forward_split(&y, decode_rows)
    }

    /// One token on the CPU: its key and value written into the cache in
    /// place, from row `row` of the fused projection; attention follows for
    /// the whole group of single tokens.
    fn append_one(
        &self,
        qkv: &Tensor,
        row: usize,
        layer: usize,
        cache: &mut KvCache,
        rope: &Rope,
    ) -> Result<DecodeRow> {
        let at = QkvRow {
            row,
            heads: self.num_heads,
            kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            pos: cache.len(),
        };
        let (keys, values) = cache.layer_full(layer, at.pos + 1)?;
        keys.inplace_op2(
            qkv,
            &AppendKv {
                at,
                rope: Some(rope),
            },
        )?;
        values.inplace_op2(qkv, &AppendKv { at, rope: None })?;
        Ok(DecodeRow {
            at,
            keys: keys.clone(),
            values: values.clone(),
        })
    }

    /// One sequence: `q` `(len, q_dim)`, `k`/`v` `(len, kv_dim)`.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        layer: usize,
        cache: &mut KvCache,
        rope: &Rope,
    ) -> Result<Tensor> {
        let len = q.dim(0)?;
        let start = cache.len();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = h / kvh;
        let mut q = q.contiguous()?.reshape((1, len, h, hd))?;
        let mut k = k.contiguous()?.reshape((1, len, kvh, hd))?;
        if let Some(n) = &self.q_norm {
            q = n.forward(&q)?;
        }
        if let Some(n) = &self.k_norm {
            k = n.forward(&k)?;
        }
        let q = rope.apply(&q.transpose(1, 2)?, start)?;
        let k = rope.apply(&k.transpose(1, 2)?, start)?;
        let v = v
            .contiguous()?
            .reshape((1, len, kvh, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let (keys, values) = cache.append(layer, &k, &v)?;
        let total = start + len;
        let scale = 1.0 / (hd as f64).sqrt();
        if q.device().is_cpu() {
            return q.apply_op3_no_bwd(
                &keys,
                &values,
                &super::attention_cpu::CausalAttention {
                    start,
                    scale: scale as f32,
                },
            );
        }

        // (1, heads, len, hd) → (1, kv_heads, group·len, hd): the query
        // heads of one kv head are adjacent, so this is a view.
        let q = (q * scale)?.reshape((1, kvh, group * len, hd))?;
        let scores = q.matmul(&keys.t()?)?;
        let scores = if len > 1 {
            let mask = causal_mask(len, start, q.device())?;
            scores
                .reshape((1, kvh, group, len, total))?
                .broadcast_add(&mask)?
                .reshape((1, kvh, group * len, total))?
        } else {
            scores
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(&values)?; // (1, kvh, group·len, hd)
        y.reshape((1, h, len, hd))?
            .transpose(1, 2)?
            .reshape((len, h * hd))
    }
}

/// `(len, start + len)`: 0 where row i may see column j (j ≤ start + i),
/// −∞ elsewhere. Built per call: nothing is cached, nothing grows.
fn causal_mask(len: usize, start: usize, device: &candle_core::Device) -> Result<Tensor> {
    let total = start + len;
    let mut m = vec![0f32; len * total];
    for i in 0..len {
        for v in &mut m[i * total + start + i + 1..(i + 1) * total] {
            *v = f32::NEG_INFINITY;
        }
    }
    Tensor::from_vec(m, (len, total), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_lets_each_row_see_its_past_only() {
        let m = causal_mask(2, 3, &candle_core::Device::Cpu).unwrap();
        let rows: Vec<Vec<f32>> = m.to_vec2().unwrap();
        assert_eq!(rows[0][..4], [0.0; 4]);
        assert_eq!(rows[0][4], f32::NEG_INFINITY);
        assert_eq!(rows[1], vec![0.0; 5]);
    }
}
