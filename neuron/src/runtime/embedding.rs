//! Token embeddings: a dense table, or quantized rows dequantized on
//! lookup (so a quantized embedding shared with lm_head is held once).

use std::sync::Arc;

use candle_core::{Device, Result, Tensor};
use neuron_kernels::QMatrix;

#[derive(Clone)]
pub enum Embedding {
    /// `(vocab, hidden)` f32.
    Dense(Tensor),
    Quant(Arc<QMatrix>, Device),
}

impl Embedding {
    pub fn vocab(&self) -> Result<usize> {
        match self {
            Embedding::Dense(t) => t.dim(0),
            Embedding::Quant(q, _) => Ok(q.rows()),
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            Embedding::Dense(t) => (t.elem_count() * t.dtype().size_in_bytes()) as u64,
            Embedding::Quant(q, _) => q.storage_bytes() as u64,
        }
    }

    /// `(ids.len(), hidden)` f32.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let vocab = self.vocab()?;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            candle_core::bail!("token id {bad} is outside the vocabulary of {vocab}");
        }
        match self {
            Embedding::Dense(t) => {
                let idx = Tensor::new(ids, t.device())?;
                t.index_select(&idx, 0)?.to_dtype(candle_core::DType::F32)
            }
            Embedding::Quant(q, device) => {
                let hidden = q.cols();
                let mut out = vec![0f32; ids.len() * hidden];
                for (row, &id) in out.chunks_mut(hidden).zip(ids) {
                    q.dequantize_row(id as usize, row)
                        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                }
                Tensor::from_vec(out, (ids.len(), hidden), device)
            }
        }
    }
}
