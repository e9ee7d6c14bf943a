//! One sequence's keys and values for every layer, preallocated and grown
//! in chunks (never a copy per token), its bytes counted on a shared meter
//! so the model's memory budget sees every live sequence.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Result, Tensor};

/// Rows are allocated in multiples of this many tokens.
const CHUNK: usize = 256;

/// Shape facts every cache of one model shares.
#[derive(Debug, Clone)]
pub struct KvLayout {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// No sequence grows past this (the model's context).
    pub max_tokens: usize,
    pub device: Device,
}

impl KvLayout {
    pub fn bytes_per_token(&self) -> u64 {
        (2 * self.layers * self.kv_heads * self.head_dim * DType::F32.size_in_bytes()) as u64
    }
}

/// Bytes held by all live caches of one model.
#[derive(Debug, Default)]
pub struct KvMeter(AtomicU64);

impl KvMeter {
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

pub struct KvCache {
    layout: Arc<KvLayout>,
    meter: Arc<KvMeter>,
    /// Per layer `(k, v)`, each `(1, kv_heads, capacity, head_dim)`.
    layers: Vec<(Tensor, Tensor)>,
    capacity: usize,
    len: usize,
}

impl KvCache {
    pub fn new(layout: Arc<KvLayout>, meter: Arc<KvMeter>) -> Self {
        KvCache {
            layout,
            meter,
            layers: Vec::new(),
            capacity: 0,
            len: 0,
        }
    }

    /// Tokens whose keys and values are held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> u64 {
        self.capacity as u64 * self.layout.bytes_per_token()
    }

    /// Makes room for `total` tokens, growing by at least half the current
    /// capacity so a long generation copies O(n) bytes in all.
    pub fn reserve(&mut self, total: usize) -> Result<()> {
        if total <= self.capacity {
            return Ok(());
        }
        if total > self.layout.max_tokens {
            candle_core::bail!(
                "{total} tokens do not fit the model's context of {}",
                self.layout.max_tokens
            );
        }
        let grown = (self.capacity + self.capacity / 2).max(total);
        let capacity = grown.div_ceil(CHUNK) * CHUNK;
        let capacity = capacity.min(self.layout.max_tokens).max(total);
        let l = &self.layout;
        let shape = (1, l.kv_heads, capacity, l.head_dim);
        let mut layers = Vec::with_capacity(l.layers);
        for i in 0..l.layers {
            let k = Tensor::zeros(shape, DType::F32, &l.device)?;
            let v = Tensor::zeros(shape, DType::F32, &l.device)?;
            if let Some((old_k, old_v)) = self.layers.get(i)
                && self.len > 0
            {
                k.slice_set(old_k, 2, 0)?;
                v.slice_set(old_v, 2, 0)?;
            }
            layers.push((k, v));
        }
        let old_bytes = self.bytes();
        self.layers = layers;
        self.capacity = capacity;
        self.meter.0.fetch_add(self.bytes(), Ordering::AcqRel);
        self.meter.0.fetch_sub(old_bytes, Ordering::AcqRel);
        Ok(())
    }

    /// Appends `seq` tokens' keys and values for `layer` (each
    /// `(1, kv_heads, seq, head_dim)`, contiguous) and returns views of the
    /// whole cache for that layer. The length advances once every layer has
    /// been written: call [`KvCache::advance`] after the last one.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let seq = k.dim(2)?;
        self.reserve(self.len + seq)?;
        let Some((ck, cv)) = self.layers.get(layer) else {
            candle_core::bail!("kv cache has no layer {layer}");
        };
        ck.slice_set(&k.contiguous()?, 2, self.len)?;
        cv.slice_set(&v.contiguous()?, 2, self.len)?;
        let total = self.len + seq;
        Ok((ck.narrow(2, 0, total)?, cv.narrow(2, 0, total)?))
    }

    /// `layer`'s whole K and V tensors, `(1, kv_heads, capacity, head_dim)`,
    /// with room for `total` tokens: for kernels that write new rows in
    /// place (the fused decode step). Rows past [`KvCache::len`] hold
    /// nothing yet.
    pub fn layer_full(&mut self, layer: usize, total: usize) -> Result<(&Tensor, &Tensor)> {
        self.reserve(total)?;
        match self.layers.get(layer) {
            Some((k, v)) => Ok((k, v)),
            None => candle_core::bail!("kv cache has no layer {layer}"),
        }
    }

    pub fn advance(&mut self, seq: usize) {
        self.len += seq;
    }

    /// Forgets every token from `len` on (the prefix stays valid).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A new cache holding a copy of the first `len` tokens.
    pub fn copy_prefix(&self, len: usize) -> Result<KvCache> {
        let len = len.min(self.len);
        let mut out = KvCache::new(self.layout.clone(), self.meter.clone());
        if len == 0 {
            return Ok(out);
        }
        out.reserve(len)?;
        for (i, (k, v)) in self.layers.iter().enumerate() {
            let (ok, ov) = &out.layers[i];
            ok.slice_set(&k.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
            ov.slice_set(&v.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
        }
        out.len = len;
        Ok(out)
    }
}

impl Drop for KvCache {
    fn drop(&mut self) {
        self.meter.0.fetch_sub(self.bytes(), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Arc<KvLayout> {
        Arc::new(KvLayout {
            layers: 2,
            kv_heads: 2,
            head_dim: 4,
            max_tokens: 1000,
            device: Device::Cpu,
        })
    }

    fn kv(seq: usize, value: f32) -> Tensor {
        Tensor::full(value, (1, 2, seq, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn grows_in_chunks_and_keeps_what_it_held() {
        let meter = Arc::new(KvMeter::default());
        let mut c = KvCache::new(layout(), meter.clone());
        for layer in 0..2 {
            c.append(layer, &kv(3, 1.0), &kv(3, 2.0)).unwrap();
        }
        c.advance(3);
        assert_eq!(c.capacity, 256);
        assert_eq!(meter.bytes(), 256 * layout().bytes_per_token());
        // Past the first chunk: the cache grows, the first tokens survive.
        let (k, v) = c.append(0, &kv(300, 5.0), &kv(300, 6.0)).unwrap();
        assert!(c.capacity >= 303);
        assert_eq!(k.dims(), &[1, 2, 303, 4]);
        let first: Vec<f32> = k
            .narrow(2, 0, 3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(first.iter().all(|x| *x == 1.0));
        let last: Vec<f32> = v
            .narrow(2, 3, 300)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(last.iter().all(|x| *x == 6.0));
        assert_eq!(meter.bytes(), c.bytes());
        drop(c);
        assert_eq!(meter.bytes(), 0, "dropping a cache releases its bytes");
    }

    #[test]
    fn refuses_to_grow_past_the_context() {
        let mut c = KvCache::new(layout(), Arc::new(KvMeter::default()));
        let err = c.reserve(1001).unwrap_err().to_string();
        assert!(err.contains("context of 1000"), "{err}");
        assert!(c.reserve(1000).is_ok());
    }

    #[test]
    fn a_copied_prefix_is_independent() {
        let meter = Arc::new(KvMeter::default());
        let mut c = KvCache::new(layout(), meter.clone());
        for layer in 0..2 {
            c.append(layer, &kv(5, 1.0), &kv(5, 1.0)).unwrap();
        }
        c.advance(5);
        let mut p = c.copy_prefix(2).unwrap();
        assert_eq!(p.len(), 2);
        p.append(0, &kv(1, 9.0), &kv(1, 9.0)).unwrap();
        let (k, _) = c.append(0, &kv(0, 0.0), &kv(0, 0.0)).unwrap();
        let third: Vec<f32> = k
            .narrow(2, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(third.iter().all(|x| *x == 1.0), "the original is untouched");
        assert_eq!(meter.bytes(), c.bytes() + p.bytes());
    }
}
