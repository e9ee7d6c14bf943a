//! Translation between the API surfaces cortex serves and the OpenAI Chat
//! Completions shape the neurons speak.
//!
//! Each surface's wire shapes are in its `schema` module.
//!
//! | client surface | request → chat | chat → response | chat stream → events |
//! |---|---|---|---|
//! | Anthropic `/v1/messages` | [`anthropic::request::to_chat_request`] | [`anthropic::response::to_anthropic_response`] | [`anthropic::stream::AnthropicStream`] |
//! | OpenAI `/v1/responses` | [`responses::request::to_chat_request`] | [`responses::response::to_responses_response`] | [`responses::stream::ResponsesStream`] |
//! | OpenAI `/v1/completions` | [`completions::to_chat_request`] | [`completions::to_completion_response`] | [`completions::CompletionStream`] |
//!
//! Errors: [`anthropic::error`] turns cortex's [`ApiError`] into Anthropic's
//! shape.
//!
//! System prompts are never injected, rewritten or merged into other turns:
//! a top-level Anthropic `system` (or Responses `instructions`) becomes ONE
//! leading `system` message, verbatim; a `system` given as several text
//! blocks is joined with [`SYSTEM_BLOCK_SEPARATOR`] (the blocks' own text is
//! untouched). No system message is added when the client sent none.
//!
//! Tool calls arrive structured: the neuron parses the ones a model writes
//! as text, so text is only ever text here.

pub mod anthropic;
pub mod completions;
pub mod responses;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use cortex_common::error::ApiError;

/// Between the text blocks of a block-list `system` prompt.
pub const SYSTEM_BLOCK_SEPARATOR: &str = "\n\n";

/// Why a request could not be translated: always the client's fault (a 400
/// `invalid_request_error`), with a message naming the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TranslateError {
    /// Machine-readable, e.g. `unsupported_tool`.
    pub code: &'static str,
    pub message: String,
}

impl TranslateError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        TranslateError {
            code,
            message: message.into(),
        }
    }
}

impl From<TranslateError> for ApiError {
    fn from(e: TranslateError) -> Self {
        ApiError::invalid(e.code, e.message)
    }
}

/// One SSE frame: `event: NAME\ndata: DATA\n\n`. `data` must be one line
/// (compact JSON is).
pub fn sse_frame(name: &str, data: &str) -> String {
    let mut s = String::with_capacity(name.len() + data.len() + 16);
    s.push_str("event: ");
    s.push_str(name);
    s.push_str("\ndata: ");
    s.push_str(data);
    s.push_str("\n\n");
    s
}

/// A fresh id `PREFIX` + 24 base-62 characters (`msg_…`, `toolu_…`,
/// `call_…`, `resp_…`). Unique per process and random across processes; not
/// a secret.
pub fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = String::with_capacity(prefix.len() + 24);
    out.push_str(prefix);
    for round in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(round);
        let mut x = h.finish();
        for _ in 0..12 {
            out.push(ALPHABET[(x % 62) as usize] as char);
            x /= 62;
        }
    }
    out
}

/// The part of an upstream id after its OpenAI prefix (`chatcmpl-abc` →
/// `abc`), so a translated id stays traceable to the neuron's.
pub(crate) fn id_suffix(id: &str) -> &str {
    id.strip_prefix("chatcmpl-")
        .or_else(|| id.strip_prefix("cmpl-"))
        .unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = new_id("toolu_");
        let b = new_id("toolu_");
        assert!(a.starts_with("toolu_") && a.len() == 30);
        assert_ne!(a, b);
        assert_eq!(id_suffix("chatcmpl-xyz"), "xyz");
        assert_eq!(id_suffix("other"), "other");
    }

    #[test]
    fn translate_errors_are_invalid_requests() {
        let e: ApiError = TranslateError::new("unsupported_tool", "nope").into();
        assert_eq!(e.status(), 400);
        assert_eq!(e.code, "unsupported_tool");
    }
}
