//! The neuron's settings: defaults, then `neuron.toml`, then flags.

use std::path::PathBuf;

use clap::Parser;
use cortex_common::config::ConfigError;
use cortex_common::config::neuron::{
    DEFAULT_NEURON_LISTEN, DEFAULT_NEURON_LISTEN_NO_AUTH, NeuronConfig,
};

use crate::model::hub::HubConfig;
use crate::model::roots::ModelRoots;
use crate::server::ServerLimits;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "neuron",
    version,
    about = "cortex per-host inference daemon (candle, in-process)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings file (TOML); flags override it.
    #[arg(long, env = "NEURON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:13131 with a token,
    /// 127.0.0.1:13131 without].
    #[arg(long)]
    pub listen: Option<String>,
    /// Node name reported to the gateway [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Memory models may use, MiB [default: the device's memory].
    #[arg(long)]
    pub memory_limit_mb: Option<u64>,
    /// Sequences a device runs together in one batch [default: 8].
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Requests that may wait per model behind the running ones [default: 16].
    #[arg(long)]
    pub max_queue: Option<u32>,
    /// Device: cpu, cuda:N, metal:N [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads for the forward pass [default: the machine's cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Prompt-cache memory per model, MiB; 0 turns it off [default: 512].
    #[arg(long)]
    pub prompt_cache_mb: Option<u64>,
    /// File holding the neuron token (the token itself is never a flag:
    /// flags show in `ps`). `CORTEX_NEURON_TOKEN` wins over it.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Serve without a token on a non-loopback address: anyone who can
    /// reach it can load, unload and generate.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Load a model at start, `ID=SOURCE` or `SOURCE` (repeatable).
    #[arg(long = "preload")]
    pub preload: Vec<String>,
    /// A directory loads may read models from (repeatable; replaces
    /// `model_roots` of the settings file) [default: the cortex model cache
    /// and the Hugging Face cache].
    #[arg(long = "model-root", value_name = "DIR")]
    pub model_roots: Vec<PathBuf>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Measure decode speed and TTFT: the HTTP path against a bare candle loop.
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to install as neuron.1.
    Manpage,
    /// Fetch a model into the cache without loading it: `hf:ORG/NAME`,
    /// `hf:ORG/NAME/FILE.gguf` (optionally `@REVISION`) or `embedded`.
    /// Prints progress, then the model's path.
    Pull {
        /// The model source, as `/models/load` takes it.
        source: String,
    },
}

/// `neuron bench`: see [`crate::bench`].
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Model source (same forms as /models/load). The reference and
    /// llama.cpp columns need a GGUF llama model (the default).
    #[arg(long, default_value = "embedded")]
    pub source: String,
    /// Prompt tokens for the prefill measure.
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens to decode per run.
    #[arg(long, default_value_t = 128)]
    pub tokens: usize,
    /// Runs of each measure; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// CPU threads (default: the machine's cores), for every engine.
    #[arg(long)]
    pub threads: Option<usize>,
    /// A Python interpreter with llama-cpp-python installed (see
    /// neuron/benches/llama_cpp_bench.py); also `CORTEX_LLAMA_CPP_PYTHON`.
    #[arg(long, env = "CORTEX_LLAMA_CPP_PYTHON")]
    pub llama_cpp_python: Option<PathBuf>,
    /// Skip candle-transformers' reference implementation.
    #[arg(long)]
    pub no_reference: bool,
    /// Also measure continuous batching: 1, 2, 4, 8 concurrent streams, and
    /// running streams' token gaps while a long prompt arrives.
    #[arg(long)]
    pub concurrency: bool,
}

#[derive(Clone)]
pub struct Settings {
    pub listen: String,
    /// The token every route but `/health` requires, when set.
    pub token: Option<Token>,
    pub name: String,
    pub memory_limit_bytes: Option<u64>,
    pub max_queue: u32,
    pub max_body_bytes: usize,
    pub max_tokens_limit: Option<u32>,
    pub device: String,
    pub stats_interval_ms: u64,
    /// CPU threads for the kernels.
    pub threads: usize,
    pub runtime: crate::engine::registry::RuntimeOptions,
    /// Continuous batching on the device.
    pub batch: crate::engine::scheduler::BatchLimits,
    /// (id, source) pairs to load at start.
    pub preload: Vec<(String, String)>,
    /// The directories loads may read.
    pub model_roots: ModelRoots,
    /// How `hf:` sources reach the Hugging Face Hub (from `HF_*`).
    pub hub: HubConfig,
    /// Header timeout and connection cap of the HTTP server.
    pub server: ServerLimits,
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(s: &str) -> Option<Token> {
        let t = s.trim();
        (!t.is_empty()).then(|| Token(t.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("name", &self.name)
            .field("token", &self.token)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// Why the neuron's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error("CORTEX_NEURON_TOKEN is set but empty")]
    EmptyEnvToken,
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could load, unload \
         and generate. Set CORTEX_NEURON_TOKEN or token_file (--token-file), listen on \
         127.0.0.1, or pass --insecure-no-auth"
    )]
    OpenListener(String),
    #[error("{0}")]
    Hub(String),
}

/// True when `addr` (`host:port`) only accepts connections from this host.
pub fn is_loopback(addr: &str) -> bool {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return sa.ip().is_loopback();
    }
    addr.rsplit_once(':')
        .is_some_and(|(host, _)| host == "localhost")
}

impl Settings {
    pub fn from_cli(cli: &Cli) -> Result<Self, SettingsError> {
        Self::from_cli_env(cli, |k| std::env::var(k).ok())
    }

    pub fn from_cli_env(
        cli: &Cli,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let file = match &cli.config {
            Some(path) => NeuronConfig::load(path)?,
            None => NeuronConfig::default(),
        };
        let host = sysinfo::System::host_name().unwrap_or_else(|| "neuron".into());
        let cli = cli.clone();
        let preload = cli
            .preload
            .iter()
            .map(|p| match p.split_once('=') {
                Some((id, source)) => (id.to_string(), source.to_string()),
                None => (p.clone(), p.clone()),
            })
            .collect();
        let token = match env("CORTEX_NEURON_TOKEN") {
            Some(v) => Some(Token::new(&v).ok_or(SettingsError::EmptyEnvToken)?),
            None => match cli.token_file.clone().or(file.token_file.clone()) {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|source| {
                        SettingsError::TokenFile {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    let first = text.lines().next().unwrap_or("");
                    Some(Token::new(first).ok_or(SettingsError::EmptyToken(path))?)
                }
                None => None,
            },
        };
        let listen = match (cli.listen.clone().or(file.listen.clone()), &token) {
            (Some(l), _) => l,
            (None, Some(_)) => DEFAULT_NEURON_LISTEN.to_string(),
            // No credentials: loopback only, unless told otherwise.
            (None, None) if cli.insecure_no_auth => DEFAULT_NEURON_LISTEN.to_string(),
            (None, None) => DEFAULT_NEURON_LISTEN_NO_AUTH.to_string(),
        };
        if token.is_none() && !is_loopback(&listen) && !cli.insecure_no_auth {
            return Err(SettingsError::OpenListener(listen));
        }
        let model_roots = model_roots(&cli, &file);
        let hub = HubConfig::from_env(&|k| env(k).filter(|v| !v.is_empty()))
            .map_err(SettingsError::Hub)?;
        let server = {
            let d = ServerLimits::default();
            ServerLimits {
                header_read_timeout: file.header_read_timeout.unwrap_or(d.header_read_timeout),
                max_connections: file.max_connections.unwrap_or(d.max_connections),
                ..d
            }
        };
        Ok(Settings {
            listen,
            token,
            name: cli.name.or(file.name).unwrap_or(host),
            memory_limit_bytes: cli
                .memory_limit_mb
                .or(file.memory_limit_mb)
                .map(|mb| mb << 20),
            max_queue: cli.max_queue.or(file.max_queue).unwrap_or(16),
            max_body_bytes: file.max_body_bytes.unwrap_or(4 << 20),
            max_tokens_limit: file.max_tokens_limit,
            device: cli.device.or(file.device).unwrap_or_else(|| "cpu".into()),
            stats_interval_ms: file.stats_interval_ms.unwrap_or(1000),
            threads: cli
                .threads
                .or(file.threads)
                .filter(|n| *n > 0)
                .unwrap_or_else(neuron_kernels::threads),
            runtime: crate::engine::registry::RuntimeOptions {
                prompt_cache_bytes: cli
                    .prompt_cache_mb
                    .or(file.prompt_cache_mb)
                    .unwrap_or(512)
                    .saturating_mul(1 << 20),
                prefill_chunk: file
                    .prefill_chunk
                    .unwrap_or(crate::runtime::transformer::DEFAULT_PREFILL_CHUNK),
            },
            batch: {
                let d = crate::engine::scheduler::BatchLimits::default();
                crate::engine::scheduler::BatchLimits {
                    max_batch: cli.max_batch.or(file.max_batch).unwrap_or(d.max_batch),
                    max_batched_tokens: file.max_batched_tokens.unwrap_or(d.max_batched_tokens),
                    prefill_chunk: file.prefill_chunk.unwrap_or(d.prefill_chunk),
                    decode_stall: file
                        .decode_stall_ms
                        .map_or(d.decode_stall, std::time::Duration::from_millis),
                }
            },
            preload,
            model_roots,
            hub,
            server,
        })
    }
}

/// `--model-root` flags (relative to the working directory), else the file's
/// `model_roots` (relative to the file), else the defaults.
fn model_roots(cli: &Cli, file: &NeuronConfig) -> ModelRoots {
    let cwd = std::env::current_dir().unwrap_or_default();
    if !cli.model_roots.is_empty() {
        return ModelRoots::new(cli.model_roots.iter().map(|p| cwd.join(p)).collect());
    }
    match &file.model_roots {
        Some(dirs) => {
            let base = cli
                .config
                .as_deref()
                .and_then(std::path::Path::parent)
                .map(|p| cwd.join(p))
                .unwrap_or(cwd);
            ModelRoots::new(dirs.iter().map(|p| base.join(p)).collect())
        }
        None => ModelRoots::defaults(),
    }
}
