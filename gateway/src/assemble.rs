//! A non-streamed chat answer built from the chunks of the neuron's
//! stream. The gateway always asks neurons to stream, so a long generation
//! is never mistaken for a silent, hung neuron: only idle time counts
//! against `upstream_idle_timeout`, whatever the client asked for.

use cortex_common::openai::{
    ChatChoice, ChatCompletionChunk, ChatCompletionResponse, ChatMessage, FinishReason, Usage,
};

/// The answer so far.
#[derive(Debug, Default)]
pub struct Assembler {
    id: String,
    created: u64,
    model: String,
    content: String,
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
        ChatCompletionResponse {
            id: self.id,
            object: "chat.completion".into(),
            created: self.created,
            model: self.model,
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessage::text("assistant", &self.content),
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
}
