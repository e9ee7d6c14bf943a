//! Types every cortex program shares — the wire contract between them:
//! config schemas, the event schema, the fleet status snapshot, the
//! neuron's API (OpenAI chat completions and its own endpoints), the error
//! envelope, histograms, the `hf:` model source syntax, and the embedded
//! default model. Translation to other client APIs is the gateway's.

pub mod config;
pub mod embedded;
pub mod error;
pub mod event;
pub mod histogram;
pub mod hub_source;
pub mod launch;
pub mod neuron_api;
pub mod openai;
pub mod shutdown;
pub mod status;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
