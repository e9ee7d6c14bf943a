//! Loading models: where the weights are ([`resolve`]), reading them with
//! progress ([`progress`]), and building a runnable [`LoadedModel`] from a
//! GGUF file ([`gguf`]) or a Hugging Face directory ([`safetensors`]).

pub mod arch;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod progress;
pub mod resolve;
pub mod safetensors;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use crate::engine::chat_template::ChatTemplate;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model source `{source_spec}` not found: {detail}")]
    NotFound { source_spec: String, detail: String },
    #[error("{path}: {detail}")]
    Unsupported { path: String, detail: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid model file: {source}")]
    Candle {
        path: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("{path}: tokenizer: {detail}")]
    Tokenizer { path: String, detail: String },
    #[error("{path}: chat template: {detail}")]
    Template { path: String, detail: String },
    #[error(
        "not enough memory for `{model}`: needs {needed_mb} MiB, {free_mb} MiB free of {total_mb} MiB"
    )]
    InsufficientMemory {
        model: String,
        needed_mb: u64,
        free_mb: u64,
        total_mb: u64,
    },
    #[error("embedded model: {0}")]
    Embedded(#[from] cortex_common::embedded::EmbeddedError),
}

/// A causal language model that maps token ids to next-token logits and
/// keeps its own KV cache.
pub trait CausalLm: Send {
    /// `tokens` has shape `(1, seq_len)`; returns logits of the last
    /// position, shape `(vocab,)`, as f32.
    fn forward(&mut self, tokens: &Tensor, position: usize) -> candle_core::Result<Tensor>;
    fn clear_cache(&mut self);
}

/// Everything needed to run one model: weights, tokenizer, chat template,
/// end-of-generation tokens and limits.
pub struct LoadedModel {
    pub architecture: String,
    pub model: Box<dyn CausalLm>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Arc<ChatTemplate>,
    /// Token ids that end generation.
    pub eos_token_ids: Vec<u32>,
    pub context_length: usize,
    pub memory_bytes: u64,
    pub device: Device,
}

/// Progress callback: (bytes done, bytes total).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);
