//! The neuron's transformer runtime, on candle tensors (one code path for
//! CPU, CUDA and Metal) with the neuron's own quantized CPU kernels.
//!
//! Layout:
//! - [`config`]: hyperparameters from GGUF metadata or `config.json`.
//! - [`linear`]: a linear layer, dense or quantized; in-situ quantization.
//! - [`embedding`], [`norm`], [`rope`] (tables sized to the full context,
//!   with rope scaling), [`mlp`], [`attention`] (grouped-query, per-sequence
//!   KV; [`attention_cpu`] its CPU kernel, the same numbers for a row
//!   whatever else is in the pass; [`attention_decode`] the same for one
//!   token, fused with the cache write): the blocks.
//! - [`transformer`]: the model; weights shared, one [`kv_cache::KvCache`]
//!   per sequence; batched forward over several sequences.
//! - [`weights`]: building a model from named tensors of either format.
//! - [`kv_cache`]: preallocated, chunk-grown KV storage, metered.
//! - [`prompt_cache`]: reuse of the longest cached prefix across requests.
//!
//! The kernels themselves live in the `neuron-kernels` crate
//! (`neuron/kernels/`), compiled fully optimised in every profile.

pub mod attention;
pub mod attention_cpu;
pub mod attention_decode;
pub mod config;
pub mod embedding;
pub mod kv_cache;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod prompt_cache;
pub mod rope;
pub mod transformer;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use kv_cache::KvCache;
pub use neuron_kernels::QuantType;
pub use prompt_cache::PromptCache;
pub use transformer::{Step, StepKind, Transformer};
