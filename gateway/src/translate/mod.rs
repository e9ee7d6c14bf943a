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
use cortex_common::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatMessage, FinishReason, StreamOptions,
    ToolCallDelta, Usage,
};
use serde_json::{Value, json};

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

/// A streamed event of a translated surface, sent as one SSE frame.
pub trait SseEvent {
    /// The SSE `event:` field.
    fn name(&self) -> &'static str;
    /// The JSON `data:` payload (one line).
    fn data(&self) -> String;
    /// The whole frame: `event: NAME\ndata: JSON\n\n`.
    fn to_sse(&self) -> String {
        sse_frame(self.name(), &self.data())
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

/// The chat request every translated request starts from: the model, the
/// turns, and `stream` as the client set it — a stream asks for usage in
/// its last chunk, which the translated streams report at their end.
pub fn chat_request(
    model: &str,
    messages: Vec<ChatMessage>,
    stream: Option<bool>,
) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: model.to_string(),
        messages,
        stream,
        stream_options: (stream == Some(true)).then_some(StreamOptions {
            include_usage: Some(true),
        }),
        ..Default::default()
    }
}

/// A surface's tool list in chat's shape, tool by tool (`each` gets the
/// index, for errors that name the offending tool).
pub fn chat_tools<T>(
    tools: Option<&[T]>,
    each: impl Fn(usize, &T) -> Result<Value, TranslateError>,
) -> Result<Option<Vec<Value>>, TranslateError> {
    tools
        .map(|tools| tools.iter().enumerate().map(|(i, t)| each(i, t)).collect())
        .transpose()
}

/// A chat tool: `{"type":"function","function":{name, description?, …}}`.
pub fn chat_tool(mut function: Value, description: Option<&String>) -> Value {
    if let Some(d) = description {
        function["description"] = Value::String(d.clone());
    }
    json!({ "type": "function", "function": function })
}

/// What one upstream chunk adds, as the stream translators read it:
/// choice 0's thinking and text (empty ones left out), its tool-call
/// fragments, finish reason and the stop sequence that ended it (when the
/// upstream says which), and the usage when the chunk carries it.
#[derive(Debug, Default)]
pub struct ChunkParts<'a> {
    pub usage: Option<&'a Usage>,
    pub reasoning: Option<&'a str>,
    pub text: Option<&'a str>,
    pub calls: &'a [ToolCallDelta],
    pub finish: Option<FinishReason>,
    pub stop_sequence: Option<&'a str>,
}

impl<'a> ChunkParts<'a> {
    pub fn of(chunk: &'a ChatCompletionChunk) -> Self {
        let choice = chunk.choices.iter().find(|c| c.index == 0);
        let delta = choice.map(|c| &c.delta);
        let said = |t: Option<&'a String>| t.map(String::as_str).filter(|t| !t.is_empty());
        ChunkParts {
            usage: chunk.usage.as_ref(),
            reasoning: said(delta.and_then(|d| d.reasoning_content.as_ref())),
            text: said(delta.and_then(|d| d.content.as_ref())),
            calls: delta
                .and_then(|d| d.tool_calls.as_deref())
                .unwrap_or_default(),
            finish: choice.and_then(|c| c.finish_reason),
            stop_sequence: choice.and_then(|c| c.stop_reason.as_deref()),
        }
    }
}

/// One streamed tool-call fragment as the stream translators read it: the
/// call it opens, if any (id and name), and its piece of the arguments.
#[derive(Debug, PartialEq)]
pub struct Fragment<'a> {
    pub opens: Option<(String, String)>,
    pub arguments: Option<&'a str>,
}

impl<'a> Fragment<'a> {
    /// `open` is the upstream index of the call being streamed, if one is.
    /// A fragment opens a call when it names another index or brings an id;
    /// an opening without an id gets a fresh one (`id_prefix`…).
    pub fn of(call: &'a ToolCallDelta, open: Option<u32>, id_prefix: &str) -> Self {
        let function = call.function.as_ref();
        let opens = (open != Some(call.index) || call.id.is_some()).then(|| {
            (
                call.id.clone().unwrap_or_else(|| new_id(id_prefix)),
                function.and_then(|f| f.name.clone()).unwrap_or_default(),
            )
        });
        Fragment {
            opens,
            arguments: function
                .and_then(|f| f.arguments.as_deref())
                .filter(|a| !a.is_empty()),
        }
    }
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
    fn chunk_parts_leave_out_empty_text_and_other_choices() {
        let chunk: ChatCompletionChunk = serde_json::from_value(serde_json::json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [
                {"index": 1, "delta": {"content": "other"}, "finish_reason": "length"},
                {"index": 0, "delta": {"content": "", "reasoning_content": "hm"}, "finish_reason": "stop"}
            ]
        }))
        .unwrap();
        let p = ChunkParts::of(&chunk);
        assert_eq!((p.text, p.reasoning), (None, Some("hm")));
        assert_eq!(p.finish, Some(FinishReason::Stop));
        assert!(p.calls.is_empty() && p.usage.is_none());
    }

    #[test]
    fn fragments_open_a_call_on_a_new_index_or_an_id() {
        let first: ToolCallDelta = serde_json::from_value(serde_json::json!(
            {"index": 0, "function": {"name": "f", "arguments": ""}}
        ))
        .unwrap();
        let f = Fragment::of(&first, None, "toolu_");
        let (id, name) = f.opens.unwrap();
        assert!(id.starts_with("toolu_") && name == "f");
        assert_eq!(f.arguments, None);
        let more: ToolCallDelta = serde_json::from_value(serde_json::json!(
            {"index": 0, "function": {"arguments": "{}"}}
        ))
        .unwrap();
        assert_eq!(
            Fragment::of(&more, Some(0), "toolu_"),
            Fragment {
                opens: None,
                arguments: Some("{}")
            }
        );
        assert!(Fragment::of(&more, Some(1), "toolu_").opens.is_some());
    }

    #[test]
    fn translate_errors_are_invalid_requests() {
        let e: ApiError = TranslateError::new("unsupported_tool", "nope").into();
        assert_eq!(e.status(), 400);
        assert_eq!(e.code, "unsupported_tool");
    }
}
