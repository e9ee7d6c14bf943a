//! Models from the Hugging Face Hub: `hf:ORG/NAME[/FILE.gguf][@REVISION]`
//! sources, fetched into the Hugging Face cache in the layout the Hub tools
//! share, so a model pulled by one is there for the others.
//!
//! - the `hf:` syntax is `cortex_common::hub_source` (the gateway checks models.toml with it);
//! - [`client`]: the Hub's HTTP API (metadata, ranged downloads).
//! - [`cache`]: one repo in the cache (blobs, snapshots, refs, locks).
//! - [`download`]: one file, resumed and verified.
//! - [`fetch`]: a whole source, online, offline, or from the cache when the
//!   Hub is unreachable.
//! - [`error`]: what went wrong, as a load reports it.
//!
//! The environment decides as for the Hub tools: `HF_ENDPOINT`, `HF_TOKEN`
//! (else the file `HF_TOKEN_PATH`, else `<HF_HOME>/token`),
//! `HF_HUB_OFFLINE`, and the cache (`HF_HUB_CACHE`, `HF_HOME`, …).

pub mod cache;
pub mod client;
pub mod download;
pub mod error;
pub mod fetch;

use std::path::{Path, PathBuf};

pub use cortex_common::hub_source::{HubSource, is_hub};
pub use error::HubError;

use super::hf_cache::{hf_cache_dir_with, hf_home_with};
use super::progress::ProgressFn;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How this neuron reaches the Hub; read once, at start.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Without a trailing `/`.
    pub endpoint: String,
    pub token: Option<HubToken>,
    /// Never touch the network: serve `hf:` sources from the cache only.
    pub offline: bool,
    /// Where models are kept; `None` when the environment names no place.
    pub cache_dir: Option<PathBuf>,
}

/// A Hub token: never shown in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct HubToken(String);

impl HubToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for HubToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubToken(…)")
    }
}

impl HubConfig {
    /// From the environment `env` reads (empty values count as unset).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let endpoint = env("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            || endpoint.contains(char::is_whitespace)
        {
            return Err(format!(
                "HF_ENDPOINT `{endpoint}` is not an http(s) URL (e.g. {DEFAULT_ENDPOINT})"
            ));
        }
        let token_file = env("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .or_else(|| hf_home_with(env).map(|h| h.join("token")));
        let token = env("HF_TOKEN")
            .or_else(|| {
                let text = std::fs::read_to_string(token_file?).ok()?;
                text.lines().next().map(str::to_string)
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(HubToken);
        let offline = env("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        Ok(HubConfig {
            endpoint,
            token,
            offline,
            cache_dir: hf_cache_dir_with(env),
        })
    }

    /// The cache directory, or why there is none.
    pub fn cache_dir(&self) -> Result<&Path, HubError> {
        self.cache_dir.as_deref().ok_or(HubError::NoCacheDir)
    }
}

/// Fetches `source` into the cache (what is missing of it) and returns its
/// path there. Blocking: call it from a thread of its own (the load's); the
/// transfer runs on a runtime of its own, never on the server's.
pub fn fetch_blocking(
    source: &HubSource,
    config: &HubConfig,
    progress: ProgressFn<'_>,
) -> Result<PathBuf, HubError> {
    let cache_dir = config.cache_dir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| HubError::Client(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(fetch::fetch(source, config, cache_dir, progress))
}

/// Bytes free for this user on the filesystem holding `dir`, when known.
fn free_space(dir: &Path) -> Option<u64> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let disks = sysinfo::Disks::new_with_refreshed_list();
    disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| d.available_space())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<HubConfig, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubConfig::from_env(&move |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_environment_decides_as_for_the_hub_tools() {
        let home = tempfile::tempdir().unwrap();
        let home_s = home.path().to_str().unwrap();
        let c = config(&[("HF_HOME", home_s)]).unwrap();
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert!(c.token.is_none() && !c.offline);
        assert_eq!(c.cache_dir, Some(home.path().join("hub")));

        std::fs::write(home.path().join("token"), "hf_file\n").unwrap();
        let c = config(&[
            ("HF_HOME", home_s),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HUB_OFFLINE", "True"),
        ])
        .unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
        assert_eq!(c.token.as_ref().map(HubToken::expose), Some("hf_file"));
        assert!(c.offline);
        assert!(!format!("{c:?}").contains("hf_file"));

        let c = config(&[("HF_HOME", home_s), ("HF_TOKEN", "hf_env")]).unwrap();
        assert_eq!(c.token.as_ref().map(HubToken::expose), Some("hf_env"));

        let err = config(&[("HF_ENDPOINT", "huggingface.co")]).unwrap_err();
        assert!(err.contains("HF_ENDPOINT"), "{err}");
    }
}
