//! Loading models: where the weights are ([`resolve`]; fetched from the
//! Hugging Face Hub by [`hub`] when asked), reading them with
//! progress ([`progress`]), and building a runnable [`LoadedModel`] from a
//! GGUF file ([`gguf`]) or a Hugging Face directory ([`safetensors`]).

pub mod embedded;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod hf_cache;
pub mod hub;
pub mod progress;
pub mod resolve;
pub mod roots;
pub mod safetensors;

use std::sync::Arc;

use candle_core::Device;
use cortex_common::neuron_api::SamplingDefaults;
use tokenizers::Tokenizer;

pub use progress::ProgressFn;

use crate::engine::chat_template::ChatTemplate;
use crate::runtime::{QuantType, Transformer};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model source `{source_spec}` not found: {detail}")]
    NotFound { source_spec: String, detail: String },
    /// Outside `model_roots`; deliberately silent on whether it exists.
    #[error(
        "model source `{source_spec}` is outside the directories this neuron may read; \
         put the model under one of its `model_roots` (`--model-root DIR`), or add its \
         directory there"
    )]
    Forbidden { source_spec: String },
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
    /// `quant` asked for weights that cannot take it.
    #[error("{path}: {detail}")]
    QuantNotApplicable { path: String, detail: String },
    #[error("embedded model: {0}")]
    Embedded(#[from] crate::model::embedded::EmbeddedError),
    #[error(transparent)]
    Hub(#[from] hub::HubError),
}

/// Everything needed to run one model: weights, tokenizer, chat template,
/// end-of-generation tokens and limits.
pub struct LoadedModel {
    pub architecture: String,
    pub model: Arc<Transformer>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Arc<ChatTemplate>,
    /// Token ids that end generation.
    pub eos_token_ids: Vec<u32>,
    pub context_length: usize,
    /// Bytes of the weights as held.
    pub memory_bytes: u64,
    /// In-situ quantization applied at load, if any.
    pub quant: Option<QuantType>,
    /// Bytes the weights would take without it.
    pub unquantized_bytes: Option<u64>,
    pub device: Device,
    /// The sampling defaults the model publishes (`generation_config.json`,
    /// GGUF `general.sampling.*`).
    pub sampling: SamplingDefaults,
}

impl LoadedModel {
    pub fn new(
        architecture: String,
        model: Transformer,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        eos_token_ids: Vec<u32>,
        quant: Option<QuantType>,
        unquantized_bytes: Option<u64>,
    ) -> Self {
        LoadedModel {
            architecture,
            context_length: model.config().context_length,
            memory_bytes: model.weight_bytes(),
            device: model.device().clone(),
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            template: Arc::new(template),
            eos_token_ids,
            quant,
            unquantized_bytes,
            sampling: SamplingDefaults::default(),
        }
    }

    /// The model with the sampling defaults it publishes.
    pub fn with_sampling(self, sampling: SamplingDefaults) -> Self {
        LoadedModel { sampling, ..self }
    }
}
