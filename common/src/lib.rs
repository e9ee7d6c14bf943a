//! Types every cortex program shares — the wire contract between them:
//! config schemas, the event schema, the fleet status snapshot, the
//! neuron's API (OpenAI chat completions and its own endpoints), the error
//! envelope, histograms and the `hf:` model source syntax. Translation to
//! other client APIs is the gateway's; the embedded default model is the
//! neuron's; how the programs start and stop as processes is
//! `cortex-process` (`common/process`).

pub mod config;
pub mod error;
pub mod event;
pub mod histogram;
pub mod hub_source;
pub mod neuron_api;
mod open_enum;
pub mod openai;
pub mod status;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
