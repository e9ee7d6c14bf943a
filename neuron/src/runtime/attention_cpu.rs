//! Causal grouped-query attention on the CPU as one candle op: scores,
//! softmax and the weighted sum of values, per (head, query row), straight
//! from the KV cache's storage.
//!
//! Each output row is computed the same way whatever else is in the pass
//! (a 512-token prefill chunk or a single decode token): same operations,
//! same order. So a sequence resumed from the prompt cache, or decoded in a
//! batch, gets bit-for-bit the numbers it gets alone. It also skips the
//! mask tensor and the reshapes of the generic path.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

/// `q`: `(1, heads, len, head_dim)` contiguous; `k`, `v`: `(1, kv_heads,
/// total, head_dim)` views of the cache; output `(len, heads * head_dim)`.
pub struct CausalAttention {
    /// Position of the first query row (tokens before it in the cache).
    pub start: usize,
    pub scale: f32,
}

/// Below this many score evaluations a pass stays on one thread.
pub(super) const PARALLEL_WORK: usize = 1 << 12;

thread_local! {
    /// One (row, head)'s attention scores, reused across passes.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's score buffer (a fresh one if it is in use).
pub(super) fn with_scores<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    SCORES.with(|cell| {
        let mut fresh = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let scores = match guard.as_mut() {
            Ok(g) => &mut **g,
            Err(_) => &mut fresh,
        };
        f(scores)
    })
}

/// Lanes of independent accumulators: wide enough to vectorize, fixed so
/// the summation order never depends on the machine's SIMD width.
const LANES: usize = 16;

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = a.len() / LANES;
    for c in 0..chunks {
        let (x, y) = (
            &a[c * LANES..(c + 1) * LANES],
            &b[c * LANES..(c + 1) * LANES],
        );
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for i in chunks * LANES..a.len() {
        tail += a[i] * b[i];
    }
    let mut s = tail;
    for v in acc {
        s += v;
    }
    s
}

#[inline(always)]
fn axpy(out: &mut [f32], w: f32, x: &[f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += w * v;
    }
}

/// Where one kv head's rows are in the cache storage.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    data: &'a [f32],
    offset: usize,
    head_stride: usize,
    row_stride: usize,
}

impl<'a> Rows<'a> {
    #[inline(always)]
    fn row(&self, head: usize, pos: usize, hd: usize) -> &'a [f32] {
        let at = self.offset + head * self.head_stride + pos * self.row_stride;
        &self.data[at..at + hd]
    }
}

pub(super) fn rows<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    name: &str,
) -> Result<(Rows<'a>, usize, usize)> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("attention: {name} must be f32");
    };
    let (_, heads, total, _) = l.shape().dims4()?;
    let st = l.stride();
    if st[3] != 1 {
        candle_core::bail!("attention: {name} rows must be contiguous");
    }
    Ok((
        Rows {
            data,
            offset: l.start_offset(),
            head_stride: st[1],
            row_stride: st[2],
        },
        heads,
        total,
    ))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn one_row(
    q: &[f32],
    k: Rows<'_>,
    v: Rows<'_>,
    kv_head: usize,
    visible: usize,
    hd: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for pos in 0..visible {
        let s = dot(q, k.row(kv_head, pos, hd)) * scale;
        max = max.max(s);
        scores.push(s);
    }
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (pos, &p) in scores.iter().enumerate() {
        axpy(out, p, v.row(kv_head, pos, hd));
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "neuron-causal-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(qdata) = qs else {
            candle_core::bail!("attention: q must be f32");
        };
        let (_, heads, len, hd) = ql.shape().dims4()?;
        let Some((q0, _)) = ql.contiguous_offsets() else {
            candle_core::bail!("attention: q must be contiguous");
        };
        let (k, kv_heads, total) = rows(ks, kl, "k")?;
        let (v, _, _) = rows(vs, vl, "v")?;
        if kl.shape() != vl.shape() || kl.dims()[3] != hd {
            candle_core::bail!(
                "attention: shapes q {:?}, k {:?}, v {:?} disagree",
                ql.shape(),
                kl.shape(),
                vl.shape()
            );
        }
        if kv_heads == 0 || heads % kv_heads != 0 || self.start + len != total {
            candle_core::bail!(
                "attention: {heads} heads over {kv_heads} kv heads, rows {}..{} of {total}",
                self.start,
                self.start + len
            );
        }
        let group = heads / kv_heads;
        let width = heads * hd;
        let mut out = vec![0f32; len * width];
        if hd == 0 {
            return Ok((CpuStorage::F32(out), Shape::from((len, width))));
        }
        let q = &qdata[q0..];
        let scale = self.scale;
        let start = self.start;
        // Work item: one (query row, head) pair; they are independent, so a
        // single decode row still spreads its heads over the threads.
        let run = |(item, out_head): (usize, &mut [f32])| {
            let (i, h) = (item / heads, item % heads);
            let qrow = &q[(h * len + i) * hd..(h * len + i + 1) * hd];
            with_scores(|scores| {
                one_row(
                    qrow,
                    k,
                    v,
                    h / group,
                    start + i + 1,
                    hd,
                    scale,
                    scores,
                    out_head,
                );
            });
        };
        // Score evaluations in the pass: below the threshold, threads cost
        // more than they save.
        // A prompt chunk has rows enough to share out one row (all heads)
        // at a time; a decode row shares out its heads.
        let work = len * heads * (start + len);
        if work < PARALLEL_WORK {
            out.chunks_mut(hd).enumerate().for_each(run);
        } else if len > 1 {
            out.par_chunks_mut(width).enumerate().for_each(|(i, row)| {
                for (h, head) in row.chunks_mut(hd).enumerate() {
                    run((i * heads + h, head));
                }
            });
        } else {
            out.par_chunks_mut(hd).enumerate().for_each(run);
        }
        Ok((CpuStorage::F32(out), Shape::from((len, width))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The generic candle path: repeat kv heads, masked softmax, matmul.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, start: usize, scale: f64) -> Tensor {
        let (_, h, len, hd) = q.dims4().unwrap();
        let kvh = k.dim(1).unwrap();
        let total = k.dim(2).unwrap();
        let rep = |t: &Tensor| {
            t.unsqueeze(2)
                .unwrap()
                .expand((1, kvh, h / kvh, total, hd))
                .unwrap()
                .reshape((1, h, total, hd))
                .unwrap()
        };
        let (k, v) = (rep(k), rep(v));
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        let mut mask = vec![0f32; len * total];
        for i in 0..len {
            for j in start + i + 1..total {
                mask[i * total + j] = f32::NEG_INFINITY;
            }
        }
        let mask = Tensor::from_vec(mask, (len, total), &Device::Cpu).unwrap();
        let p = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask).unwrap()).unwrap();
        p.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((len, h * hd))
            .unwrap()
    }

    fn rand(shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_the_generic_path_and_reads_cache_views() {
        let (h, kvh, hd, start, len) = (6, 2, 20, 5, 7);
        let total = start + len;
        // A cache with spare capacity, narrowed: a strided view.
        let kc = rand((1, kvh, 32, hd));
        let vc = rand((1, kvh, 32, hd));
        let k = kc.narrow(2, 0, total).unwrap();
        let v = vc.narrow(2, 0, total).unwrap();
        let q = rand((1, h, len, hd));
        let scale = 1.0 / (hd as f64).sqrt();
        let op = CausalAttention {
            start,
            scale: scale as f32,
        };
        let got = q.apply_op3_no_bwd(&k, &v, &op).unwrap();
        let want = reference(
            &q,
            &k.contiguous().unwrap(),
            &v.contiguous().unwrap(),
            start,
            scale,
        );
        let diff = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "max difference {diff}");
    }

    #[test]
    fn a_row_is_the_same_alone_or_in_a_chunk() {
        let (h, kvh, hd, total) = (4, 2, 64, 40);
        let k = rand((1, kvh, total, hd));
        let v = rand((1, kvh, total, hd));
        let q = rand((1, h, 8, hd));
        let chunk = q
            .apply_op3_no_bwd(
                &k,
                &v,
                &CausalAttention {
                    start: 32,
                    scale: 0.125,
                },
            )
            .unwrap();
        let last_q = q.narrow(2, 7, 1).unwrap().contiguous().unwrap();
        let alone = last_q
            .apply_op3_no_bwd(
                &k,
                &v,
                &CausalAttention {
                    start: 39,
                    scale: 0.125,
                },
            )
            .unwrap();
        let a: Vec<f32> = chunk.get(7).unwrap().to_vec1().unwrap();
        let b: Vec<f32> = alone.get(0).unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "bit for bit");
    }
}
