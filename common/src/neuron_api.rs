//! The neuron's control API documents: `/health`, `/discovery`, `/models`,
//! `/models/load`, `/models/unload`. The gateway reads the same types.

use serde::{Deserialize, Serialize};

use crate::open_enum::open_enum;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"` whenever the neuron answers.
    pub status: String,
    pub name: String,
    pub version: String,
    pub uptime_secs: u64,
}

/// One compute device of a host: the CPU, a CUDA GPU, a Metal GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `cpu`, `cuda:0`, `metal:0`.
    pub id: String,
    /// `cpu` | `cuda` | `metal`.
    pub kind: String,
    /// Human name: CPU model, GPU name.
    pub name: String,
    /// Memory the neuron may use on this device (the configured limit when
    /// one is set, else what the device has).
    pub memory_total_bytes: u64,
    /// Memory taken by resident models.
    pub memory_used_bytes: u64,
}

impl DeviceInfo {
    pub fn memory_free_bytes(&self) -> u64 {
        self.memory_total_bytes
            .saturating_sub(self.memory_used_bytes)
    }
}

/// `GET /discovery`: what this host is and has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    pub name: String,
    pub host: String,
    pub os: String,
    pub cpu_model: String,
    pub cpu_cores: usize,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    pub devices: Vec<DeviceInfo>,
    /// candle features compiled in: `cpu` always, plus `cuda`, `metal`,
    /// `avx`, `neon`, `f16c`… as candle reports them.
    pub candle_features: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    Loading,
    Loaded,
    Unloading,
    Failed,
}

/// One entry of `GET /models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub source: String,
    pub state: ModelState,
    /// Architecture read from the weights (`llama`, `qwen2`, `qwen3`).
    #[serde(default)]
    pub architecture: Option<String>,
    pub device: String,
    pub memory_bytes: u64,
    /// Requests admitted: running plus waiting.
    pub in_flight: u32,
    /// Requests waiting for the device.
    pub queue_depth: u32,
    /// Decode speed of the most recent request, tokens per second.
    pub decode_tok_s: Option<f64>,
    /// Load progress while `loading`: done / total (bytes).
    #[serde(default)]
    pub progress: Option<Progress>,
    /// Why the load failed, when `failed`.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub context_length: Option<u32>,
    /// In-situ quantization applied at load (`q4_0`, `q4k`, `q5k`, `q6k`,
    /// `q8_0`), absent when the weights are as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<String>,
    /// Bytes the weights would take without `quant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unquantized_bytes: Option<u64>,
    /// Bytes of the model's KV caches: running sequences and the prompt
    /// cache (included in `memory_bytes`).
    #[serde(default)]
    pub kv_cache_bytes: u64,
    /// Sequences kept in the prompt cache.
    #[serde(default)]
    pub prompt_cache_entries: u32,
    /// The sampling a request gets for what it leaves out: the model's own
    /// published defaults (`generation_config.json`, GGUF metadata) over
    /// the neuron's (temperature 1). Absent until the model is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<SamplingDefaults>,
}

/// Sampling settings applied when a request does not give its own; each
/// absent one falls through to the next layer (the model's published
/// defaults, then the neuron's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
}

impl SamplingDefaults {
    /// These defaults with `over`'s values where it has them.
    pub fn overridden_by(self, over: &SamplingDefaults) -> Self {
        SamplingDefaults {
            temperature: over.temperature.or(self.temperature),
            top_p: over.top_p.or(self.top_p),
            top_k: over.top_k.or(self.top_k),
            repetition_penalty: over.repetition_penalty.or(self.repetition_penalty),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == SamplingDefaults::default()
    }
}

impl ModelInfo {
    /// A model known by id and source only (loading, failed, or not yet
    /// reported in full): no memory, requests or figures yet.
    pub fn bare(id: &str, source: &str, state: ModelState, device: &str) -> Self {
        ModelInfo {
            id: id.to_string(),
            source: source.to_string(),
            state,
            architecture: None,
            device: device.to_string(),
            memory_bytes: 0,
            in_flight: 0,
            queue_depth: 0,
            decode_tok_s: None,
            progress: None,
            error: None,
            context_length: None,
            quant: None,
            unquantized_bytes: None,
            kv_cache_bytes: 0,
            prompt_cache_entries: 0,
            sampling: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelsResponse {
    pub models: Vec<ModelInfo>,
}

/// `POST /models/load`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRequest {
    /// The id the model is served under.
    pub model: String,
    /// Where the weights are: `embedded`, a GGUF file, a Hugging Face model
    /// directory, or a Hugging Face cache id (`org/name`). Defaults to
    /// `model` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Quantize dense weights at load: `q4_0`, `q4k`, `q5k`, `q6k` or
    /// `q8_0`. Not for GGUF files that are already quantized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<String>,
}

/// `POST /models/unload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnloadRequest {
    pub model: String,
    /// Why, as the neuron reports it in `model_unloaded` (default
    /// `requested`).
    #[serde(default)]
    pub reason: UnloadReason,
}

open_enum! {
    /// Why a model was unloaded.
    pub enum UnloadReason {
        /// An operator or client asked for it.
        Requested = "requested",
        /// The gateway made room for another model (or an operator evicted
        /// it).
        Evicted = "evicted",
        /// Idle past the model's `ttl`.
        Ttl = "ttl",
    }
}

impl Default for UnloadReason {
    /// What an unload request without a reason (an older gateway's) means.
    fn default() -> Self {
        UnloadReason::Requested
    }
}

/// Answer of load and unload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleResponse {
    pub model: String,
    pub state: ModelState,
    /// `true` when this call did the work, `false` when it was already done
    /// (or another caller's identical load was joined).
    pub changed: bool,
    pub memory_bytes: u64,
    pub duration_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unload_without_a_reason_is_requested_and_a_newer_reason_is_kept() {
        let old: UnloadRequest = serde_json::from_str(r#"{"model":"m"}"#).unwrap();
        assert_eq!(old.reason, UnloadReason::Requested);
        let ttl: UnloadRequest = serde_json::from_str(r#"{"model":"m","reason":"ttl"}"#).unwrap();
        assert_eq!(ttl.reason, UnloadReason::Ttl);
        let newer: UnloadRequest =
            serde_json::from_str(r#"{"model":"m","reason":"drained"}"#).unwrap();
        assert_eq!(newer.reason, UnloadReason::Other("drained".into()));
        assert_eq!(
            serde_json::to_string(&newer).unwrap(),
            r#"{"model":"m","reason":"drained"}"#
        );
    }
}
