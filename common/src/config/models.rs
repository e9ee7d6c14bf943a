//! `models.toml`: the model catalogue the gateway serves — where each model's
//! weights are, how much memory it needs, where it may run, how it is kept
//! resident — plus aliases clients may use instead of the ids.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, deserialize_opt_duration, load_toml};
use crate::neuron_api::SamplingDefaults;

/// Priority class a model has when `residency_priority` is not given.
pub const DEFAULT_RESIDENCY_PRIORITY: u32 = 100;

/// Largest `memory_mb` accepted: bytes must fit a `u64` with room to add.
pub const MAX_MEMORY_MB: u64 = 1 << 40;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    /// `alias = "model id"`: names clients may use for a model.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The id clients ask for and the neuron serves the model under.
    pub id: String,
    /// Where the weights are: `embedded`, a GGUF file, a Hugging Face model
    /// directory, or a Hugging Face cache id (`org/name`). Default: `id`.
    /// `path` is accepted as another name for it.
    #[serde(default, alias = "path")]
    pub source: Option<String>,
    /// In-situ quantization of dense (safetensors) weights at load:
    /// `q4_0`, `q4_1`, `q8_0`, `q4k`, `q5k` or `q6k`. Not for GGUF files
    /// that are already quantized (the neuron refuses with a 400).
    #[serde(default)]
    pub quant: Option<String>,
    /// Memory the model takes when resident, MiB. Placement and eviction plan
    /// with it; once a replica has loaded, the size the neuron reports wins
    /// when larger. Omitted: the reported size, or 0 before the first load.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Devices a node must have to host the model (default 1).
    #[serde(default = "one")]
    pub min_devices: u32,
    /// Placement affinity: when non-empty, the model is only placed on these
    /// nodes (by name).
    #[serde(default)]
    pub pinned_on: Vec<String>,
    /// Residency class for the `priority` eviction strategy: a model may
    /// displace residents whose priority is lower than or equal to its own.
    #[serde(default = "default_priority")]
    pub residency_priority: u32,
    /// Never evicted and never unloaded for idleness (admin pin/unpin
    /// overrides this at runtime).
    #[serde(default)]
    pub pinned: bool,
    /// Unload a replica idle for this long (`90s`, `10m`, `2h`). None: never.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub ttl: Option<Duration>,
    /// Most replicas the gateway runs of this model (default 1). Above 1,
    /// a model whose requests keep waiting at the gateway because every
    /// replica is full gets another replica on a node with room (scale-out).
    #[serde(default = "one")]
    pub max_replicas: u32,
    /// Sampling for requests that leave it out, over the model's own
    /// defaults (`generation_config.json`, GGUF metadata); a request's own
    /// values win. Same ranges as in a request.
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
}

/// The quantizations a neuron can apply at load (`quant`).
pub const QUANT_TYPES: [&str; 6] = ["q4_0", "q4_1", "q8_0", "q4k", "q5k", "q6k"];

fn one() -> u32 {
    1
}

fn default_priority() -> u32 {
    DEFAULT_RESIDENCY_PRIORITY
}

impl ModelEntry {
    /// What the neuron is asked to load.
    pub fn source(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.id)
    }

    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory_mb.map(|mb| mb.saturating_mul(1024 * 1024))
    }

    /// The sampling settings this entry sets.
    pub fn sampling(&self) -> SamplingDefaults {
        SamplingDefaults {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repetition_penalty: self.repetition_penalty,
        }
    }
}

impl ModelsConfig {
    /// Reads and validates `path`. `known_nodes`, when given, are the node
    /// names `pinned_on` may mention.
    pub fn load(path: &Path, known_nodes: Option<&[String]>) -> Result<Self, ConfigError> {
        let (cfg, source): (ModelsConfig, String) = load_toml(path)?;
        cfg.validate(path, &source, known_nodes)?;
        Ok(cfg)
    }

    /// Parses and validates text that came from `path`.
    pub fn parse(
        path: &Path,
        source: &str,
        known_nodes: Option<&[String]>,
    ) -> Result<Self, ConfigError> {
        let cfg: ModelsConfig = super::parse_toml(path, source)?;
        cfg.validate(path, source, known_nodes)?;
        Ok(cfg)
    }

    fn validate(
        &self,
        path: &Path,
        source: &str,
        known_nodes: Option<&[String]>,
    ) -> Result<(), ConfigError> {
        let mut ids = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let at = Some(("models", i));
            let bad =
                |field: &str, msg: String| ConfigError::invalid_value(path, source, at, field, msg);
            if m.id.trim().is_empty() {
                return Err(bad("id", "must not be empty".into()));
            }
            if !ids.insert(m.id.as_str()) {
                return Err(bad("id", format!("model `{}` is declared twice", m.id)));
            }
            if m.source.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(bad("source", "must not be empty".into()));
            }
            // A Hub source's syntax is checked here, so a typo is a config
            // error at startup rather than a failed cold load later.
            if crate::hub_source::is_hub(m.source()) {
                crate::hub_source::HubSource::parse(m.source())
                    .map_err(|why| bad("source", why))?;
            }
            if let Some(q) = &m.quant
                && !QUANT_TYPES.contains(&q.to_ascii_lowercase().replace("_k", "k").as_str())
            {
                return Err(bad(
                    "quant",
                    format!(
                        "`{q}` is not an in-situ quantization; use one of {}",
                        QUANT_TYPES.join(", ")
                    ),
                ));
            }
            if m.memory_mb == Some(0) {
                return Err(bad("memory_mb", "must be greater than 0".into()));
            }
            if m.memory_mb.is_some_and(|mb| mb > MAX_MEMORY_MB) {
                return Err(bad(
                    "memory_mb",
                    format!("must be at most {MAX_MEMORY_MB} (1 EiB)"),
                ));
            }
            if m.min_devices == 0 {
                return Err(bad("min_devices", "must be at least 1".into()));
            }
            if m.max_replicas == 0 {
                return Err(bad(
                    "max_replicas",
                    "must be at least 1 (1: no scale-out)".into(),
                ));
            }
            if let Some(t) = m.temperature
                && !(0.0..=2.0).contains(&t)
            {
                return Err(bad("temperature", "must be between 0 and 2".into()));
            }
            if let Some(p) = m.top_p
                && !(p > 0.0 && p <= 1.0)
            {
                return Err(bad("top_p", "must be greater than 0 and at most 1".into()));
            }
            if m.top_k == Some(0) {
                return Err(bad(
                    "top_k",
                    "must be at least 1 (leave it out for no top-k)".into(),
                ));
            }
            if let Some(r) = m.repetition_penalty
                && !(r > 0.0 && r <= 10.0)
            {
                return Err(bad(
                    "repetition_penalty",
                    "must be greater than 0 and at most 10 (1 = off)".into(),
                ));
            }
            if let Some(nodes) = known_nodes {
                for n in &m.pinned_on {
                    if !nodes.iter().any(|k| k == n) {
                        return Err(bad(
                            "pinned_on",
                            format!(
                                "node `{n}` is not one of the configured neurons ({})",
                                nodes.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        for (alias, target) in &self.aliases {
            let bad = |msg: String| {
                ConfigError::invalid_value(path, source, Some(("aliases", 0)), alias, msg)
            };
            if ids.contains(alias.as_str()) {
                return Err(bad(format!("alias `{alias}` is also a model id")));
            }
            if !ids.contains(target.as_str()) {
                return Err(bad(format!(
                    "alias `{alias}` points at unknown model `{target}`"
                )));
            }
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The model id a client's name means: the id itself, or an alias's target.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map(String::as_str).unwrap_or(name)
    }

    /// Aliases pointing at `id`.
    pub fn aliases_of(&self, id: &str) -> Vec<String> {
        self.aliases
            .iter()
            .filter(|(_, t)| t.as_str() == id)
            .map(|(a, _)| a.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<ModelsConfig, ConfigError> {
        ModelsConfig::parse(
            Path::new("models.toml"),
            src,
            Some(&["a".into(), "b".into()]),
        )
    }

    #[test]
    fn full_entry_parses_with_defaults() {
        let cfg = parse(
            "[[models]]\nid = \"smol\"\nsource = \"embedded\"\nmemory_mb = 100\nttl = \"10m\"\n\
             [[models]]\nid = \"big\"\npath = \"/m/big.gguf\"\nresidency_priority = 300\npinned = true\npinned_on = [\"b\"]\n\
             [aliases]\n\"gpt-4o-mini\" = \"smol\"\n",
        )
        .unwrap();
        let smol = cfg.get("smol").unwrap();
        assert_eq!(smol.source(), "embedded");
        assert_eq!(smol.ttl, Some(Duration::from_secs(600)));
        assert_eq!(smol.residency_priority, DEFAULT_RESIDENCY_PRIORITY);
        assert_eq!(smol.min_devices, 1);
        assert_eq!(smol.max_replicas, 1, "scale-out is opt-in");
        assert!(!smol.pinned);
        let big = cfg.get("big").unwrap();
        assert_eq!(big.source(), "/m/big.gguf");
        assert!(big.pinned);
        assert_eq!(cfg.resolve("gpt-4o-mini"), "smol");
        assert_eq!(cfg.resolve("big"), "big");
        assert_eq!(cfg.aliases_of("smol"), vec!["gpt-4o-mini".to_string()]);
    }

    /// The line, field and message of a semantic config error.
    fn invalid(src: &str) -> (usize, String, String) {
        match parse(src).unwrap_err() {
            ConfigError::Invalid {
                line,
                field,
                message,
                ..
            } => (line, field, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_hub_source_is_a_config_error_on_its_line() {
        let ok = parse(
            "[[models]]\nid = \"x\"\nsource = \"hf:org/name@v1\"\n\
             [[models]]\nid = \"y\"\nsource = \"hf:org/name/sub/m.gguf\"\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
        let src =
            "[[models]]\nid = \"x\"\n[[models]]\nid = \"y\"\nsource = \"hf:org/name/model.bin\"\n";
        let (line, field, message) = invalid(src);
        assert_eq!((line, field.as_str()), (5, "source"));
        assert!(message.contains("GGUF"), "{message}");
        let err = parse("[[models]]\nid = \"x\"\nsource = \"hf:justone\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hf:ORG/NAME"), "{err}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[[models]]\nid = \"x\"\nmemroy_mb = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("models.toml:3: field `memroy_mb`"), "{err}");
    }

    #[test]
    fn bad_ttl_is_named_with_its_line() {
        let err = parse("[[models]]\nid = \"x\"\n\nttl = \"10 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("models.toml:4: field `ttl`"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_entry_line() {
        let src = "[[models]]\nid = \"x\"\n[[models]]\nid = \"y\"\npinned_on = [\"zz\"]\n";
        let (line, field, message) = invalid(src);
        assert_eq!((line, field.as_str()), (5, "pinned_on"));
        assert!(message.contains("zz"), "{message}");
        let dup = "[[models]]\nid = \"x\"\n[[models]]\nid = \"x\"\n";
        assert!(
            parse(dup)
                .unwrap_err()
                .to_string()
                .starts_with("models.toml:4: field `id`")
        );
        let zero = "[[models]]\nid = \"x\"\nmemory_mb = 0\n";
        assert!(parse(zero).unwrap_err().to_string().contains("memory_mb"));
        let none = "[[models]]\nid = \"x\"\n\nmax_replicas = 0\n";
        let err = parse(none).unwrap_err().to_string();
        assert!(
            err.starts_with("models.toml:4: field `max_replicas`"),
            "{err}"
        );
        for huge in ["18446744073709551615", "1099511627777"] {
            let src = format!("[[models]]\nid = \"x\"\n\nmemory_mb = {huge}\n");
            let err = parse(&src).unwrap_err().to_string();
            assert!(err.contains(":4: field `memory_mb`"), "{err}");
        }
        let src = "[[models]]\nid = \"x\"\nmemory_mb = 18446744073709551616\n";
        let err = parse(src).unwrap_err().to_string();
        assert!(err.contains(":3: field `memory_mb`"), "{err}");
    }

    #[test]
    fn sampling_overrides_parse_and_bad_ones_name_their_line() {
        let cfg =
            parse("[[models]]\nid = \"x\"\ntemperature = 0.6\ntop_p = 0.95\ntop_k = 20\n").unwrap();
        let s = cfg.get("x").unwrap().sampling();
        assert_eq!(
            (s.temperature, s.top_p, s.top_k, s.repetition_penalty),
            (Some(0.6), Some(0.95), Some(20), None)
        );
        assert!(
            parse("[[models]]\nid = \"x\"\n")
                .unwrap()
                .get("x")
                .unwrap()
                .sampling()
                .is_empty()
        );
        for (line, bad) in [
            ("temperature = 2.5", "temperature"),
            ("top_p = 0.0", "top_p"),
            ("top_k = 0", "top_k"),
            ("repetition_penalty = 11.0", "repetition_penalty"),
            ("top_k = -1", "top_k"),
            ("temperature = \"hot\"", "temperature"),
        ] {
            let src = format!("[[models]]\nid = \"a\"\n[[models]]\nid = \"x\"\n\n{line}\n");
            let err = parse(&src).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("models.toml:6: field `{bad}`")),
                "{line}: {err}"
            );
        }
    }

    #[test]
    fn aliases_must_point_at_models() {
        let src = "[[models]]\nid = \"x\"\n[aliases]\nfoo = \"nope\"\n";
        let err = parse(src).unwrap_err().to_string();
        assert!(err.starts_with("models.toml:4: field `foo`"), "{err}");
    }
}
