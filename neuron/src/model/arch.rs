//! The [`CausalLm`] adapters over candle-transformers' model families.

use candle_core::Tensor;
use candle_transformers::models::{
    llama, quantized_llama, quantized_qwen2, quantized_qwen3, qwen2, qwen3,
};

use super::CausalLm;

/// Normalises `(1, vocab)` or `(1, 1, vocab)` logits to `(vocab,)` f32.
fn last_logits(logits: Tensor) -> candle_core::Result<Tensor> {
    let logits = match logits.rank() {
        3 => logits.squeeze(0)?.squeeze(0)?,
        2 => logits.squeeze(0)?,
        _ => logits,
    };
    let logits = if logits.rank() == 2 {
        // (seq, vocab): keep the last position.
        let n = logits.dim(0)?;
        logits.narrow(0, n - 1, 1)?.squeeze(0)?
    } else {
        logits
    };
    logits.to_dtype(candle_core::DType::F32)
}

pub struct QuantizedLlama(pub quantized_llama::ModelWeights);

impl CausalLm for QuantizedLlama {
    fn forward(&mut self, tokens: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        last_logits(self.0.forward(tokens, position)?)
    }
    fn clear_cache(&mut self) {
        self.0.clear_kv_cache();
    }
}

pub struct QuantizedQwen2(pub quantized_qwen2::ModelWeights);

impl CausalLm for QuantizedQwen2 {
    fn forward(&mut self, tokens: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        last_logits(self.0.forward(tokens, position)?)
    }
    fn clear_cache(&mut self) {
        self.0.clear_kv_cache();
    }
}

pub struct QuantizedQwen3(pub quantized_qwen3::ModelWeights);

impl CausalLm for QuantizedQwen3 {
    fn forward(&mut self, tokens: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        last_logits(self.0.forward(tokens, position)?)
    }
    fn clear_cache(&mut self) {
        self.0.clear_kv_cache();
    }
}

/// Dense llama keeps its KV cache outside the weights.
pub struct DenseLlama {
    pub model: llama::Llama,
    pub config: llama::Config,
    pub cache: llama::Cache,
    pub dtype: candle_core::DType,
    pub device: candle_core::Device,
}

impl CausalLm for DenseLlama {
    fn forward(&mut self, tokens: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        last_logits(self.model.forward(tokens, position, &mut self.cache)?)
    }
    fn clear_cache(&mut self) {
        if let Ok(cache) = llama::Cache::new(true, self.dtype, &self.config, &self.device) {
            self.cache = cache;
        }
    }
}

pub struct DenseQwen2(pub qwen2::ModelForCausalLM);

impl CausalLm for DenseQwen2 {
    fn forward(&mut self, tokens: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        last_logits(self.0.forward(tokens, position)?)
    }
    fn clear_cache(&mut self) {
        self.0.clear_kv_cache();
    }
}

pub struct DenseQwen3(pub qwen3::ModelForCausalLM);

impl CausalLm for DenseQwen3 {
    fn forward(&mut self, tokens: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        last_logits(self.0.forward(tokens, position)?)
    }
    fn clear_cache(&mut self) {
        self.0.clear_kv_cache();
    }
}
