//! A non-streamed chat answer built from the chunks of the neuron's
//! stream. The gateway always asks neurons to stream, so a long generation
//! is never mistaken for a silent, hung neuron: only idle time counts
//! against `upstream_idle_timeout`, whatever the client asked for.
//!
//! Reasoning and tool calls are assembled too: `reasoning_content`
//! fragments into one string, tool-call fragments by `index` (id, type and
//! name from the first, arguments concatenated).

use cortex_common::openai::{
    ChatChoice, ChatCompletionChunk, ChatCompletionResponse, ChatMessage, FinishReason,
    FunctionCall, MessageContent, ToolCall, Usage,
};

/// The answer so far.
#[derive(Debug, Default)]
pub struct Assembler {
    id: String,
    created: u64,
    model: String,
    content: String,
    reasoning: String,
    /// Tool calls in the order their first fragment arrived, by `index`.
    calls: Vec<(u32, ToolCall)>,
    finish_reason: Option<FinishReason>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
}

impl Assembler {
    /// Adds one chunk (choice 0 only: neurons generate one).
    pub fn push(&mut self, chunk: &ChatCompletionChunk) {
        if self.id.is_empty() {
            self.id.clone_from(&chunk.id);
            self.created = chunk.created;
            self.model.clone_from(&chunk.model);
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = &choice.delta.content {
                self.content.push_str(text);
            }
            if let Some(text) = &choice.delta.reasoning_content {
                self.reasoning.push_str(text);
            }
            for fragment in choice.delta.tool_calls.iter().flatten() {
                let at = match self.calls.iter().position(|(i, _)| *i == fragment.index) {
                    Some(at) => at,
                    None => {
                        self.calls.push((
                            fragment.index,
                            ToolCall {
                                id: String::new(),
                                kind: "function".into(),
                                function: FunctionCall {
                                    name: String::new(),
                                    arguments: String::new(),
                                },
                            },
                        ));
                        self.calls.len() - 1
                    }
                };
                let call = &mut self.calls[at].1;
                if let Some(id) = &fragment.id {
                    call.id.clone_from(id);
                }
                if let Some(kind) = &fragment.kind {
                    call.kind.clone_from(kind);
                }
                if let Some(f) = &fragment.function {
                    if let Some(name) = &f.name {
                        call.function.name.push_str(name);
                    }
                    if let Some(args) = &f.arguments {
                        call.function.arguments.push_str(args);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
            if choice.stop_reason.is_some() {
                self.stop_reason.clone_from(&choice.stop_reason);
            }
        }
        if chunk.usage.is_some() {
            self.usage.clone_from(&chunk.usage);
        }
    }

    /// The answer as the neuron would have sent it unstreamed.
    pub fn finish(self) -> ChatCompletionResponse {
        let calls: Vec<ToolCall> = self.calls.into_iter().map(|(_, c)| c).collect();
        // OpenAI's shape: a turn of only tool calls has `content: null`.
        let content = (!self.content.is_empty() || calls.is_empty())
            .then_some(MessageContent::Text(self.content));
        let message = ChatMessage {
            role: "assistant".into(),
            content,
            tool_calls: (!calls.is_empty()).then_some(calls),
            reasoning_content: (!self.reasoning.is_empty()).then_some(self.reasoning),
            ..Default::default()
        };
        ChatCompletionResponse {
            id: self.id,
            object: "chat.completion".into(),
            created: self.created,
            model: self.model,
            choices: vec![ChatChoice {
                index: 0,
                message,
                finish_reason: self.finish_reason,
                stop_reason: self.stop_reason,
            }],
            usage: self.usage.unwrap_or_else(|| Usage::new(0, 0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(json: &str) -> ChatCompletionChunk {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn chunks_make_the_unstreamed_answer() {
        let mut a = Assembler::default();
        a.push(&chunk(
            r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        ));
        for t in ["Hel", "lo"] {
            a.push(&chunk(&format!(
                r#"{{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{{"index":0,"delta":{{"content":"{t}"}},"finish_reason":null}}]}}"#
            )));
        }
        a.push(&chunk(
            r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop","stop_reason":"END"}]}"#,
        ));
        a.push(&chunk(
            r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":1}}}"#,
        ));
        let r = a.finish();
        assert_eq!((r.id.as_str(), r.created, r.model.as_str()), ("c1", 7, "m"));
        assert_eq!(r.object, "chat.completion");
        let c = &r.choices[0];
        assert_eq!(c.message.role, "assistant");
        assert_eq!(
            c.message
                .content
                .as_ref()
                .and_then(|m| m.as_text())
                .as_deref(),
            Some("Hello")
        );
        assert_eq!(c.finish_reason, Some(FinishReason::Stop));
        assert_eq!(c.stop_reason.as_deref(), Some("END"));
        assert_eq!(r.usage.total_tokens, 5);
        assert_eq!(r.usage.cached_tokens(), 1);
    }

    #[test]
    fn reasoning_and_tool_call_fragments_are_assembled() {
        let mut a = Assembler::default();
        for delta in [
            r#"{"reasoning_content":"Let me "}"#,
            r#"{"reasoning_content":"look."}"#,
            r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}"#,
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}"#,
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}"#,
            r#"{"tool_calls":[{"index":1,"id":"call_2","function":{"name":"f","arguments":"{}"}}]}"#,
        ] {
            a.push(&chunk(&format!(
                r#"{{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{delta},"finish_reason":null}}]}}"#
            )));
        }
        let r = a.finish();
        let m = &r.choices[0].message;
        assert_eq!(m.reasoning_content.as_deref(), Some("Let me look."));
        assert_eq!(m.content, None, "a turn of only tool calls has no content");
        let calls = m.tool_calls.as_ref().expect("tool calls");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "call_1");
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(
            (calls[1].id.as_str(), calls[1].kind.as_str()),
            ("call_2", "function")
        );
    }
}
