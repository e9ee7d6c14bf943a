//! `neuron.toml`: the neuron's settings. Every key can also be given as a
//! command-line flag, which wins over the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, deserialize_opt_duration, load_toml};

pub const DEFAULT_NEURON_LISTEN: &str = "0.0.0.0:13131";
/// Where a neuron without a token listens by default: loopback only.
pub const DEFAULT_NEURON_LISTEN_NO_AUTH: &str = "127.0.0.1:13131";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuronConfig {
    /// Address to listen on, default `0.0.0.0:13131`.
    pub listen: Option<String>,
    /// Node name reported to the gateway, default the host name.
    pub name: Option<String>,
    /// Memory the neuron may fill with models, in MiB (default: the device's).
    pub memory_limit_mb: Option<u64>,
    /// Requests waiting per model beyond the running batch (default 16).
    pub max_queue: Option<u32>,
    /// Largest request body accepted, in bytes (default 4 MiB).
    pub max_body_bytes: Option<usize>,
    /// Largest `max_tokens` accepted (default: the model's context length).
    pub max_tokens_limit: Option<u32>,
    /// Device to run on: `cpu` (default), `cuda:N`, `metal:N`.
    pub device: Option<String>,
    /// Interval of `device_stats` events, milliseconds (default 1000).
    pub stats_interval_ms: Option<u64>,
    /// CPU threads for the forward pass (default: the machine's cores).
    pub threads: Option<usize>,
    /// Memory per model for the prompt cache, MiB (default 512; 0 turns it off).
    pub prompt_cache_mb: Option<u64>,
    /// Prompt tokens one sequence prefills per step (default 256): the
    /// longest pause a long prompt can put between a running stream's tokens.
    pub prefill_chunk: Option<usize>,
    /// Sequences a device runs together in one batch (default 8).
    pub max_batch: Option<usize>,
    /// Tokens one step may run, decode tokens and prefill chunks (default 256).
    pub max_batched_tokens: Option<usize>,
    /// While streams are decoding, prompt chunks are sized (from what a
    /// prompt token has cost lately) so a step holds up their next token
    /// about this long, milliseconds (default 250; 0: whole `prefill_chunk`s).
    pub decode_stall_ms: Option<u64>,
    /// File holding the fleet's neuron token (first line). Every route but
    /// `/health` then needs `Authorization: Bearer <token>`.
    /// `CORTEX_NEURON_TOKEN` wins over it.
    pub token_file: Option<PathBuf>,
    /// Directories a load may read models from (relative ones are taken
    /// from this file's directory). Default: the cortex model cache and the
    /// Hugging Face cache. `embedded` is always allowed.
    pub model_roots: Option<Vec<PathBuf>>,
    /// Longest time a client may take to send a request's headers, e.g.
    /// `"30s"` (default 30 s); slower connections are closed.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub header_read_timeout: Option<Duration>,
    /// Connections served at once (default 1024); more wait to be accepted.
    pub max_connections: Option<usize>,
}

impl NeuronConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (cfg, source): (NeuronConfig, String) = load_toml(path)?;
        if let Some(0) = cfg.memory_limit_mb {
            return Err(ConfigError::invalid_value(
                path,
                &source,
                None,
                "memory_limit_mb",
                "must be greater than 0",
            ));
        }
        if let Some(0) = cfg.stats_interval_ms {
            return Err(ConfigError::invalid_value(
                path,
                &source,
                None,
                "stats_interval_ms",
                "must be greater than 0",
            ));
        }
        for (field, zero) in [
            ("threads", cfg.threads == Some(0)),
            ("prefill_chunk", cfg.prefill_chunk == Some(0)),
            ("max_batch", cfg.max_batch == Some(0)),
            ("max_batched_tokens", cfg.max_batched_tokens == Some(0)),
            ("max_connections", cfg.max_connections == Some(0)),
        ] {
            if zero {
                return Err(ConfigError::invalid_value(
                    path,
                    &source,
                    None,
                    field,
                    "must be greater than 0",
                ));
            }
        }
        if cfg
            .model_roots
            .iter()
            .flatten()
            .any(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid_value(
                path,
                &source,
                None,
                "model_roots",
                "an entry is empty; name a directory",
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<NeuronConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("neuron.toml");
        std::fs::write(&path, text).unwrap();
        NeuronConfig::load(&path)
    }

    #[test]
    fn server_limits_and_roots_parse() {
        let cfg = load_str(
            "model_roots = [\"/srv/models\"]\nheader_read_timeout = \"2s\"\nmax_connections = 8\n",
        )
        .unwrap();
        assert_eq!(cfg.model_roots, Some(vec![PathBuf::from("/srv/models")]));
        assert_eq!(cfg.header_read_timeout, Some(Duration::from_secs(2)));
        assert_eq!(cfg.max_connections, Some(8));
    }

    #[test]
    fn bad_limits_name_the_line_and_field() {
        let err = load_str("name = \"x\"\nmax_connections = 0\n").unwrap_err();
        assert!(
            err.to_string().contains(":2: field `max_connections`"),
            "{err}"
        );
        let err = load_str("name = \"x\"\n\nheader_read_timeout = \"0s\"\n").unwrap_err();
        assert!(
            err.to_string().contains(":3: field `header_read_timeout`"),
            "{err}"
        );
        let err = load_str("model_roots = [\"\"]\n").unwrap_err();
        assert!(err.to_string().contains(":1: field `model_roots`"), "{err}");
    }
}
