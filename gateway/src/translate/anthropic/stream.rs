//! OpenAI `ChatCompletionChunk` stream → Anthropic streaming events.
//!
//! Drive one [`AnthropicStream`] per request:
//!
//! ```text
//! let mut tr = AnthropicStream::new(StreamContext::for_request(&req));
//! let mut out = Vec::new();
//! tr.start(&mut out);                 // message_start — send it at once
//! // while the model loads / prefills: send AnthropicStream::ping() every ~1 s
//! for each upstream chunk:
//!     tr.push(&chunk, &mut out);     // thinking, text, tool calls, finish, usage
//!     // send every event in `out` as `ev.to_sse()`, then clear it
//! on upstream [DONE] / end:  tr.finish(&mut out);      // message_delta, message_stop
//! on an upstream failure:    tr.error(kind, msg, &mut out); // one `error` event
//! ```
//!
//! The events follow Anthropic's order exactly: `message_start`, then per
//! content block `content_block_start`, `content_block_delta`*,
//! `content_block_stop` (indices 0, 1, … in order, one block open at a
//! time), then `message_delta` (stop reason, cumulative usage) and
//! `message_stop`. Reasoning (`delta.reasoning_content`) becomes a
//! `thinking` block of `thinking_delta`s; text becomes `text_delta`s; each
//! tool call becomes a
//! `tool_use` block whose arguments arrive as `input_json_delta`s.
//! Upstream tool-call fragments must arrive call after call (as OpenAI and
//! vLLM send them); the neuron parses calls the model writes as text, so
//! text is only ever text here.

use serde_json::{Map, Value};

use crate::translate::anthropic::response::{stop_reason, thinking_block};
use crate::translate::anthropic::schema::{
    BlockDelta, ContentBlock, DeltaUsage, ErrorDetail, ErrorType, MessageDelta, MessagesRequest,
    MessagesResponse, StreamEvent, Usage,
};
use crate::translate::{ChunkParts, Fragment};
use cortex_common::openai::{ChatCompletionChunk, FinishReason, ToolCallDelta};

#[derive(Debug, Clone, PartialEq)]
pub struct StreamContext {
    /// The message id (`msg_…`), fixed before the first upstream chunk.
    pub id: String,
    /// The model name reported to the client.
    pub model: String,
    /// Prompt size for `message_start` if known up front (0 otherwise; the
    /// real figure follows in `message_delta` once the upstream reports it).
    pub input_tokens: u32,
}

impl StreamContext {
    pub fn for_request(req: &MessagesRequest) -> Self {
        StreamContext {
            id: crate::translate::new_id("msg_"),
            model: req.model.clone(),
            input_tokens: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Thinking,
    Text,
    /// A tool_use block fed by upstream tool call number `upstream`.
    Tool {
        upstream: u32,
    },
}

/// The stateful translator; see the module documentation.
#[derive(Debug)]
pub struct AnthropicStream {
    ctx: StreamContext,
    started: bool,
    done: bool,
    /// Index of the open block, or of the next one when none is open.
    index: u32,
    open: Open,
    finish: Option<FinishReason>,
    usage: Option<cortex_common::openai::Usage>,
    /// Content-bearing upstream chunks: the output-token estimate when the
    /// upstream sends no usage.
    chunks: u32,
    saw_tool_use: bool,
    stop_sequence: Option<String>,
}

impl AnthropicStream {
    pub fn new(ctx: StreamContext) -> Self {
        AnthropicStream {
            ctx,
            started: false,
            done: false,
            index: 0,
            open: Open::None,
            finish: None,
            usage: None,
            chunks: 0,
            saw_tool_use: false,
            stop_sequence: None,
        }
    }

    /// A keepalive event, valid anywhere after `message_start`.
    pub fn ping() -> StreamEvent {
        StreamEvent::Ping
    }

    /// True once `finish` or `error` ended the stream.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Emit `message_start` (once; `push` calls it if you did not).
    pub fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if self.started || self.done {
            return;
        }
        self.started = true;
        out.push(StreamEvent::MessageStart {
            message: MessagesResponse {
                id: self.ctx.id.clone(),
                kind: "message".to_string(),
                role: "assistant".to_string(),
                content: Vec::new(),
                model: self.ctx.model.clone(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage {
                    input_tokens: self.ctx.input_tokens,
                    output_tokens: 0,
                    ..Default::default()
                },
            },
        });
    }

    pub fn push(&mut self, chunk: &ChatCompletionChunk, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.start(out);
        let parts = ChunkParts::of(chunk);
        if let Some(usage) = parts.usage {
            self.usage = Some(usage.clone());
        }
        if let Some(thinking) = parts.reasoning {
            self.chunks += 1;
            self.thinking(thinking, out);
        }
        if let Some(text) = parts.text {
            self.chunks += 1;
            self.text(text, out);
        }
        if !parts.calls.is_empty() {
            self.chunks += 1;
        }
        for call in parts.calls {
            self.tool_fragment(call, out);
        }
        self.finish = parts.finish.or(self.finish);
        if let Some(stop) = parts.stop_sequence {
            self.stop_sequence = Some(stop.to_string());
        }
    }

    /// The upstream ended normally: close the open block, then
    /// `message_delta` and `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close(out);
        let (stop_reason, stop_sequence) = stop_reason(
            self.finish,
            self.saw_tool_use,
            self.stop_sequence.as_deref(),
        );
        let (input, output, cache_read) = match &self.usage {
            Some(u) => {
                let u = crate::translate::anthropic::response::usage(u);
                (u.input_tokens, u.output_tokens, u.cache_read_input_tokens)
            }
            None => (self.ctx.input_tokens, self.chunks, None),
        };
        out.push(StreamEvent::MessageDelta {
            delta: MessageDelta {
                stop_reason,
                stop_sequence,
            },
            usage: DeltaUsage {
                output_tokens: output,
                input_tokens: Some(input),
                cache_read_input_tokens: cache_read,
            },
        });
        out.push(StreamEvent::MessageStop);
        self.done = true;
    }

    /// The upstream failed mid-stream: one `error` event ends the stream
    /// (what Anthropic sends; the SDKs raise it as an exception).
    pub fn error(
        &mut self,
        kind: ErrorType,
        message: impl Into<String>,
        out: &mut Vec<StreamEvent>,
    ) {
        if self.done {
            return;
        }
        out.push(StreamEvent::Error {
            error: ErrorDetail {
                kind,
                message: message.into(),
            },
        });
        self.done = true;
    }

    fn thinking(&mut self, thinking: &str, out: &mut Vec<StreamEvent>) {
        if self.open != Open::Thinking {
            self.close(out);
            self.open = Open::Thinking;
            out.push(StreamEvent::ContentBlockStart {
                index: self.index,
                content_block: thinking_block(String::new()),
            });
        }
        out.push(StreamEvent::ContentBlockDelta {
            index: self.index,
            delta: BlockDelta::ThinkingDelta {
                thinking: thinking.to_string(),
            },
        });
    }

    fn text(&mut self, text: &str, out: &mut Vec<StreamEvent>) {
        if self.open != Open::Text {
            self.close(out);
            self.open = Open::Text;
            out.push(StreamEvent::ContentBlockStart {
                index: self.index,
                content_block: ContentBlock::Text {
                    text: String::new(),
                },
            });
        }
        out.push(StreamEvent::ContentBlockDelta {
            index: self.index,
            delta: BlockDelta::TextDelta {
                text: text.to_string(),
            },
        });
    }

    fn open_tool(&mut self, id: String, name: String, upstream: u32, out: &mut Vec<StreamEvent>) {
        self.close(out);
        self.open = Open::Tool { upstream };
        self.saw_tool_use = true;
        out.push(StreamEvent::ContentBlockStart {
            index: self.index,
            content_block: ContentBlock::ToolUse {
                id,
                name,
                input: Value::Object(Map::new()),
            },
        });
    }

    fn json_delta(&mut self, partial_json: String, out: &mut Vec<StreamEvent>) {
        out.push(StreamEvent::ContentBlockDelta {
            index: self.index,
            delta: BlockDelta::InputJsonDelta { partial_json },
        });
    }

    fn tool_fragment(&mut self, call: &ToolCallDelta, out: &mut Vec<StreamEvent>) {
        let open = match self.open {
            Open::Tool { upstream } => Some(upstream),
            _ => None,
        };
        let fragment = Fragment::of(call, open, "toolu_");
        if let Some((id, name)) = fragment.opens {
            self.open_tool(id, name, call.index, out);
        }
        if let Some(args) = fragment.arguments {
            self.json_delta(args.to_string(), out);
        }
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if self.open != Open::None {
            out.push(StreamEvent::ContentBlockStop { index: self.index });
            self.index += 1;
            self.open = Open::None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::SseEvent;
    use crate::translate::anthropic::schema::StopReason;
    use serde_json::json;

    fn ctx() -> StreamContext {
        StreamContext {
            id: "msg_test".into(),
            model: "qwen".into(),
            input_tokens: 0,
        }
    }

    fn chunks(lines: &[&str]) -> Vec<ChatCompletionChunk> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn run(tr: &mut AnthropicStream, chunks: &[ChatCompletionChunk]) -> Vec<Value> {
        let mut out = Vec::new();
        tr.start(&mut out);
        for c in chunks {
            tr.push(c, &mut out);
        }
        tr.finish(&mut out);
        out.iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    /// An OpenAI-style stream with text, then two parallel tool calls split
    /// into fragments, then the usage chunk (`include_usage`).
    const TOOL_STREAM: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"content":"Let me"},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"content":" check."},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":21,"total_tokens":71}}"#,
    ];

    #[test]
    fn structured_tool_call_stream_becomes_the_exact_event_sequence() {
        let mut tr = AnthropicStream::new(ctx());
        let events = run(&mut tr, &chunks(TOOL_STREAM));
        let want = vec![
            json!({"type":"message_start","message":{"id":"msg_test","type":"message","role":"assistant","content":[],"model":"qwen","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me"}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" check."}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_a","name":"get_weather","input":{}}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}),
            json!({"type":"content_block_stop","index":1}),
            json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"call_b","name":"get_time","input":{}}}),
            json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}),
            json!({"type":"content_block_stop","index":2}),
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":21,"input_tokens":50}}),
            json!({"type":"message_stop"}),
        ];
        assert_eq!(events, want);
        assert!(tr.is_done());
    }

    #[test]
    fn max_tokens_and_stop_sequence() {
        let line = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"q","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"length"}]}"#;
        let mut tr = AnthropicStream::new(ctx());
        let events = run(&mut tr, &chunks(&[line]));
        assert_eq!(
            events[events.len() - 2]["delta"]["stop_reason"],
            json!(StopReason::MaxTokens)
        );
        let line = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"q","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop","stop_reason":"END"}]}"#;
        let mut tr = AnthropicStream::new(ctx());
        let events = run(&mut tr, &chunks(&[line]));
        assert_eq!(
            events[events.len() - 2]["delta"],
            json!({"stop_reason":"stop_sequence","stop_sequence":"END"})
        );
    }

    #[test]
    fn error_mid_stream_ends_it() {
        let mut tr = AnthropicStream::new(ctx());
        let mut out = Vec::new();
        tr.push(&chunks(&[TOOL_STREAM[1]])[0], &mut out);
        tr.error(ErrorType::OverloadedError, "Overloaded", &mut out);
        tr.finish(&mut out);
        tr.push(&chunks(&[TOOL_STREAM[2]])[0], &mut out);
        let last = out.last().unwrap();
        assert_eq!(
            last.to_sse(),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
        );
        assert_eq!(out.len(), 4, "message_start, block start, delta, error");
    }

    #[test]
    fn empty_stream_still_closes_the_message() {
        let mut tr = AnthropicStream::new(ctx());
        let mut out = Vec::new();
        tr.finish(&mut out);
        let names: Vec<_> = out.iter().map(|e| e.name()).collect();
        assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
    }

    #[test]
    fn reasoning_streams_as_a_thinking_block_before_the_text() {
        let lines = [
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"q","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"q","choices":[{"index":0,"delta":{"reasoning_content":"Hmm, "},"finish_reason":null}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"q","choices":[{"index":0,"delta":{"reasoning_content":"a greeting."},"finish_reason":null}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"q","choices":[{"index":0,"delta":{"content":"Hi!"},"finish_reason":null}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"q","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ];
        let events = run(&mut AnthropicStream::new(ctx()), &chunks(&lines));
        let kinds: Vec<String> = events
            .iter()
            .map(|e| {
                let d = e["delta"]["type"]
                    .as_str()
                    .or(e["content_block"]["type"].as_str());
                format!(
                    "{}{}",
                    e["type"].as_str().unwrap(),
                    d.map(|d| format!(":{d}")).unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start:thinking",
                "content_block_delta:thinking_delta",
                "content_block_delta:thinking_delta",
                "content_block_stop",
                "content_block_start:text",
                "content_block_delta:text_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[1]["index"], 0);
        assert_eq!(events[3]["delta"]["thinking"], "a greeting.");
        assert_eq!(events[5]["index"], 1);
    }
}
