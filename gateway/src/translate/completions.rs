//! Legacy `/v1/completions` ⇄ chat completions.
//!
//! The neuron serves chat only, so the prompt goes as ONE user message and
//! the model's chat template is applied to it: the answer is the model's
//! reply to the prompt, not a raw continuation of it. Kept: prompt (a string
//! or a one-string list), max_tokens (default 16 as OpenAI's), temperature,
//! top_p, top_k, n, stop, seed, penalties, user, stream (with
//! `include_usage` passed through), echo (done here: the prompt is
//! prepended to the text). Rejected (400): token-id prompts, several
//! prompts, `suffix`, `logprobs`, `best_of` > 1 — none can be honoured.

pub mod schema;

use super::{TranslateError, id_suffix};
use crate::translate::completions::schema::{
    CompletionChoice, CompletionChunk, CompletionRequest, CompletionResponse, Prompt,
};
use cortex_common::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, FinishReason,
};

/// OpenAI's default `max_tokens` for this endpoint.
pub const DEFAULT_MAX_TOKENS: u32 = 16;

pub fn to_chat_request(req: &CompletionRequest) -> Result<ChatCompletionRequest, TranslateError> {
    let prompt = prompt_text(&req.prompt)?;
    let unsupported = |field: &str| {
        Err(TranslateError::new(
            "unsupported_parameter",
            format!("{field}: not supported by cortex's /v1/completions"),
        ))
    };
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return unsupported("suffix");
    }
    if req.logprobs.is_some() {
        return unsupported("logprobs");
    }
    if req.best_of.is_some_and(|b| b > 1) {
        return unsupported("best_of");
    }
    Ok(ChatCompletionRequest {
        model: req.model.clone(),
        messages: vec![ChatMessage::text("user", prompt)],
        stream: req.stream,
        stream_options: req.stream_options.clone(),
        max_tokens: Some(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: req.seed,
        frequency_penalty: req.frequency_penalty,
        presence_penalty: req.presence_penalty,
        stop: req.stop.clone(),
        n: req.n,
        user: req.user.clone(),
        ..Default::default()
    })
}

fn prompt_text(prompt: &Prompt) -> Result<&str, TranslateError> {
    match prompt {
        Prompt::Text(s) => Ok(s),
        Prompt::Texts(v) if v.len() == 1 => Ok(&v[0]),
        Prompt::Texts(_) => Err(TranslateError::new(
            "unsupported_parameter",
            "prompt: send one prompt per request (lists of several prompts are not supported)",
        )),
        Prompt::Tokens(_) | Prompt::TokenLists(_) => Err(TranslateError::new(
            "unsupported_parameter",
            "prompt: token-id prompts are not supported; send text",
        )),
    }
}

/// What the response translation needs from the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionContext {
    /// The prompt, when `echo` asked for it to be prepended.
    pub echo: Option<String>,
}

impl CompletionContext {
    pub fn for_request(req: &CompletionRequest) -> Self {
        CompletionContext {
            echo: if req.echo.unwrap_or(false) {
                prompt_text(&req.prompt).ok().map(str::to_string)
            } else {
                None
            },
        }
    }
}

/// Chat's `tool_calls` has no legacy counterpart; it reads as `stop`.
fn finish(f: Option<FinishReason>) -> Option<FinishReason> {
    f.map(|f| match f {
        FinishReason::ToolCalls => FinishReason::Stop,
        other => other,
    })
}

pub fn to_completion_response(
    resp: &ChatCompletionResponse,
    ctx: &CompletionContext,
) -> CompletionResponse {
    CompletionResponse {
        id: format!("cmpl-{}", id_suffix(&resp.id)),
        object: "text_completion".to_string(),
        created: resp.created,
        model: resp.model.clone(),
        choices: resp
            .choices
            .iter()
            .map(|c| {
                let mut text = ctx.echo.clone().unwrap_or_default();
                if let Some(content) = &c.message.content {
                    text.push_str(&crate::translate::anthropic::response::text_of(content));
                }
                CompletionChoice {
                    text,
                    index: c.index,
                    logprobs: None,
                    finish_reason: finish(c.finish_reason),
                }
            })
            .collect(),
        usage: resp.usage.clone(),
    }
}

/// Chunk-by-chunk translation; `push` returns the chunk to send, if any.
#[derive(Debug, Clone)]
pub struct CompletionStream {
    ctx: CompletionContext,
    echoed: Vec<u32>,
}

impl CompletionStream {
    pub fn new(ctx: CompletionContext) -> Self {
        CompletionStream {
            ctx,
            echoed: Vec::new(),
        }
    }

    pub fn push(&mut self, chunk: &ChatCompletionChunk) -> Option<CompletionChunk> {
        let mut choices = Vec::with_capacity(chunk.choices.len());
        for c in &chunk.choices {
            let mut text = String::new();
            if let Some(echo) = &self.ctx.echo
                && !self.echoed.contains(&c.index)
            {
                self.echoed.push(c.index);
                text.push_str(echo);
            }
            text.push_str(c.delta.content.as_deref().unwrap_or(""));
            if text.is_empty() && c.finish_reason.is_none() {
                continue;
            }
            choices.push(CompletionChoice {
                text,
                index: c.index,
                logprobs: None,
                finish_reason: finish(c.finish_reason),
            });
        }
        if choices.is_empty() && chunk.usage.is_none() {
            return None;
        }
        Some(CompletionChunk {
            id: format!("cmpl-{}", id_suffix(&chunk.id)),
            object: "text_completion".to_string(),
            created: chunk.created,
            model: chunk.model.clone(),
            choices,
            usage: chunk.usage.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn req(body: Value) -> CompletionRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn request_becomes_one_user_message_with_default_max_tokens() {
        let r = req(
            json!({"model":"m","prompt":["Once upon"],"stop":"\n","temperature":0.3,"stream":true,
                           "stream_options":{"include_usage":true},"seed":7}),
        );
        let chat = to_chat_request(&r).unwrap();
        assert_eq!(chat.messages, vec![ChatMessage::text("user", "Once upon")]);
        assert_eq!(chat.max_tokens, Some(16));
        assert_eq!(chat.stop_sequences(), vec!["\n".to_string()]);
        assert!(chat.include_usage() && chat.is_stream());
        assert_eq!(chat.seed, Some(7));
    }

    #[test]
    fn unsupported_parameters_are_rejected() {
        for body in [
            json!({"model":"m","prompt":[1,2]}),
            json!({"model":"m","prompt":["a","b"]}),
            json!({"model":"m","prompt":"a","suffix":"z"}),
            json!({"model":"m","prompt":"a","logprobs":2}),
            json!({"model":"m","prompt":"a","best_of":3}),
        ] {
            assert_eq!(
                to_chat_request(&req(body)).unwrap_err().code,
                "unsupported_parameter"
            );
        }
    }

    #[test]
    fn response_and_stream_with_echo() {
        let r = req(json!({"model":"m","prompt":"Hi","echo":true}));
        let ctx = CompletionContext::for_request(&r);
        let resp: ChatCompletionResponse = serde_json::from_value(json!({
            "id":"chatcmpl-42","object":"chat.completion","created":9,"model":"m",
            "choices":[{"index":0,"finish_reason":"length","message":{"role":"assistant","content":" there"}}],
            "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}})).unwrap();
        let v = serde_json::to_value(to_completion_response(&resp, &ctx)).unwrap();
        assert_eq!(
            v,
            json!({"id":"cmpl-42","object":"text_completion","created":9,"model":"m",
            "choices":[{"text":"Hi there","index":0,"logprobs":null,"finish_reason":"length"}],
            "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}})
        );

        let mut s = CompletionStream::new(ctx);
        let chunk = |delta: Value, fin: Value| -> ChatCompletionChunk {
            serde_json::from_value(
                json!({"id":"chatcmpl-42","object":"chat.completion.chunk","created":9,"model":"m",
                "choices":[{"index":0,"delta":delta,"finish_reason":fin}]}),
            )
            .unwrap()
        };
        let first = s
            .push(&chunk(json!({"role":"assistant"}), Value::Null))
            .unwrap();
        assert_eq!(first.choices[0].text, "Hi");
        assert_eq!(first.object, "text_completion");
        let next = s
            .push(&chunk(json!({"content":" x"}), Value::Null))
            .unwrap();
        assert_eq!(next.choices[0].text, " x");
        assert!(s.push(&chunk(json!({}), Value::Null)).is_none());
        let last = s.push(&chunk(json!({}), json!("tool_calls"))).unwrap();
        assert_eq!(last.choices[0].finish_reason, Some(FinishReason::Stop));
    }
}
