//! The hyperparameters of one transformer, read once from GGUF metadata or
//! `config.json`, whatever the architecture: everything the layers need to
//! know, nothing about where the weights live.

use serde_json::Value;

pub use super::rope::{RopeScaling, RopeStyle};

/// The families the runtime implements. They share one transformer and
/// differ only in the flags of [`ModelConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
}

impl Architecture {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_style: RopeStyle,
    pub rope_scaling: RopeScaling,
    /// Positions the model was trained for; the rope tables have this many
    /// rows and no prompt may be longer.
    pub context_length: usize,
    /// q, k and v projections carry a bias (qwen2).
    pub qkv_bias: bool,
    /// Per-head RMSNorm of queries and keys before rope (qwen3).
    pub qk_norm: bool,
    /// lm_head shares the token embedding matrix.
    pub tie_word_embeddings: bool,
}

/// A config that cannot describe a runnable model; the message names the
/// field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ModelConfig {
    /// From a Hugging Face `config.json`.
    pub fn from_hf_json(v: &Value) -> Result<Self, ConfigError> {
        let arch_name = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        let architecture = Architecture::parse(arch_name).ok_or_else(|| {
            ConfigError(format!(
                "model_type `{arch_name}` is not supported (supported: llama, qwen2, qwen3)"
            ))
        })?;
        let usize_field = |name: &str| -> Result<usize, ConfigError> {
            v.get(name)
                .and_then(Value::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "config.json: field `{name}` is missing or not a number"
                    ))
                })
        };
        let hidden_size = usize_field("hidden_size")?;
        let num_heads = usize_field("num_attention_heads")?;
        let num_kv_heads = v
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .unwrap_or(num_heads);
        let head_dim = v
            .get("head_dim")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .unwrap_or_else(|| hidden_size / num_heads.max(1));
        let context_length = v
            .get("max_position_embeddings")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .unwrap_or(2048);
        let rope_scaling = RopeScaling::from_hf_json(v.get("rope_scaling")).map_err(ConfigError)?;
        let cfg = ModelConfig {
            architecture,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_layers: usize_field("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: usize_field("vocab_size")?,
            rms_norm_eps: v
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta: v
                .get("rope_theta")
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
            rope_style: RopeStyle::Halves,
            context_length: rope_scaling.usable_context(context_length),
            rope_scaling,
            qkv_bias: match architecture {
                Architecture::Qwen2 => true,
                _ => v
                    .get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            },
            qk_norm: architecture == Architecture::Qwen3,
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        cfg.validate()
    }

    /// From GGUF metadata, read through the getters (`key` → value); what
    /// the metadata leaves out is read off the tensors where it can be.
    #[allow(clippy::too_many_arguments)]
    pub fn from_gguf(
        get_u: &dyn Fn(&str) -> Option<u64>,
        get_f: &dyn Fn(&str) -> Option<f64>,
        get_s: &dyn Fn(&str) -> Option<String>,
        has_output: bool,
        has_qkv_bias: bool,
        has_qk_norm: bool,
        vocab_from_embedding: usize,
        ffn_from_tensor: Option<usize>,
    ) -> Result<Self, ConfigError> {
        let arch_name = get_s("general.architecture").unwrap_or_default();
        let architecture = Architecture::parse(&arch_name).ok_or_else(|| {
            ConfigError(format!(
                "architecture `{arch_name}` is not supported (supported: llama, qwen2, qwen3)"
            ))
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let req = |k: &str| -> Result<usize, ConfigError> {
            get_u(&key(k))
                .map(|n| n as usize)
                .ok_or_else(|| ConfigError(format!("GGUF metadata `{}` is missing", key(k))))
        };
        let hidden_size = req("embedding_length")?;
        let num_heads = req("attention.head_count")?;
        let num_kv_heads = get_u(&key("attention.head_count_kv"))
            .map(|n| n as usize)
            .unwrap_or(num_heads);
        let head_dim = get_u(&key("attention.key_length"))
            .map(|n| n as usize)
            .unwrap_or_else(|| hidden_size / num_heads.max(1));
        let context_length = get_u(&key("context_length"))
            .map(|n| n as usize)
            .unwrap_or(2048);
        let rope_scaling = RopeScaling::from_gguf(
            get_s(&key("rope.scaling.type")).as_deref(),
            get_f(&key("rope.scaling.factor")),
            get_u(&key("rope.scaling.original_context_length")).map(|n| n as usize),
        )
        .map_err(ConfigError)?;
        let cfg = ModelConfig {
            architecture,
            hidden_size,
            intermediate_size: match get_u(&key("feed_forward_length")) {
                Some(n) => n as usize,
                None => ffn_from_tensor.ok_or_else(|| {
                    ConfigError(format!(
                        "GGUF metadata `{}` is missing",
                        key("feed_forward_length")
                    ))
                })?,
            },
            num_layers: req("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: get_u(&key("vocab_size"))
                .map(|n| n as usize)
                .unwrap_or(vocab_from_embedding),
            rms_norm_eps: get_f(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
            rope_theta: get_f(&key("rope.freq_base")).unwrap_or(10_000.0),
            rope_style: match architecture {
                Architecture::Llama => RopeStyle::Interleaved,
                Architecture::Qwen2 | Architecture::Qwen3 => RopeStyle::Halves,
            },
            context_length: rope_scaling.usable_context(context_length),
            rope_scaling,
            qkv_bias: has_qkv_bias,
            qk_norm: has_qk_norm,
            tie_word_embeddings: !has_output,
        };
        cfg.validate()
    }

    fn validate(self) -> Result<Self, ConfigError> {
        let positive = [
            ("hidden size", self.hidden_size),
            ("intermediate size", self.intermediate_size),
            ("layer count", self.num_layers),
            ("head count", self.num_heads),
            ("kv head count", self.num_kv_heads),
            ("head dimension", self.head_dim),
            ("vocabulary size", self.vocab_size),
            ("context length", self.context_length),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError(format!("the model's {name} is zero")));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(ConfigError(format!(
                "{} attention heads are not a multiple of {} kv heads",
                self.num_heads, self.num_kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ConfigError(format!(
                "head dimension {} is odd; rope needs pairs",
                self.head_dim
            )));
        }
        Ok(self)
    }

    /// Query heads that share one kv head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// KV cache bytes per token of context, all layers, f32.
    pub fn kv_bytes_per_token(&self) -> u64 {
        (2 * self.num_layers * self.num_kv_heads * self.head_dim * 4) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn llama_json() -> Value {
        json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "tie_word_embeddings": true
        })
    }

    #[test]
    fn hf_llama_reads_every_field() {
        let c = ModelConfig::from_hf_json(&llama_json()).unwrap();
        assert_eq!(c.architecture, Architecture::Llama);
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (4, 2, 16));
        assert_eq!(c.group_size(), 2);
        assert_eq!(c.context_length, 512);
        assert!(c.tie_word_embeddings && !c.qkv_bias && !c.qk_norm);
        assert_eq!(c.rope_style, RopeStyle::Halves);
        assert_eq!(c.kv_bytes_per_token(), 2 * 2 * 2 * 16 * 4);
    }

    #[test]
    fn qwen_flags_follow_the_family() {
        let mut v = llama_json();
        v["model_type"] = json!("qwen2");
        assert!(ModelConfig::from_hf_json(&v).unwrap().qkv_bias);
        v["model_type"] = json!("qwen3");
        v["head_dim"] = json!(32);
        let c = ModelConfig::from_hf_json(&v).unwrap();
        assert!(c.qk_norm && !c.qkv_bias);
        assert_eq!(c.head_dim, 32);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let mut v = llama_json();
        v["model_type"] = json!("mamba");
        let e = ModelConfig::from_hf_json(&v).unwrap_err().to_string();
        assert!(e.contains("mamba"), "{e}");
        let mut v = llama_json();
        v.as_object_mut().unwrap().remove("hidden_size");
        let e = ModelConfig::from_hf_json(&v).unwrap_err().to_string();
        assert!(e.contains("hidden_size"), "{e}");
        let mut v = llama_json();
        v["num_key_value_heads"] = json!(3);
        let e = ModelConfig::from_hf_json(&v).unwrap_err().to_string();
        assert!(e.contains("kv heads"), "{e}");
    }
}
