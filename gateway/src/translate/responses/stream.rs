//! OpenAI `ChatCompletionChunk` stream → Responses streaming events.
//!
//! Drive one [`ResponsesStream`] per request, like the Anthropic one:
//! `start` (→ `response.created`, `response.in_progress`), `push` per
//! upstream chunk, `finish` at the upstream's end (→ `response.completed`,
//! or `response.incomplete` when cut at `max_output_tokens`), or `error`
//! (→ `error`, `response.failed`). Every event carries the next
//! `sequence_number`, from 0.
//!
//! Reasoning (`delta.reasoning_content`) is one `reasoning` item first:
//! `response.output_item.added`, `response.reasoning_text.delta`*,
//! `response.reasoning_text.done`, `response.output_item.done`.
//! Text is one `message` item: `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta`*,
//! `response.output_text.done`, `response.content_part.done`,
//! `response.output_item.done`. Each tool call is one `function_call` item
//! with `response.function_call_arguments.delta`* / `.done`.

use crate::translate::responses::response::{
    ResponsesContext, message_item, reasoning_item, status, usage,
};
use crate::translate::responses::schema::{
    OutputContent, OutputItem, StreamEvent, StreamEventKind as K,
};
use crate::translate::{ChunkParts, Fragment, new_id};
use cortex_common::openai::{ChatCompletionChunk, FinishReason, ToolCallDelta, Usage};

#[derive(Debug)]
enum Open {
    None,
    Reasoning {
        item_id: String,
        text: String,
    },
    Message {
        item_id: String,
        text: String,
    },
    Call {
        item_id: String,
        call_id: String,
        name: String,
        arguments: String,
        upstream: u32,
    },
}

#[derive(Debug)]
pub struct ResponsesStream {
    ctx: ResponsesContext,
    seq: u64,
    started: bool,
    done: bool,
    output: Vec<OutputItem>,
    open: Open,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ResponsesStream {
    pub fn new(ctx: ResponsesContext) -> Self {
        ResponsesStream {
            ctx,
            seq: 0,
            started: false,
            done: false,
            output: Vec::new(),
            open: Open::None,
            finish: None,
            usage: None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    fn emit(&mut self, kind: K, out: &mut Vec<StreamEvent>) {
        out.push(StreamEvent {
            sequence_number: self.seq,
            kind,
        });
        self.seq += 1;
    }

    fn output_index(&self) -> u32 {
        self.output.len() as u32
    }

    pub fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if self.started || self.done {
            return;
        }
        self.started = true;
        let obj = Box::new(self.ctx.object("in_progress", Vec::new(), None));
        self.emit(
            K::Created {
                response: obj.clone(),
            },
            out,
        );
        self.emit(K::InProgress { response: obj }, out);
    }

    pub fn push(&mut self, chunk: &ChatCompletionChunk, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.start(out);
        let parts = ChunkParts::of(chunk);
        self.usage = parts.usage.cloned().or(self.usage.take());
        if let Some(r) = parts.reasoning {
            self.reasoning(r, out);
        }
        if let Some(text) = parts.text {
            self.text(text, out);
        }
        for call in parts.calls {
            self.tool_fragment(call, out);
        }
        self.finish = parts.finish.or(self.finish);
    }

    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close(out);
        let status = status(self.finish);
        let obj = Box::new(self.ctx.object(
            status,
            std::mem::take(&mut self.output),
            self.usage.as_ref().map(usage),
        ));
        let kind = if status == "incomplete" {
            K::Incomplete { response: obj }
        } else {
            K::Completed { response: obj }
        };
        self.emit(kind, out);
        self.done = true;
    }

    /// The upstream failed: an `error` event, then `response.failed`.
    pub fn error(&mut self, code: &str, message: &str, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.start(out);
        self.emit(
            K::Error {
                code: Some(code.to_string()),
                message: message.to_string(),
                param: None,
            },
            out,
        );
        let obj = Box::new(
            self.ctx
                .failed(code, message, std::mem::take(&mut self.output)),
        );
        self.emit(K::Failed { response: obj }, out);
        self.done = true;
    }

    fn reasoning(&mut self, delta: &str, out: &mut Vec<StreamEvent>) {
        if !matches!(self.open, Open::Reasoning { .. }) {
            self.close(out);
            let item_id = new_id("rs_");
            let output_index = self.output_index();
            let mut item = reasoning_item(item_id.clone(), "in_progress", String::new());
            if let OutputItem::Reasoning { content, .. } = &mut item {
                content.clear();
            }
            self.emit(K::OutputItemAdded { output_index, item }, out);
            self.open = Open::Reasoning {
                item_id,
                text: String::new(),
            };
        }
        let output_index = self.output_index();
        let Open::Reasoning { item_id, text } = &mut self.open else {
            return;
        };
        text.push_str(delta);
        let item_id = item_id.clone();
        self.emit(
            K::ReasoningTextDelta {
                item_id,
                output_index,
                content_index: 0,
                delta: delta.to_string(),
            },
            out,
        );
    }

    fn text(&mut self, delta: &str, out: &mut Vec<StreamEvent>) {
        if !matches!(self.open, Open::Message { .. }) {
            self.close(out);
            let item_id = new_id("msg_");
            let output_index = self.output_index();
            self.emit(
                K::OutputItemAdded {
                    output_index,
                    item: OutputItem::Message {
                        id: item_id.clone(),
                        status: "in_progress".to_string(),
                        role: "assistant".to_string(),
                        content: Vec::new(),
                    },
                },
                out,
            );
            self.emit(
                K::ContentPartAdded {
                    item_id: item_id.clone(),
                    output_index,
                    content_index: 0,
                    part: OutputContent::OutputText {
                        text: String::new(),
                        annotations: Vec::new(),
                    },
                },
                out,
            );
            self.open = Open::Message {
                item_id,
                text: String::new(),
            };
        }
        let output_index = self.output_index();
        let item_id = match &mut self.open {
            Open::Message { item_id, text } => {
                text.push_str(delta);
                item_id.clone()
            }
            _ => return,
        };
        self.emit(
            K::OutputTextDelta {
                item_id,
                output_index,
                content_index: 0,
                delta: delta.to_string(),
                logprobs: Vec::new(),
            },
            out,
        );
    }

    fn open_call(
        &mut self,
        call_id: String,
        name: String,
        upstream: u32,
        out: &mut Vec<StreamEvent>,
    ) {
        self.close(out);
        let item_id = new_id("fc_");
        let output_index = self.output_index();
        self.emit(
            K::OutputItemAdded {
                output_index,
                item: OutputItem::FunctionCall {
                    id: item_id.clone(),
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    status: "in_progress".to_string(),
                },
            },
            out,
        );
        self.open = Open::Call {
            item_id,
            call_id,
            name,
            arguments: String::new(),
            upstream,
        };
    }

    fn arguments(&mut self, delta: &str, out: &mut Vec<StreamEvent>) {
        let output_index = self.output_index();
        let Open::Call {
            item_id, arguments, ..
        } = &mut self.open
        else {
            return;
        };
        arguments.push_str(delta);
        let item_id = item_id.clone();
        self.emit(
            K::FunctionCallArgumentsDelta {
                item_id,
                output_index,
                delta: delta.to_string(),
            },
            out,
        );
    }

    fn tool_fragment(&mut self, call: &ToolCallDelta, out: &mut Vec<StreamEvent>) {
        let open = match self.open {
            Open::Call { upstream, .. } => Some(upstream),
            _ => None,
        };
        let fragment = Fragment::of(call, open, "call_");
        if let Some((id, name)) = fragment.opens {
            self.open_call(id, name, call.index, out);
        }
        if let Some(args) = fragment.arguments {
            self.arguments(args, out);
        }
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        let output_index = self.output_index();
        let item = match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Reasoning { item_id, text } => {
                self.emit(
                    K::ReasoningTextDone {
                        item_id: item_id.clone(),
                        output_index,
                        content_index: 0,
                        text: text.clone(),
                    },
                    out,
                );
                reasoning_item(item_id, "completed", text)
            }
            Open::Message { item_id, text } => {
                self.emit(
                    K::OutputTextDone {
                        item_id: item_id.clone(),
                        output_index,
                        content_index: 0,
                        text: text.clone(),
                        logprobs: Vec::new(),
                    },
                    out,
                );
                self.emit(
                    K::ContentPartDone {
                        item_id: item_id.clone(),
                        output_index,
                        content_index: 0,
                        part: OutputContent::OutputText {
                            text: text.clone(),
                            annotations: Vec::new(),
                        },
                    },
                    out,
                );
                message_item(item_id, "completed", text)
            }
            Open::Call {
                item_id,
                call_id,
                name,
                arguments,
                ..
            } => {
                self.emit(
                    K::FunctionCallArgumentsDone {
                        item_id: item_id.clone(),
                        output_index,
                        arguments: arguments.clone(),
                    },
                    out,
                );
                OutputItem::FunctionCall {
                    id: item_id,
                    call_id,
                    name,
                    arguments,
                    status: "completed".to_string(),
                }
            }
        };
        self.emit(
            K::OutputItemDone {
                output_index,
                item: item.clone(),
            },
            out,
        );
        self.output.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::SseEvent;
    use crate::translate::responses::schema::ResponsesRequest;
    use serde_json::{Value, json};

    fn chunk(delta: Value, finish: Value) -> ChatCompletionChunk {
        let v = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"qwen",
            "choices":[{"index":0,"delta":delta,"finish_reason":finish}]});
        serde_json::from_value(v).unwrap()
    }

    fn ctx(tools: bool) -> ResponsesContext {
        let body = if tools {
            r#"{"model":"qwen","input":"hi","tools":[{"type":"function","name":"f"}]}"#
        } else {
            r#"{"model":"qwen","input":"hi"}"#
        };
        ResponsesContext::for_request(&serde_json::from_str::<ResponsesRequest>(body).unwrap())
    }

    fn run(tr: &mut ResponsesStream, chunks: &[ChatCompletionChunk]) -> Vec<Value> {
        let mut out = Vec::new();
        for c in chunks {
            tr.push(c, &mut out);
        }
        tr.finish(&mut out);
        out.iter()
            .map(|e| serde_json::from_str(&e.data()).unwrap())
            .collect()
    }

    #[test]
    fn text_stream_has_the_documented_event_sequence() {
        let chunks = [
            chunk(json!({"role":"assistant","content":""}), Value::Null),
            chunk(json!({"content":"Hel"}), Value::Null),
            chunk(json!({"content":"lo"}), Value::Null),
            chunk(json!({}), json!("stop")),
            serde_json::from_str(r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[],
                "usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#).unwrap(),
        ];
        let mut tr = ResponsesStream::new(ctx(false));
        let ev = run(&mut tr, &chunks);
        let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        for (i, e) in ev.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        assert_eq!(ev[0]["response"]["status"], "in_progress");
        assert_eq!(ev[2]["item"]["content"], json!([]));
        assert_eq!(ev[4]["item_id"], ev[2]["item"]["id"]);
        assert_eq!(ev[6]["text"], "Hello");
        assert_eq!(ev[8]["item"]["status"], "completed");
        let done = &ev[9]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["usage"]["total_tokens"], 6);
    }

    #[test]
    fn tool_calls_stream_as_function_call_items() {
        let chunks = [
            chunk(json!({"content":"ok"}), Value::Null),
            chunk(
                json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
        ];
        let mut tr = ResponsesStream::new(ctx(false));
        let ev = run(&mut tr, &chunks);
        let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            &types[8..],
            [
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(ev[8]["output_index"], 1);
        assert_eq!(ev[8]["item"]["call_id"], "call_1");
        assert_eq!(ev[11]["arguments"], "{\"a\":1}");
        assert_eq!(ev[13]["response"]["output"][1]["arguments"], "{\"a\":1}");
    }

    #[test]
    fn length_is_incomplete_and_text_stays_text() {
        // Calls written as text are the neuron's to parse.
        let chunks = [chunk(
            json!({"content":"<tool_call>{\"name\":\"f\","}),
            json!("length"),
        )];
        let mut tr = ResponsesStream::new(ctx(true));
        let ev = run(&mut tr, &chunks);
        assert_eq!(ev[2]["item"]["type"], "message");
        assert_eq!(ev[4]["delta"], "<tool_call>{\"name\":\"f\",");
        let last = ev.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
    }

    #[test]
    fn errors_end_with_response_failed() {
        let mut tr = ResponsesStream::new(ctx(false));
        let mut out = Vec::new();
        tr.push(&chunk(json!({"content":"a"}), Value::Null), &mut out);
        tr.error("upstream_error", "neuron went away", &mut out);
        tr.finish(&mut out);
        let names: Vec<_> = out.iter().map(|e| e.name()).collect();
        assert_eq!(&names[names.len() - 2..], ["error", "response.failed"]);
        let v: Value = serde_json::from_str(&out.last().unwrap().data()).unwrap();
        assert_eq!(v["response"]["error"]["message"], "neuron went away");
        assert_eq!(v["response"]["status"], "failed");
    }

    #[test]
    fn reasoning_is_its_own_item_before_the_message() {
        let mut tr = ResponsesStream::new(ctx(false));
        let events = run(
            &mut tr,
            &[
                chunk(json!({"reasoning_content": "Think"}), Value::Null),
                chunk(json!({"reasoning_content": "ing."}), Value::Null),
                chunk(json!({"content": "Done."}), json!("stop")),
            ],
        );
        let names: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            &names[2..7],
            [
                "response.output_item.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.output_item.done"
            ]
        );
        assert_eq!(events[2]["item"]["type"], "reasoning");
        assert_eq!(events[5]["text"], "Thinking.");
        let done = events.last().unwrap();
        let output = done["response"]["output"].as_array().unwrap();
        assert_eq!(output[0]["type"], "reasoning");
        assert_eq!(
            output[0]["content"][0],
            json!({"type": "reasoning_text", "text": "Thinking."})
        );
        assert_eq!(output[1]["type"], "message");
        assert_eq!(events[6]["output_index"], 0);
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "response.output_text.delta" && e["output_index"] == 1)
        );
    }
}
