//! `cortex.toml`: the gateway's settings — listeners, the neurons of the
//! fleet, the eviction strategy, auth, and where the model catalogue is.
//! Environment variables override the file (see [`ENV_OVERRIDES`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, deserialize_opt_duration, load_toml};

pub const DEFAULT_GATEWAY_LISTEN: &str = "0.0.0.0:31313";
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:31314";
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Environment variables that override the file, and the key each replaces.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("CORTEX_LISTEN", "gateway.listen"),
    ("CORTEX_METRICS_LISTEN", "gateway.metrics_listen"),
    ("CORTEX_MODELS_CONFIG", "models_config"),
    ("CORTEX_EVICTION_STRATEGY", "eviction.strategy"),
    ("CORTEX_ADMIN_TOKEN", "auth.admin_token"),
    ("CORTEX_API_KEYS", "auth.api_keys (comma-separated)"),
];

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Path of `models.toml`, relative to this file's folder. Default
    /// `models.toml` next to this file.
    #[serde(default)]
    pub models_config: Option<PathBuf>,
    #[serde(default)]
    pub gateway: GatewaySection,
    #[serde(default)]
    pub eviction: EvictionSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub neurons: Vec<NeuronEntry>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Client + admin API address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Prometheus metrics address.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
    /// Largest request body accepted; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Longest silence tolerated from a neuron while it answers (an idle
    /// read timeout — generations may take as long as they need in total).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub upstream_idle_timeout: Option<Duration>,
    /// Interval of SSE keepalive comments to a streaming client while its
    /// model loads or prefills.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub keepalive_interval: Option<Duration>,
    /// How long a request may wait for a model to become servable (cold
    /// load, room being made) before it is answered 503.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub queue_timeout: Option<Duration>,
    /// `Retry-After` seconds sent with 503 answers.
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u32,
    /// Requests that may wait per model at the gateway while every replica
    /// is full (beyond it: 503). Default 256.
    #[serde(default = "default_max_waiting")]
    pub max_waiting: u32,
    /// Requests that may wait at the gateway across all models (beyond it:
    /// 503). Default 1024.
    #[serde(default = "default_max_waiting_total")]
    pub max_waiting_total: u32,
    /// Fleet events kept for `Last-Event-ID` replay.
    #[serde(default = "default_event_buffer")]
    pub event_buffer: usize,
    /// Bytes (as JSON) the replay buffer may hold. Default 16 MiB.
    #[serde(default = "default_event_buffer_bytes")]
    pub event_buffer_bytes: usize,
    /// Longest a client may take to send a request's headers (slow-loris
    /// connections are closed after it; an idle keep-alive connection too).
    /// Default 30 s.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub header_read_timeout: Option<Duration>,
    /// Client connections open at once on `listen`; further ones wait to be
    /// accepted. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Interval of the per-model `histograms` events.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub histogram_interval: Option<Duration>,
    /// Where the gateway keeps state across restarts (runtime pins), relative
    /// to this file's folder. Default `$XDG_STATE_HOME/cortex`, else
    /// `~/.local/state/cortex`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

fn default_listen() -> String {
    DEFAULT_GATEWAY_LISTEN.to_string()
}
fn default_metrics_listen() -> String {
    DEFAULT_METRICS_LISTEN.to_string()
}
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_retry_after() -> u32 {
    2
}
fn default_max_waiting() -> u32 {
    256
}
fn default_event_buffer() -> usize {
    4096
}
fn default_max_waiting_total() -> u32 {
    1024
}
fn default_event_buffer_bytes() -> usize {
    16 << 20
}
fn default_max_connections() -> u32 {
    4096
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            listen: default_listen(),
            metrics_listen: default_metrics_listen(),
            max_body_bytes: default_max_body(),
            upstream_idle_timeout: None,
            keepalive_interval: None,
            queue_timeout: None,
            retry_after_secs: default_retry_after(),
            max_waiting: default_max_waiting(),
            max_waiting_total: default_max_waiting_total(),
            event_buffer: default_event_buffer(),
            event_buffer_bytes: default_event_buffer_bytes(),
            header_read_timeout: None,
            max_connections: default_max_connections(),
            histogram_interval: None,
            state_dir: None,
        }
    }
}

impl GatewaySection {
    pub fn upstream_idle_timeout(&self) -> Duration {
        self.upstream_idle_timeout
            .unwrap_or(Duration::from_secs(120))
    }
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive_interval.unwrap_or(Duration::from_secs(1))
    }
    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout.unwrap_or(Duration::from_secs(120))
    }
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout.unwrap_or(Duration::from_secs(30))
    }
    pub fn histogram_interval(&self) -> Duration {
        self.histogram_interval.unwrap_or(Duration::from_secs(5))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvictionStrategy {
    /// Least recently used resident goes first.
    #[default]
    Lru,
    /// Lowest `residency_priority` class goes first (least recently used
    /// within a class); a model only displaces its own class or lower.
    Priority,
}

impl EvictionStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionStrategy::Lru => "lru",
            EvictionStrategy::Priority => "priority",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "lru" => Some(EvictionStrategy::Lru),
            "priority" => Some(EvictionStrategy::Priority),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvictionSection {
    #[serde(default)]
    pub strategy: EvictionStrategy,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Bearer token of the admin API. Without one the admin API refuses
    /// every call.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Bearer keys accepted on the client API. Empty: the client API is open.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// The fleet's neuron token, sent to every neuron (`CORTEX_NEURON_TOKEN`
    /// wins; prefer `neuron_token_file` or the environment to a token in
    /// the file).
    #[serde(default)]
    pub neuron_token: Option<String>,
    /// A file whose first line is the neuron token (relative to this file).
    #[serde(default)]
    pub neuron_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuronEntry {
    pub name: String,
    /// `http://host:port` of the neuron.
    pub endpoint: String,
    /// This node's token, sent instead of the fleet's `[auth]
    /// neuron_token` (prefer `token_file`: a token written here is warned
    /// about, see [`GatewayConfig::warnings`]).
    #[serde(default)]
    pub token: Option<String>,
    /// A file whose first line is this node's token (relative to this
    /// file); after loading, `token` holds what it read.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl NeuronEntry {
    /// The token this node gets: its own, else the fleet's.
    pub fn effective_token<'a>(&'a self, auth: &'a AuthSection) -> Option<&'a str> {
        self.token
            .as_deref()
            .or(auth.neuron_token.as_deref())
            .map(str::trim)
    }
}

impl GatewayConfig {
    /// Reads and validates `path`; `models_config` comes back resolved
    /// against the file's folder. Environment overrides are separate
    /// ([`GatewayConfig::apply_env`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (cfg, source): (GatewayConfig, String) = load_toml(path)?;
        cfg.finish(path, &source)
    }

    /// Parses and validates text that came from `path`.
    pub fn parse(path: &Path, source: &str) -> Result<Self, ConfigError> {
        let cfg: GatewayConfig = super::parse_toml(path, source)?;
        cfg.finish(path, source)
    }

    fn finish(mut self, path: &Path, source: &str) -> Result<Self, ConfigError> {
        let g = Some(("gateway", 0));
        for (field, addr) in [
            ("listen", &self.gateway.listen),
            ("metrics_listen", &self.gateway.metrics_listen),
        ] {
            if let Err(msg) = check_addr(addr) {
                return Err(ConfigError::invalid_value(path, source, g, field, msg));
            }
        }
        if self.gateway.max_body_bytes == 0 {
            return Err(ConfigError::invalid_value(
                path,
                source,
                g,
                "max_body_bytes",
                "must be greater than 0",
            ));
        }
        for (field, value) in [
            ("event_buffer", self.gateway.event_buffer as u64),
            ("event_buffer_bytes", self.gateway.event_buffer_bytes as u64),
            ("max_waiting", u64::from(self.gateway.max_waiting)),
            (
                "max_waiting_total",
                u64::from(self.gateway.max_waiting_total),
            ),
            ("max_connections", u64::from(self.gateway.max_connections)),
            ("retry_after_secs", u64::from(self.gateway.retry_after_secs)),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid_value(
                    path,
                    source,
                    g,
                    field,
                    "must be greater than 0",
                ));
            }
        }
        if let Some(i) = self.auth.api_keys.iter().position(|k| k.trim().is_empty()) {
            return Err(ConfigError::invalid_value(
                path,
                source,
                Some(("auth", 0)),
                "api_keys",
                format!("key {} is empty; remove it or give it a value", i + 1),
            ));
        }
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut names = std::collections::HashSet::new();
        for (i, n) in self.neurons.iter_mut().enumerate() {
            let at = Some(("neurons", i));
            if n.name.trim().is_empty() {
                return Err(ConfigError::invalid_value(
                    path,
                    source,
                    at,
                    "name",
                    "must not be empty",
                ));
            }
            if !names.insert(n.name.clone()) {
                return Err(ConfigError::invalid_value(
                    path,
                    source,
                    at,
                    "name",
                    format!("neuron `{}` is declared twice", n.name),
                ));
            }
            if !(n.endpoint.starts_with("http://") || n.endpoint.starts_with("https://")) {
                return Err(ConfigError::invalid_value(
                    path,
                    source,
                    at,
                    "endpoint",
                    format!("`{}` must start with http:// or https://", n.endpoint),
                ));
            }
            n.endpoint = n.endpoint.trim_end_matches('/').to_string();
            if let Some(token) = &n.token
                && token.trim().is_empty()
            {
                return Err(ConfigError::invalid_value(
                    path,
                    source,
                    at,
                    "token",
                    "must not be empty (leave it out to use [auth] neuron_token)",
                ));
            }
            if let Some(file) = n.token_file.take() {
                if n.token.is_some() {
                    return Err(ConfigError::invalid_value(
                        path,
                        source,
                        at,
                        "token_file",
                        "set `token` or `token_file`, not both",
                    ));
                }
                let (file, token) = read_token_file(&dir, &file)
                    .map_err(|m| ConfigError::invalid_value(path, source, at, "token_file", m))?;
                n.token = Some(token);
                n.token_file = Some(file);
            }
        }
        if let Some(token) = &self.auth.admin_token
            && token.trim().is_empty()
        {
            return Err(ConfigError::invalid_value(
                path,
                source,
                Some(("auth", 0)),
                "admin_token",
                "must not be empty (leave it out, or set CORTEX_ADMIN_TOKEN)",
            ));
        }
        if let Some(token) = &self.auth.neuron_token
            && token.trim().is_empty()
        {
            return Err(ConfigError::invalid_value(
                path,
                source,
                Some(("auth", 0)),
                "neuron_token",
                "must not be empty (leave it out, or set CORTEX_NEURON_TOKEN)",
            ));
        }
        if let Some(file) = self.auth.neuron_token_file.take() {
            let (file, token) = read_token_file(&dir, &file).map_err(|m| {
                ConfigError::invalid_value(path, source, Some(("auth", 0)), "neuron_token_file", m)
            })?;
            self.auth.neuron_token.get_or_insert(token);
            self.auth.neuron_token_file = Some(file);
        }
        let models = self
            .models_config
            .take()
            .unwrap_or_else(|| PathBuf::from("models.toml"));
        self.models_config = Some(if models.is_absolute() {
            models
        } else {
            dir.join(models)
        });
        if let Some(state) = self.gateway.state_dir.take() {
            self.gateway.state_dir = Some(if state.is_absolute() {
                state
            } else {
                dir.join(state)
            });
        }
        Ok(self)
    }

    /// Applies the [`ENV_OVERRIDES`] found by `lookup` (normally
    /// `std::env::var`). Relative `CORTEX_MODELS_CONFIG` paths are taken
    /// from the working directory.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let env_err = |var: &str, message: String| ConfigError::Env {
            var: var.to_string(),
            message,
        };
        if let Some(v) = lookup("CORTEX_LISTEN") {
            check_addr(&v).map_err(|m| env_err("CORTEX_LISTEN", m))?;
            self.gateway.listen = v;
        }
        if let Some(v) = lookup("CORTEX_METRICS_LISTEN") {
            check_addr(&v).map_err(|m| env_err("CORTEX_METRICS_LISTEN", m))?;
            self.gateway.metrics_listen = v;
        }
        if let Some(v) = lookup("CORTEX_MODELS_CONFIG") {
            self.models_config = Some(PathBuf::from(v));
        }
        if let Some(v) = lookup("CORTEX_EVICTION_STRATEGY") {
            self.eviction.strategy = EvictionStrategy::parse(&v).ok_or_else(|| {
                env_err(
                    "CORTEX_EVICTION_STRATEGY",
                    format!("`{v}` is not a strategy; use lru or priority"),
                )
            })?;
        }
        if let Some(v) = lookup("CORTEX_NEURON_TOKEN") {
            if v.trim().is_empty() {
                return Err(env_err("CORTEX_NEURON_TOKEN", "must not be empty".into()));
            }
            self.auth.neuron_token = Some(v.trim().to_string());
        }
        if let Some(v) = lookup("CORTEX_ADMIN_TOKEN") {
            if v.trim().is_empty() {
                return Err(env_err("CORTEX_ADMIN_TOKEN", "must not be empty".into()));
            }
            self.auth.admin_token = Some(v);
        }
        if let Some(v) = lookup("CORTEX_API_KEYS") {
            self.auth.api_keys = v
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect();
        }
        Ok(())
    }

    /// The models file, resolved (see [`GatewayConfig::load`]).
    pub fn models_path(&self) -> PathBuf {
        self.models_config
            .clone()
            .unwrap_or_else(|| PathBuf::from("models.toml"))
    }

    /// Settings that work but that the operator should change: tokens
    /// written into the file itself (it tends to be shared and committed).
    pub fn warnings(&self) -> Vec<String> {
        self.neurons
            .iter()
            .filter(|n| n.token.is_some() && n.token_file.is_none())
            .map(|n| {
                format!(
                    "neuron `{}` has its token written in the config file; prefer `token_file`",
                    n.name
                )
            })
            .collect()
    }

    pub fn neuron_names(&self) -> Vec<String> {
        self.neurons.iter().map(|n| n.name.clone()).collect()
    }
}

/// Reads a token file (relative to `dir`): its first line, trimmed. The
/// error says what to fix.
fn read_token_file(dir: &Path, file: &Path) -> Result<(PathBuf, String), String> {
    let file = if file.is_absolute() {
        file.to_path_buf()
    } else {
        dir.join(file)
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    Ok((file, token))
}

/// `host:port` with a numeric port.
fn check_addr(addr: &str) -> Result<(), String> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("`{addr}` is not `host:port`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::parse(Path::new("/etc/cortex/cortex.toml"), src)
    }

    #[test]
    fn defaults_and_relative_models_path() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.gateway.listen, DEFAULT_GATEWAY_LISTEN);
        assert_eq!(cfg.gateway.metrics_listen, DEFAULT_METRICS_LISTEN);
        assert_eq!(cfg.eviction.strategy, EvictionStrategy::Lru);
        assert_eq!(cfg.models_path(), PathBuf::from("/etc/cortex/models.toml"));
        let cfg = parse("models_config = \"m/x.toml\"\n").unwrap();
        assert_eq!(cfg.models_path(), PathBuf::from("/etc/cortex/m/x.toml"));
    }

    #[test]
    fn full_file() {
        let cfg = parse(
            "models_config = \"models.toml\"\n[gateway]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             queue_timeout = \"30s\"\n[eviction]\nstrategy = \"priority\"\n[auth]\nadmin_token = \"t\"\napi_keys = [\"k\"]\n\
             [[neurons]]\nname = \"a\"\nendpoint = \"http://127.0.0.1:1/\"\n",
        )
        .unwrap();
        assert_eq!(cfg.eviction.strategy, EvictionStrategy::Priority);
        assert_eq!(cfg.gateway.queue_timeout(), Duration::from_secs(30));
        assert_eq!(cfg.neurons[0].endpoint, "http://127.0.0.1:1");
        assert_eq!(cfg.auth.api_keys, vec!["k".to_string()]);
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = parse("[eviction]\nstrategy = \"fifo\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/cortex/cortex.toml:2: field `strategy`"),
            "{err}"
        );
        let err = parse("[gateway]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2: field `listen`"), "{err}");
        let src = "[[neurons]]\nname = \"a\"\nendpoint = \"http://x:1\"\n[[neurons]]\nname = \"b\"\nendpoint = \"x:1\"\n";
        let err = parse(src).unwrap_err().to_string();
        assert!(err.contains(":6: field `endpoint`"), "{err}");
        let err = parse("[gateway]\nlisten = \"127.0.0.1:1\"\nlsiten = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3: field `lsiten`"), "{err}");
        let err = parse("[gateway]\nqueue_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2: field `queue_timeout`"), "{err}");
        for bad in [
            "keepalive_interval = \"0s\"",
            "keepalive_interval = \"99999999999999999999d\"",
            "max_connections = 0",
            "max_waiting_total = 0",
            "event_buffer_bytes = 0",
            "max_connections = 99999999999",
        ] {
            let field = bad.split(' ').next().unwrap();
            let err = parse(&format!("[gateway]\n\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!(":3: field `{field}`")),
                "{bad}: {err}"
            );
        }
        let err = parse("[auth]\napi_keys = [\"k\", \"\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":2: field `api_keys`") && err.contains("key 2 is empty"),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut cfg = parse("[auth]\nadmin_token = \"file\"\n").unwrap();
        let env = |k: &str| match k {
            "CORTEX_ADMIN_TOKEN" => Some("env".to_string()),
            "CORTEX_API_KEYS" => Some("a, b,".to_string()),
            "CORTEX_EVICTION_STRATEGY" => Some("priority".to_string()),
            "CORTEX_LISTEN" => Some("127.0.0.1:9".to_string()),
            _ => None,
        };
        cfg.apply_env(env).unwrap();
        assert_eq!(cfg.auth.admin_token.as_deref(), Some("env"));
        assert_eq!(cfg.auth.api_keys, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(cfg.eviction.strategy, EvictionStrategy::Priority);
        assert_eq!(cfg.gateway.listen, "127.0.0.1:9");
        let err = cfg
            .apply_env(|k| (k == "CORTEX_EVICTION_STRATEGY").then(|| "fifo".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CORTEX_EVICTION_STRATEGY"), "{err}");
    }

    #[test]
    fn the_neuron_token_from_the_file_a_token_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("cortex.toml");
        std::fs::write(dir.path().join("neuron.token"), "from-file\nignored\n").unwrap();
        let text = "[auth]\nneuron_token_file = \"neuron.token\"\n";
        let mut cfg = GatewayConfig::parse(&cfg_path, text).unwrap();
        assert_eq!(cfg.auth.neuron_token.as_deref(), Some("from-file"));
        cfg.apply_env(|k| (k == "CORTEX_NEURON_TOKEN").then(|| "from-env".to_string()))
            .unwrap();
        assert_eq!(cfg.auth.neuron_token.as_deref(), Some("from-env"));
        let err = cfg
            .apply_env(|k| (k == "CORTEX_NEURON_TOKEN").then(|| " ".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CORTEX_NEURON_TOKEN"), "{err}");
        let err = GatewayConfig::parse(&cfg_path, "[auth]\nneuron_token = \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2") && err.contains("neuron_token"), "{err}");
        let err = GatewayConfig::parse(&cfg_path, "[auth]\nneuron_token_file = \"missing\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("neuron_token_file") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn a_node_token_overrides_the_fleet_token() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("cortex.toml");
        std::fs::write(dir.path().join("b.token"), "bee\n").unwrap();
        let text = "[auth]\nneuron_token = \"fleet\"\n\
                    [[neurons]]\nname = \"a\"\nendpoint = \"http://x:1\"\n\
                    [[neurons]]\nname = \"b\"\nendpoint = \"http://y:1\"\ntoken_file = \"b.token\"\n\
                    [[neurons]]\nname = \"c\"\nendpoint = \"http://z:1\"\ntoken = \"sea\"\n";
        let cfg = GatewayConfig::parse(&cfg_path, text).unwrap();
        let tokens: Vec<_> = cfg
            .neurons
            .iter()
            .map(|n| n.effective_token(&cfg.auth))
            .collect();
        assert_eq!(tokens, vec![Some("fleet"), Some("bee"), Some("sea")]);
        let warnings = cfg.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("`c`") && warnings[0].contains("token_file"),
            "{warnings:?}"
        );

        let bad = |extra: &str| {
            let text = format!("[[neurons]]\nname = \"a\"\nendpoint = \"http://x:1\"\n{extra}");
            GatewayConfig::parse(&cfg_path, &text)
                .unwrap_err()
                .to_string()
        };
        let err = bad("token = \" \"\n");
        assert!(err.contains(":4: field `token`"), "{err}");
        let err = bad("token_file = \"missing.token\"\n");
        assert!(
            err.contains(":4: field `token_file`") && err.contains("missing.token"),
            "{err}"
        );
        let err = bad("token = \"t\"\ntoken_file = \"b.token\"\n");
        assert!(
            err.contains(":5: field `token_file`") && err.contains("not both"),
            "{err}"
        );
    }
}
