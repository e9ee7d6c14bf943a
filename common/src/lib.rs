//! Types every cortex program shares: config schemas, the event schema, the
//! fleet status snapshot, API envelopes, the error envelope, histograms, the
//! `hf:` model source syntax. How the programs start and stop as processes
//! is `cortex-process`; the embedded default model is the neuron's.

pub mod anthropic;
pub mod completions;
pub mod config;
pub mod error;
pub mod event;
pub mod histogram;
pub mod hub_source;
pub mod neuron_api;
mod open_enum;
pub mod openai;
pub mod responses;
pub mod status;
pub mod translate;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
