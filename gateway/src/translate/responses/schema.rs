//! OpenAI Responses API envelopes (`POST /v1/responses`), stateless subset:
//! the request, the response object, and the typed streaming events (each
//! with its `sequence_number`).
//!
//! cortex stores nothing: `previous_response_id` and item references are
//! rejected by translation, `store` is accepted and answered `false`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::translate::SseEvent;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Input,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `"auto"`, `"none"`, `"required"` or `{"type":"function","name":…}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{"effort": "low", "summary": …}`: `effort` is the chat request's
    /// `reasoning_effort`; `summary` is not produced (the thought itself is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ResponsesRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn has_tools(&self) -> bool {
        self.tools.as_ref().is_some_and(|t| !t.is_empty())
    }
}

/// A request's `reasoning` settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasoningConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// `input`: one user string, or a list of items.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<InputItem>),
}

impl<'de> Deserialize<'de> for Input {
    /// Items may omit `"type"` (an easy message `{"role","content"}`); it
    /// defaults to `"message"`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Input::Text(s)),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, mut item)| {
                    if let Value::Object(obj) = &mut item {
                        obj.entry("type")
                            .or_insert_with(|| Value::String("message".into()));
                    }
                    serde_json::from_value(item)
                        .map_err(|e| D::Error::custom(format!("input[{i}]: {e}")))
                })
                .collect::<Result<_, _>>()
                .map(Input::Items),
            _ => Err(D::Error::custom(
                "input: expected a string or an array of items",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputItem {
    Message {
        role: String,
        content: InputContent,
    },
    FunctionCall {
        call_id: String,
        name: String,
        /// A JSON document, as a string.
        arguments: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    FunctionCallOutput {
        call_id: String,
        output: FunctionOutput,
    },
    /// Reasoning items echoed back by clients; translation hands their
    /// text back as the next assistant turn's `reasoning_content`.
    Reasoning(Map<String, Value>),
    /// A stored item; cortex stores none, so translation rejects it.
    ItemReference {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputContent {
    Text(String),
    Parts(Vec<InputPart>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputPart {
    InputText {
        text: String,
    },
    InputImage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Earlier assistant output sent back as input.
    OutputText {
        text: String,
    },
    Refusal {
        refusal: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FunctionOutput {
    Text(String),
    Parts(Vec<InputPart>),
}

/// A tool: `{"type":"function","name","description","parameters","strict"}`
/// (flat, unlike Chat Completions). Hosted tools are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// The response object (non-streaming answer; also carried by the
/// `response.created` / `.in_progress` / `.completed` events). Optional
/// fields serialise as `null`, as OpenAI sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseObject {
    pub id: String,
    /// Always `"response"`.
    pub object: String,
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub status: String,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u32>,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub store: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub tool_choice: Value,
    pub tools: Vec<Tool>,
    pub text: Value,
    pub truncation: String,
    pub usage: Option<ResponseUsage>,
    pub user: Option<String>,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    Message {
        id: String,
        /// `in_progress` or `completed`.
        status: String,
        role: String,
        content: Vec<OutputContent>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: String,
    },
    /// The model's thinking, before the message (the shape OpenAI gives
    /// open-weight reasoning models: text in `content`, no summary).
    Reasoning {
        id: String,
        summary: Vec<Value>,
        content: Vec<ReasoningContent>,
        status: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReasoningContent {
    ReasoningText { text: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    OutputText {
        text: String,
        #[serde(default)]
        annotations: Vec<Value>,
    },
    Refusal {
        refusal: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseUsage {
    pub input_tokens: u32,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u32,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputTokensDetails {
    pub cached_tokens: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u32,
}

/// One streamed event: `event: <type>`, `data: <this as JSON>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEvent {
    pub sequence_number: u64,
    #[serde(flatten)]
    pub kind: StreamEventKind,
}

impl SseEvent for StreamEvent {
    /// The event's `type`.
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn data(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum StreamEventKind {
    #[serde(rename = "response.created")]
    Created { response: Box<ResponseObject> },
    #[serde(rename = "response.in_progress")]
    InProgress { response: Box<ResponseObject> },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded { output_index: u32, item: OutputItem },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        item_id: String,
        output_index: u32,
        content_index: u32,
        part: OutputContent,
    },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        item_id: String,
        output_index: u32,
        content_index: u32,
        delta: String,
        logprobs: Vec<Value>,
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        item_id: String,
        output_index: u32,
        content_index: u32,
        text: String,
        logprobs: Vec<Value>,
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        item_id: String,
        output_index: u32,
        content_index: u32,
        part: OutputContent,
    },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningTextDelta {
        item_id: String,
        output_index: u32,
        content_index: u32,
        delta: String,
    },
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningTextDone {
        item_id: String,
        output_index: u32,
        content_index: u32,
        text: String,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        item_id: String,
        output_index: u32,
        delta: String,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        item_id: String,
        output_index: u32,
        arguments: String,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone { output_index: u32, item: OutputItem },
    #[serde(rename = "response.completed")]
    Completed { response: Box<ResponseObject> },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: Box<ResponseObject> },
    #[serde(rename = "response.failed")]
    Failed { response: Box<ResponseObject> },
    #[serde(rename = "error")]
    Error {
        code: Option<String>,
        message: String,
        param: Option<String>,
    },
}

impl StreamEventKind {
    pub fn name(&self) -> &'static str {
        match self {
            StreamEventKind::Created { .. } => "response.created",
            StreamEventKind::InProgress { .. } => "response.in_progress",
            StreamEventKind::OutputItemAdded { .. } => "response.output_item.added",
            StreamEventKind::ContentPartAdded { .. } => "response.content_part.added",
            StreamEventKind::OutputTextDelta { .. } => "response.output_text.delta",
            StreamEventKind::OutputTextDone { .. } => "response.output_text.done",
            StreamEventKind::ContentPartDone { .. } => "response.content_part.done",
            StreamEventKind::ReasoningTextDelta { .. } => "response.reasoning_text.delta",
            StreamEventKind::ReasoningTextDone { .. } => "response.reasoning_text.done",
            StreamEventKind::FunctionCallArgumentsDelta { .. } => {
                "response.function_call_arguments.delta"
            }
            StreamEventKind::FunctionCallArgumentsDone { .. } => {
                "response.function_call_arguments.done"
            }
            StreamEventKind::OutputItemDone { .. } => "response.output_item.done",
            StreamEventKind::Completed { .. } => "response.completed",
            StreamEventKind::Incomplete { .. } => "response.incomplete",
            StreamEventKind::Failed { .. } => "response.failed",
            StreamEventKind::Error { .. } => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What openai-python sends for `client.responses.create(...)` in a
    /// function-calling loop.
    const SDK_REQUEST: &str = r#"{
        "model": "qwen2.5-0.5b",
        "instructions": "Answer tersely.",
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "15C"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "and?"},
                                                           {"type": "input_image", "image_url": "data:image/png;base64,AA==", "detail": "auto"}]}
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "d",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
        "tool_choice": "auto", "max_output_tokens": 64, "temperature": 0.5, "top_p": 0.9, "stream": true,
        "store": false, "metadata": {"k": "v"}, "reasoning": {"effort": null}, "text": {"format": {"type": "text"}}
    }"#;

    #[test]
    fn sdk_request_parses() {
        let req: ResponsesRequest = serde_json::from_str(SDK_REQUEST).unwrap();
        let Input::Items(items) = &req.input else {
            panic!("items")
        };
        assert_eq!(items.len(), 4);
        assert!(
            matches!(&items[0], InputItem::Message { role, content: InputContent::Text(t) } if role == "user" && t == "Weather in Paris?")
        );
        assert!(
            matches!(&items[2], InputItem::FunctionCallOutput { output: FunctionOutput::Text(o), .. } if o == "15C")
        );
        assert!(req.is_stream() && req.has_tools());
        assert_eq!(req.max_output_tokens, Some(64));
        let req: ResponsesRequest = serde_json::from_str(r#"{"model":"m","input":"hi"}"#).unwrap();
        assert_eq!(req.input, Input::Text("hi".into()));
        let err =
            serde_json::from_str::<ResponsesRequest>(r#"{"model":"m","input":[{"type":"bogus"}]}"#)
                .unwrap_err();
        assert!(err.to_string().contains("input[0]"), "{err}");
    }

    #[test]
    fn events_carry_type_and_sequence_number() {
        let ev = StreamEvent {
            sequence_number: 4,
            kind: StreamEventKind::OutputTextDelta {
                item_id: "msg_1".into(),
                output_index: 0,
                content_index: 0,
                delta: "Hi".into(),
                logprobs: vec![],
            },
        };
        let v: Value = serde_json::from_str(&ev.data()).unwrap();
        assert_eq!(
            v,
            json!({"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1",
                   "output_index":0,"content_index":0,"delta":"Hi","logprobs":[]})
        );
        assert!(
            ev.to_sse()
                .starts_with("event: response.output_text.delta\ndata: {")
        );
        let back: StreamEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }
}
