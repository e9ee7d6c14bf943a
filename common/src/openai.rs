//! OpenAI Chat Completions envelopes: what clients send and what the neuron
//! (and, passed through, the gateway) answers.
//!
//! Request types are lenient about fields they do not use (OpenAI SDKs send
//! many) but strict about the types of the ones they do.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Not in OpenAI's API; accepted as an extension (llama.cpp, vLLM do too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Extension: multiplicative repetition penalty (1.0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `"none"`, `"auto"`, `"required"` or
    /// `{"type": "function", "function": {"name": …}}` (see
    /// [`ChatCompletionRequest::tool_choice`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// `false`: at most one tool call per answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Extension (vLLM, llama.cpp): extra variables for the model's chat
    /// template, e.g. `{"enable_thinking": false}` for Qwen3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    /// `none`, `minimal`, `low`, `medium` or `high`: how much the model
    /// may think (see [`ReasoningEffort`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Extension (the name of Qwen's own API): the most tokens the model
    /// may think before its thought is closed and it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u32>,
}

/// Whether and how the model must call a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (the default with tools).
    Auto,
    /// No calls: text that looks like one stays text.
    None,
    /// At least one call.
    Required,
    /// A call of this function.
    Function(String),
}

/// `reasoning_effort`: how much thinking a request allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
}

impl ReasoningEffort {
    pub const NAMES: [&str; 5] = ["none", "minimal", "low", "medium", "high"];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "none" => ReasoningEffort::None,
            "minimal" => ReasoningEffort::Minimal,
            "low" => ReasoningEffort::Low,
            "medium" => ReasoningEffort::Medium,
            "high" => ReasoningEffort::High,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl ChatCompletionRequest {
    /// `max_completion_tokens` (current name) wins over `max_tokens` (legacy).
    pub fn max_new_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// `tool_choice` read; `Err` says what is wrong with it. Absent is
    /// `auto`.
    pub fn tool_choice(&self) -> Result<ToolChoice, String> {
        let Some(choice) = &self.tool_choice else {
            return Ok(ToolChoice::Auto);
        };
        match choice {
            Value::String(s) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" => Ok(ToolChoice::Required),
                other => Err(format!(
                    "`{other}` is not a choice; use \"none\", \"auto\", \"required\" or \
                     {{\"type\": \"function\", \"function\": {{\"name\": …}}}}"
                )),
            },
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
                match o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                {
                    Some(name) if !name.is_empty() => Ok(ToolChoice::Function(name.to_string())),
                    _ => Err("a function choice needs `function.name`".to_string()),
                }
            }
            _ => Err("must be \"none\", \"auto\", \"required\" or \
                 {\"type\": \"function\", \"function\": {\"name\": …}}"
                .to_string()),
        }
    }

    /// The names of the function tools offered.
    pub fn tool_names(&self) -> Vec<&str> {
        self.tools
            .iter()
            .flatten()
            .filter_map(|t| t.get("function")?.get("name")?.as_str())
            .collect()
    }

    pub fn stop_sequences(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(StopSequences::One(s)) => vec![s.clone()],
            Some(StopSequences::Many(v)) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// `null` is valid (assistant turns that only carry tool calls).
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The model's thinking, apart from its answer (the convention of vLLM,
    /// DeepSeek and llama.cpp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl ChatMessage {
    pub fn text(role: &str, text: &str) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: Some(MessageContent::Text(text.to_string())),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text of the content; `None` when a part is not text (images…).
    pub fn as_text(&self) -> Option<String> {
        match self {
            MessageContent::Text(s) => Some(s.clone()),
            MessageContent::Parts(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part.kind.as_str() {
                        "text" | "input_text" => out.push_str(part.text.as_deref().unwrap_or("")),
                        _ => return None,
                    }
                }
                Some(out)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `{"url": "...", "detail"?: "..."}` on `image_url` parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// A JSON document, as a string (OpenAI's convention).
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// `cached_tokens`: prompt tokens the prompt cache served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// `reasoning_tokens`: completion tokens the model spent thinking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: None,
            completion_tokens_details: None,
        }
    }

    pub fn with_reasoning(mut self, reasoning_tokens: u32) -> Self {
        self.completion_tokens_details = Some(CompletionTokensDetails { reasoning_tokens });
        self
    }

    /// Completion tokens spent thinking (0 when not reported).
    pub fn reasoning_tokens(&self) -> u32 {
        self.completion_tokens_details
            .map(|d| d.reasoning_tokens)
            .unwrap_or(0)
    }

    pub fn with_cached(mut self, cached_tokens: u32) -> Self {
        self.prompt_tokens_details = Some(PromptTokensDetails { cached_tokens });
        self
    }

    /// Prompt tokens the prompt cache served (0 when not reported).
    pub fn cached_tokens(&self) -> u32 {
        self.prompt_tokens_details
            .map(|d| d.cached_tokens)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: ChatMessage,
    pub finish_reason: Option<FinishReason>,
    /// Extension (vLLM's convention): the stop sequence that ended the
    /// answer, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: ChunkDelta,
    pub finish_reason: Option<FinishReason>,
    /// Extension: the stop sequence that ended the answer (final chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A fragment of the model's thinking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// One fragment of a streamed tool call (`choices[].delta.tool_calls[]`):
/// the first fragment of a call carries `id` and `function.name`, later
/// ones append to `function.arguments`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of this choice the fragment belongs to.
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `GET /v1/models` list shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelCard>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    /// cortex extension: where the model is loaded and where it could be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cortex: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let req: ChatCompletionRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"max_tokens":10,"max_completion_tokens":3}"#,
        )
        .unwrap();
        assert_eq!(req.max_new_tokens(), Some(3));
        let req: ChatCompletionRequest =
            serde_json::from_str(r#"{"model":"m","messages":[],"max_tokens":10}"#).unwrap();
        assert_eq!(req.max_new_tokens(), Some(10));
    }

    #[test]
    fn null_content_and_parts_parse() {
        let req: ChatCompletionRequest = serde_json::from_str(
            r#"{"model":"m","messages":[
                {"role":"assistant","content":null},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}
            ],"stop":"x"}"#,
        )
        .unwrap();
        assert!(req.messages[0].content.is_none());
        assert_eq!(
            req.messages[1]
                .content
                .as_ref()
                .unwrap()
                .as_text()
                .as_deref(),
            Some("ab")
        );
        assert_eq!(req.stop_sequences(), vec!["x".to_string()]);
    }

    #[test]
    fn tool_choices_read_and_bad_ones_say_why() {
        let with = |choice: Value| ChatCompletionRequest {
            tool_choice: Some(choice),
            ..Default::default()
        };
        assert_eq!(
            ChatCompletionRequest::default().tool_choice(),
            Ok(ToolChoice::Auto)
        );
        assert_eq!(
            with(Value::from("none")).tool_choice(),
            Ok(ToolChoice::None)
        );
        assert_eq!(
            with(Value::from("required")).tool_choice(),
            Ok(ToolChoice::Required)
        );
        assert_eq!(
            with(serde_json::json!({"type": "function", "function": {"name": "f"}})).tool_choice(),
            Ok(ToolChoice::Function("f".into()))
        );
        for bad in [
            Value::from("any"),
            serde_json::json!({"type": "function"}),
            serde_json::json!({"type": "allowed_tools"}),
            Value::from(3),
        ] {
            assert!(with(bad.clone()).tool_choice().is_err(), "{bad}");
        }
    }

    #[test]
    fn reasoning_efforts_round_trip() {
        for name in ReasoningEffort::NAMES {
            assert_eq!(ReasoningEffort::parse(name).map(|e| e.name()), Some(name));
        }
        assert_eq!(ReasoningEffort::parse("max"), None);
    }

    #[test]
    fn image_parts_have_no_text() {
        let c: MessageContent =
            serde_json::from_str(r#"[{"type":"image_url","image_url":{"url":"x"}}]"#).unwrap();
        assert_eq!(c.as_text(), None);
    }
}
