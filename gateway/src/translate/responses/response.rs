//! OpenAI `ChatCompletionResponse` → Responses `ResponseObject`, and the
//! response-object builder the stream translator shares.
//!
//! Kept: the first choice's reasoning (one `reasoning` item first, omitted
//! when empty), its text (one `message` output item with one
//! `output_text` part, omitted when empty), every tool call (one
//! `function_call` item each, `call_id` = the upstream call id), usage, and
//! the request parameters the response object echoes (instructions,
//! max_output_tokens, temperature, top_p, tools, tool_choice,
//! parallel_tool_calls, metadata, user). `finish_reason: "length"` makes the
//! response `incomplete` with reason `max_output_tokens`.

use serde_json::{Map, Value, json};

use crate::translate::anthropic::response::text_of;
use crate::translate::new_id;
use crate::translate::responses::schema::{
    IncompleteDetails, InputTokensDetails, OutputContent, OutputItem, OutputTokensDetails,
    ReasoningContent, ResponseError, ResponseObject, ResponseUsage, ResponsesRequest, Tool,
};
use cortex_common::openai::{ChatCompletionResponse, FinishReason, Usage};

/// The request-side facts a response object reports back.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesContext {
    /// `resp_…`, fixed before the upstream answers (streams need it first).
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    pub model: String,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub tools: Vec<Tool>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub metadata: Map<String, Value>,
    pub user: Option<String>,
}

impl ResponsesContext {
    pub fn for_request(req: &ResponsesRequest) -> Self {
        ResponsesContext {
            id: new_id("resp_"),
            created_at: cortex_common::now_ms() / 1000,
            model: req.model.clone(),
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            tools: req.tools.clone().unwrap_or_default(),
            tool_choice: req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            metadata: req.metadata.clone().unwrap_or_default(),
            user: req.user.clone(),
        }
    }

    /// A response object in the given state.
    pub fn object(
        &self,
        status: &str,
        output: Vec<OutputItem>,
        usage: Option<ResponseUsage>,
    ) -> ResponseObject {
        ResponseObject {
            id: self.id.clone(),
            object: "response".to_string(),
            created_at: self.created_at,
            status: status.to_string(),
            error: None,
            incomplete_details: (status == "incomplete").then(|| IncompleteDetails {
                reason: "max_output_tokens".to_string(),
            }),
            instructions: self.instructions.clone(),
            max_output_tokens: self.max_output_tokens,
            model: self.model.clone(),
            output,
            parallel_tool_calls: self.parallel_tool_calls,
            previous_response_id: None,
            store: false,
            temperature: self.temperature,
            top_p: self.top_p,
            tool_choice: self.tool_choice.clone(),
            tools: self.tools.clone(),
            text: json!({"format": {"type": "text"}}),
            truncation: "disabled".to_string(),
            usage,
            user: self.user.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// A failed response object (`response.failed`).
    pub fn failed(&self, code: &str, message: &str, output: Vec<OutputItem>) -> ResponseObject {
        let mut obj = self.object("failed", output, None);
        obj.error = Some(ResponseError {
            code: code.to_string(),
            message: message.to_string(),
        });
        obj
    }
}

pub fn usage(u: &Usage) -> ResponseUsage {
    ResponseUsage {
        input_tokens: u.prompt_tokens,
        input_tokens_details: InputTokensDetails {
            cached_tokens: u.cached_tokens(),
        },
        output_tokens: u.completion_tokens,
        output_tokens_details: OutputTokensDetails {
            reasoning_tokens: u.reasoning_tokens(),
        },
        total_tokens: u.total_tokens,
    }
}

/// `completed`, or `incomplete` when the output was cut at the token limit.
pub fn status(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Length) => "incomplete",
        _ => "completed",
    }
}

pub fn reasoning_item(id: String, status: &str, text: String) -> OutputItem {
    OutputItem::Reasoning {
        id,
        summary: Vec::new(),
        content: vec![ReasoningContent::ReasoningText { text }],
        status: status.to_string(),
    }
}

pub fn message_item(id: String, status: &str, text: String) -> OutputItem {
    OutputItem::Message {
        id,
        status: status.to_string(),
        role: "assistant".to_string(),
        content: vec![OutputContent::OutputText {
            text,
            annotations: Vec::new(),
        }],
    }
}

pub fn to_responses_response(
    resp: &ChatCompletionResponse,
    ctx: &ResponsesContext,
) -> ResponseObject {
    let mut output = Vec::new();
    let mut finish = None;
    if let Some(choice) = resp.choices.first() {
        finish = choice.finish_reason;
        let msg = &choice.message;
        if let Some(r) = msg.reasoning_content.as_ref().filter(|r| !r.is_empty()) {
            output.push(reasoning_item(new_id("rs_"), "completed", r.clone()));
        }
        let text = msg.content.as_ref().map(text_of).unwrap_or_default();
        let calls: Vec<(String, String, String)> = msg
            .tool_calls
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.id.clone(),
                    c.function.name.clone(),
                    c.function.arguments.clone(),
                )
            })
            .collect();
        if !text.is_empty() {
            output.push(message_item(new_id("msg_"), "completed", text));
        }
        for (call_id, name, arguments) in calls {
            output.push(OutputItem::FunctionCall {
                id: new_id("fc_"),
                call_id,
                name,
                arguments,
                status: "completed".to_string(),
            });
        }
    }
    ctx.object(status(finish), output, Some(usage(&resp.usage)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ResponsesContext {
        let req: ResponsesRequest = serde_json::from_str(
            r#"{"model":"qwen","input":"hi","instructions":"sys","max_output_tokens":5,"metadata":{"a":"b"},
                "tools":[{"type":"function","name":"f","parameters":{"type":"object"}}]}"#,
        )
        .unwrap();
        ResponsesContext::for_request(&req)
    }

    #[test]
    fn text_and_tool_calls_become_output_items() {
        let resp: ChatCompletionResponse = serde_json::from_str(
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"qwen",
            "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"ok",
              "tool_calls":[{"id":"call_9","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]}}],
            "usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
        )
        .unwrap();
        let c = ctx();
        let v = serde_json::to_value(to_responses_response(&resp, &c)).unwrap();
        assert_eq!(v["object"], "response");
        assert_eq!(v["id"], c.id);
        assert_eq!(v["status"], "completed");
        assert_eq!(v["output"][0]["type"], "message");
        assert_eq!(
            v["output"][0]["content"][0],
            json!({"type":"output_text","text":"ok","annotations":[]})
        );
        assert_eq!(v["output"][1]["type"], "function_call");
        assert_eq!(v["output"][1]["call_id"], "call_9");
        assert_eq!(v["output"][1]["arguments"], "{\"x\":1}");
        assert_eq!(
            v["usage"],
            json!({"input_tokens":7,"input_tokens_details":{"cached_tokens":0},"output_tokens":3,
                   "output_tokens_details":{"reasoning_tokens":0},"total_tokens":10})
        );
        assert_eq!(v["instructions"], "sys");
        assert_eq!(v["max_output_tokens"], 5);
        assert_eq!(v["metadata"], json!({"a":"b"}));
        assert_eq!(v["tools"][0]["name"], "f");
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["incomplete_details"], Value::Null);
        assert_eq!(v["tool_choice"], "auto");
    }

    #[test]
    fn length_cut_is_incomplete_and_text_stays_text() {
        // Calls written as text are the neuron's to parse; what arrives as
        // content is the answer's text.
        let resp: ChatCompletionResponse = serde_json::from_str(
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"qwen",
            "choices":[{"index":0,"finish_reason":"length","message":{"role":"assistant",
              "content":"<tool_call>{\"name\":\"f\""}}],
            "usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}"#,
        )
        .unwrap();
        let v = serde_json::to_value(to_responses_response(&resp, &ctx())).unwrap();
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(v["output"].as_array().unwrap().len(), 1);
        assert_eq!(v["output"][0]["type"], "message");
        assert_eq!(
            v["output"][0]["content"][0]["text"],
            "<tool_call>{\"name\":\"f\""
        );
    }

    #[test]
    fn reasoning_is_an_item_and_its_tokens_are_counted() {
        let resp: ChatCompletionResponse = serde_json::from_str(
            r#"{"id":"chatcmpl-t","object":"chat.completion","created":1,"model":"q",
                "choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",
                "content":"Hi!","reasoning_content":"They greet me."}}],
                "usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11,
                         "completion_tokens_details":{"reasoning_tokens":4}}}"#,
        )
        .unwrap();
        let obj = to_responses_response(&resp, &ctx());
        let v = serde_json::to_value(&obj).unwrap();
        assert_eq!(v["output"][0]["type"], "reasoning");
        assert_eq!(v["output"][0]["content"][0]["text"], "They greet me.");
        assert_eq!(v["output"][1]["type"], "message");
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 4);
    }
}
