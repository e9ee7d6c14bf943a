//! OpenAI `ChatCompletionResponse` → Anthropic `MessagesResponse`.
//!
//! Kept: the first choice's reasoning (one `thinking` block first, omitted
//! when empty), its text (one `text` block, omitted when empty), every
//! tool call (one `tool_use` block each, id verbatim, arguments parsed back
//! into the `input` object), the stop reason, usage, model. The id becomes
//! `msg_` + the upstream id's suffix so logs on both sides line up.

use serde_json::Value;

use crate::translate::anthropic::schema::{ContentBlock, MessagesResponse, StopReason, Usage};
use crate::translate::id_suffix;
use cortex_common::openai::{ChatCompletionResponse, FinishReason, MessageContent};

/// The answer in Anthropic's shape. The stop sequence that ended it, when
/// the upstream reports one (`stop_reason`, vLLM's convention), turns
/// `finish_reason: "stop"` into `stop_sequence`.
pub fn to_anthropic_response(resp: &ChatCompletionResponse) -> MessagesResponse {
    let mut content = Vec::new();
    let mut finish = None;
    let mut stop_sequence = None;
    if let Some(choice) = resp.choices.first() {
        finish = choice.finish_reason;
        stop_sequence = choice.stop_reason.as_deref();
        let msg = &choice.message;
        if let Some(thinking) = msg.reasoning_content.as_ref().filter(|r| !r.is_empty()) {
            content.push(thinking_block(thinking.clone()));
        }
        let text = msg.content.as_ref().map(text_of).unwrap_or_default();
        let calls = msg
            .tool_calls
            .iter()
            .flatten()
            .map(|c| ContentBlock::ToolUse {
                id: c.id.clone(),
                name: c.function.name.clone(),
                input: arguments_for_template(&c.function.arguments),
            })
            .collect::<Vec<_>>();
        if !text.is_empty() {
            content.push(ContentBlock::Text { text });
        }
        content.extend(calls);
    }
    let has_tool_use = content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolUse { .. }));
    let (stop_reason, stop_sequence) = stop_reason(finish, has_tool_use, stop_sequence);
    MessagesResponse {
        id: format!("msg_{}", id_suffix(&resp.id)),
        kind: "message".to_string(),
        role: "assistant".to_string(),
        content,
        model: resp.model.clone(),
        stop_reason,
        stop_sequence,
        usage: usage(&resp.usage),
    }
}

/// A `thinking` block; cortex does not sign thoughts, so the signature is
/// empty (the SDKs expect the field).
pub fn thinking_block(thinking: String) -> ContentBlock {
    ContentBlock::Thinking {
        thinking,
        signature: Some(String::new()),
    }
}

/// OpenAI usage → Anthropic usage: Anthropic counts prompt tokens read
/// from a cache apart (`cache_read_input_tokens`), and `input_tokens` is
/// only what was processed anew.
pub fn usage(u: &cortex_common::openai::Usage) -> Usage {
    let cached = u.cached_tokens().min(u.prompt_tokens);
    Usage {
        input_tokens: u.prompt_tokens - cached,
        output_tokens: u.completion_tokens,
        cache_read_input_tokens: u.prompt_tokens_details.map(|_| cached),
        ..Default::default()
    }
}

/// OpenAI finish reason → Anthropic stop reason (and matched sequence).
/// A finished turn that produced tool calls is `tool_use` whatever the
/// upstream said; a missing finish reason is read as a normal end.
pub fn stop_reason(
    finish: Option<FinishReason>,
    has_tool_use: bool,
    stop_sequence: Option<&str>,
) -> (Option<StopReason>, Option<String>) {
    match finish {
        Some(FinishReason::Length) => (Some(StopReason::MaxTokens), None),
        _ if has_tool_use => (Some(StopReason::ToolUse), None),
        Some(FinishReason::ToolCalls) => (Some(StopReason::ToolUse), None),
        Some(FinishReason::Stop) | None => match stop_sequence {
            Some(s) => (Some(StopReason::StopSequence), Some(s.to_string())),
            None => (Some(StopReason::EndTurn), None),
        },
    }
}

/// The text of message content; non-text parts contribute nothing.
/// OpenAI `function.arguments` (a string) as Anthropic's `input`: the
/// parsed object when the string holds one, the string itself otherwise,
/// so that nothing is lost.
fn arguments_for_template(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::String(arguments.to_string()),
    }
}

pub(crate) fn text_of(content: &MessageContent) -> String {
    match content {
        MessageContent::Text(s) => s.clone(),
        MessageContent::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(json: &str) -> ChatCompletionResponse {
        serde_json::from_str(json).unwrap()
    }

    /// What a neuron (or vLLM) answers after parsing a tool call.
    const TOOL_ANSWER: &str = r#"{
        "id": "chatcmpl-8f3a", "object": "chat.completion", "created": 1718000000, "model": "qwen2.5-0.5b",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.",
            "tool_calls": [{"id": "call_abc", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 17, "total_tokens": 137}
    }"#;

    #[test]
    fn tool_calls_survive_non_streaming() {
        let m = to_anthropic_response(&resp(TOOL_ANSWER));
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "msg_8f3a", "type": "message", "role": "assistant", "model": "qwen2.5-0.5b",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 120, "output_tokens": 17}
            })
        );
    }

    #[test]
    fn arguments_become_an_object_when_they_hold_one() {
        assert_eq!(arguments_for_template(r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(arguments_for_template("oops"), json!("oops"));
    }

    #[test]
    fn the_upstream_stop_reason_is_the_stop_sequence() {
        let r = resp(
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"finish_reason":"stop","stop_reason":"END",
            "message":{"role":"assistant","content":"a"}}],
            "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
        );
        let m = to_anthropic_response(&r);
        assert_eq!(m.stop_reason, Some(StopReason::StopSequence));
        assert_eq!(m.stop_sequence.as_deref(), Some("END"));
    }

    #[test]
    fn stop_reasons_map() {
        assert_eq!(
            stop_reason(Some(FinishReason::Length), false, None).0,
            Some(StopReason::MaxTokens)
        );
        assert_eq!(
            stop_reason(Some(FinishReason::Stop), false, None).0,
            Some(StopReason::EndTurn)
        );
        assert_eq!(
            stop_reason(Some(FinishReason::Stop), false, Some("END")),
            (Some(StopReason::StopSequence), Some("END".into()))
        );
        assert_eq!(
            stop_reason(Some(FinishReason::ToolCalls), false, None).0,
            Some(StopReason::ToolUse)
        );
        assert_eq!(
            stop_reason(Some(FinishReason::Stop), true, None).0,
            Some(StopReason::ToolUse)
        );
        assert_eq!(stop_reason(None, false, None).0, Some(StopReason::EndTurn));
    }

    #[test]
    fn empty_output_and_max_tokens() {
        let r = resp(
            r#"{"id":"x","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"finish_reason":"length","message":{"role":"assistant","content":null}}],
            "usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}"#,
        );
        let m = to_anthropic_response(&r);
        assert!(m.content.is_empty());
        assert_eq!(m.stop_reason, Some(StopReason::MaxTokens));
        assert_eq!(m.id, "msg_x");
    }

    #[test]
    fn reasoning_becomes_a_thinking_block_before_the_text() {
        let r = resp(
            r#"{"id":"chatcmpl-t","object":"chat.completion","created":1,"model":"q",
                "choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",
                "content":"Hi!","reasoning_content":"They greet me."}}],
                "usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11,
                         "completion_tokens_details":{"reasoning_tokens":4}}}"#,
        );
        let m = to_anthropic_response(&r);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v["content"],
            json!([{"type": "thinking", "thinking": "They greet me.", "signature": ""},
                   {"type": "text", "text": "Hi!"}])
        );
        assert_eq!(v["usage"]["output_tokens"], 6);
    }
}
