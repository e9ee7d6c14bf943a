//! Anthropic Messages API envelopes (`POST /v1/messages`): the request the
//! Anthropic SDKs and Claude Code send, the message they expect back, the
//! streaming events they parse, and Anthropic's error shape.
//!
//! Requests are lenient about fields cortex does not use (`cache_control`,
//! `service_tier`, … are accepted and ignored) but strict about
//! the types of the ones it does. Translation to and from the OpenAI shapes
//! lives in the sibling `request`, `response` and `stream` modules.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::translate::SseEvent;

/// `POST /v1/messages` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<InputMessage>,
    /// Required by Anthropic's API, so required here too.
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// `{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`;
    /// kept as JSON so that a type cortex does not know is ignored, not
    /// rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
}

impl MessagesRequest {
    /// Whether the client switched thinking on or off (`None`: it did not
    /// say, or said something cortex does not understand).
    pub fn thinking_enabled(&self) -> Option<bool> {
        match self.thinking.as_ref()?.get("type")?.as_str()? {
            "enabled" => Some(true),
            "disabled" => Some(false),
            _ => None,
        }
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn has_tools(&self) -> bool {
        self.tools.as_ref().is_some_and(|t| !t.is_empty())
    }
}

/// `system`: a string, or a list of text blocks (Claude Code sends blocks
/// with `cache_control`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    Text(String),
    Blocks(Vec<SystemBlock>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SystemBlock {
    Text { text: String },
}

impl SystemBlock {
    pub fn text(&self) -> &str {
        match self {
            SystemBlock::Text { text } => text,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// One turn of `messages`. Anthropic allows `user` and `assistant`; a
/// `system` turn is accepted too (some clients send one) and kept in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputMessage {
    pub role: String,
    /// A string or a list of blocks; `null` is read as empty.
    #[serde(default, deserialize_with = "content_or_null")]
    pub content: Content,
}

fn content_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Content, D::Error> {
    Ok(Option::<Content>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

/// A content block, in requests and in responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        /// Always a JSON object on the wire.
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// The model's thinking, before its answer (from the neuron's
    /// `reasoning_content`). Clients echo it back in assistant turns;
    /// translation hands it back as the turn's `reasoning_content`.
    /// `signature` is empty: cortex does not sign thoughts.
    Thinking {
        thinking: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

impl ImageSource {
    /// The image as one URL (`data:` URL for inline images), the form
    /// OpenAI's `image_url` parts take.
    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
            ImageSource::Url { url } => url.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

/// A client tool. Server tools (`web_search_20250305`, …) carry a `type` and
/// no `input_schema`; translation rejects them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
    Tool {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
}

impl ToolChoice {
    /// `disable_parallel_tool_use`, where the choice has it.
    pub fn disable_parallel_tool_use(&self) -> Option<bool> {
        match self {
            ToolChoice::Auto {
                disable_parallel_tool_use,
            }
            | ToolChoice::Any {
                disable_parallel_tool_use,
            }
            | ToolChoice::Tool {
                disable_parallel_tool_use,
                ..
            } => *disable_parallel_tool_use,
            ToolChoice::None => None,
        }
    }
}

/// The non-streaming answer (also the `message` of `message_start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    pub id: String,
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `"assistant"`.
    pub role: String,
    pub content: Vec<ContentBlock>,
    pub model: String,
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    PauseTurn,
    Refusal,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u32>,
}

/// One server-sent event of a streaming `/v1/messages` answer. The SSE
/// `event:` name equals the `type` tag ([`StreamEvent::name`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: MessagesResponse,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: DeltaUsage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorDetail,
    },
}

impl SseEvent for StreamEvent {
    fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
            StreamEvent::Error { .. } => "error",
        }
    }

    fn data(&self) -> String {
        // A derived Serialize over strings, numbers and `Value`s cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta { text: String },
    InputJsonDelta { partial_json: String },
    ThinkingDelta { thinking: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDelta {
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
}

/// `message_delta.usage`: cumulative. `input_tokens` is optional in the
/// SDKs; cortex sends it because the prompt size is only known at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeltaUsage {
    pub output_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    /// Prompt tokens served from the neuron's prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u32>,
}

/// `{"type":"error","error":{"type","message"}}`, the body of every error
/// on the Anthropic surface (and the `data` of a streamed `error` event,
/// which has the same shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Always `"error"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub error: ErrorDetail,
}

impl ErrorResponse {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ErrorResponse {
            kind: "error".to_string(),
            error: ErrorDetail {
                kind,
                message: message.into(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub message: String,
}

/// Anthropic's error vocabulary, one HTTP status each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    PermissionError,
    NotFoundError,
    RequestTooLarge,
    RateLimitError,
    ApiError,
    OverloadedError,
}

impl ErrorType {
    /// The status Anthropic answers this type with.
    pub fn status(self) -> u16 {
        match self {
            ErrorType::InvalidRequestError => 400,
            ErrorType::AuthenticationError => 401,
            ErrorType::PermissionError => 403,
            ErrorType::NotFoundError => 404,
            ErrorType::RequestTooLarge => 413,
            ErrorType::RateLimitError => 429,
            ErrorType::ApiError => 500,
            ErrorType::OverloadedError => 529,
        }
    }

    /// The type for an HTTP status, as Anthropic documents it; unknown 4xx
    /// are `invalid_request_error`, unknown 5xx `api_error`.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 => ErrorType::AuthenticationError,
            403 => ErrorType::PermissionError,
            404 => ErrorType::NotFoundError,
            413 => ErrorType::RequestTooLarge,
            429 => ErrorType::RateLimitError,
            503 | 529 => ErrorType::OverloadedError,
            400..=499 => ErrorType::InvalidRequestError,
            _ => ErrorType::ApiError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the Python SDK sends for `client.messages.create(...)` with a
    /// tool loop in progress, and Claude Code-style system blocks.
    const SDK_REQUEST: &str = r#"{
        "model": "qwen2.5-0.5b",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief."}
        ],
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather by city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.2, "top_p": 0.9, "top_k": 40,
        "metadata": {"user_id": "u-1"},
        "stream": true,
        "thinking": {"type": "disabled"}
    }"#;

    #[test]
    fn sdk_request_parses_every_field() {
        let req: MessagesRequest = serde_json::from_str(SDK_REQUEST).unwrap();
        assert_eq!(req.max_tokens, 1024);
        assert!(req.is_stream() && req.has_tools());
        assert_eq!(req.thinking_enabled(), Some(false));
        match req.system.as_ref().unwrap() {
            SystemPrompt::Blocks(b) => assert_eq!(b[1].text(), "Be brief."),
            other => panic!("{other:?}"),
        }
        assert_eq!(req.messages.len(), 3);
        assert!(matches!(
            &req.messages[2].content,
            Content::Blocks(b) if matches!(&b[1], ContentBlock::Image { source: ImageSource::Base64 { .. } })
        ));
        assert_eq!(
            req.tool_choice,
            Some(ToolChoice::Auto {
                disable_parallel_tool_use: None
            })
        );
        assert_eq!(req.top_k, Some(40));
        assert_eq!(req.metadata.unwrap().user_id.as_deref(), Some("u-1"));
    }

    #[test]
    fn null_content_reads_as_empty() {
        let m: InputMessage =
            serde_json::from_str(r#"{"role":"assistant","content":null}"#).unwrap();
        assert_eq!(m.content, Content::Text(String::new()));
    }

    #[test]
    fn missing_max_tokens_is_rejected_like_anthropic() {
        let r = serde_json::from_str::<MessagesRequest>(r#"{"model":"m","messages":[]}"#);
        assert!(r.unwrap_err().to_string().contains("max_tokens"));
    }

    #[test]
    fn stream_events_serialize_as_the_sdk_parses_them() {
        let ev = StreamEvent::ContentBlockDelta {
            index: 1,
            delta: BlockDelta::InputJsonDelta {
                partial_json: "{\"city\":".into(),
            },
        };
        assert_eq!(
            ev.to_sse(),
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n"
        );
        assert_eq!(
            StreamEvent::MessageStop.data(),
            r#"{"type":"message_stop"}"#
        );
        assert_eq!(StreamEvent::Ping.name(), "ping");
    }

    #[test]
    fn error_types_have_anthropic_statuses() {
        let cases = [
            (400, ErrorType::InvalidRequestError, "invalid_request_error"),
            (401, ErrorType::AuthenticationError, "authentication_error"),
            (403, ErrorType::PermissionError, "permission_error"),
            (404, ErrorType::NotFoundError, "not_found_error"),
            (413, ErrorType::RequestTooLarge, "request_too_large"),
            (429, ErrorType::RateLimitError, "rate_limit_error"),
            (500, ErrorType::ApiError, "api_error"),
            (529, ErrorType::OverloadedError, "overloaded_error"),
        ];
        for (status, kind, name) in cases {
            assert_eq!(ErrorType::from_status(status), kind);
            assert_eq!(kind.status(), status);
            let body = serde_json::to_value(ErrorResponse::new(kind, "m")).unwrap();
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], name);
            assert_eq!(body["error"]["message"], "m");
        }
        assert_eq!(ErrorType::from_status(503), ErrorType::OverloadedError);
        assert_eq!(ErrorType::from_status(422), ErrorType::InvalidRequestError);
        assert_eq!(ErrorType::from_status(502), ErrorType::ApiError);
    }
}
