//! Property tests for the API translators: every field a translator claims
//! to keep is kept, streams reassemble into what the non-streaming
//! translation says, and no input (valid or not) makes anything panic.

use std::collections::BTreeMap;

use cortex_common::error::{ApiError, ErrorKind};
use cortex_common::openai::{
    ChatChoice, ChatCompletionChunk, ChatCompletionResponse, ChatMessage, ChunkChoice, ChunkDelta,
    FinishReason, FunctionCall, FunctionCallDelta, MessageContent, ToolCall, ToolCallDelta, Usage,
};
use cortex_gateway::translate::anthropic::error::from_api_error;
use cortex_gateway::translate::anthropic::request as anthropic_request;
use cortex_gateway::translate::anthropic::response::to_anthropic_response;
use cortex_gateway::translate::anthropic::schema::{
    Content, ContentBlock, InputMessage, MessagesRequest, Metadata, StopReason, StreamEvent,
    SystemBlock, SystemPrompt, Tool, ToolResultContent,
};
use cortex_gateway::translate::anthropic::stream::{AnthropicStream, StreamContext};
use cortex_gateway::translate::completions::{self, schema::CompletionRequest};
use cortex_gateway::translate::responses::request as responses_request;
use cortex_gateway::translate::responses::response::{ResponsesContext, to_responses_response};
use cortex_gateway::translate::responses::schema::{ResponsesRequest, StreamEventKind};
use cortex_gateway::translate::responses::stream::ResponsesStream;
use cortex_gateway::translate::{SYSTEM_BLOCK_SEPARATOR, SseEvent};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---------- strategies ----------

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,!?é\n\"\\\\{}]{0,24}"
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        text().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z_]{1,8}".boxed(),
                    // Keys the parsers look for, so arbitrary input reaches deep code.
                    prop::sample::select(vec![
                        "type",
                        "role",
                        "content",
                        "text",
                        "model",
                        "messages",
                        "max_tokens",
                        "input",
                        "name",
                        "arguments",
                        "tool_calls",
                        "choices",
                        "delta",
                        "system",
                        "tools",
                        "id",
                        "tool_use_id",
                        "prompt",
                        "usage",
                        "index",
                        "source",
                    ])
                    .prop_map(str::to_string)
                    .boxed(),
                ],
                inner,
                0..6
            )
            .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn args_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z]{1,6}", json_leaf(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn block() -> impl Strategy<Value = ContentBlock> {
    prop_oneof![
        text().prop_map(|text| ContentBlock::Text { text }),
        ("[a-z0-9_]{1,10}", "[a-z_]{1,8}", args_object()).prop_map(|(id, name, input)| {
            ContentBlock::ToolUse {
                id: format!("toolu_{id}"),
                name,
                input: Value::Object(input),
            }
        }),
        ("[a-z0-9_]{1,10}", prop::option::of(text())).prop_map(|(id, content)| {
            ContentBlock::ToolResult {
                tool_use_id: format!("toolu_{id}"),
                content: content.map(ToolResultContent::Text),
                is_error: None,
            }
        }),
    ]
}

fn message() -> impl Strategy<Value = InputMessage> {
    (
        prop::sample::select(vec!["user", "assistant"]),
        prop_oneof![
            text().prop_map(Content::Text),
            prop::collection::vec(block(), 0..5).prop_map(Content::Blocks)
        ],
    )
        .prop_map(|(role, content)| {
            // Keep each block in the role Anthropic allows it in.
            let content = match content {
                Content::Blocks(blocks) => Content::Blocks(
                    blocks
                        .into_iter()
                        .filter(|b| match b {
                            ContentBlock::ToolUse { .. } => role == "assistant",
                            ContentBlock::ToolResult { .. } => role == "user",
                            _ => true,
                        })
                        .collect(),
                ),
                c => c,
            };
            InputMessage {
                role: role.to_string(),
                content,
            }
        })
}

fn messages_request() -> impl Strategy<Value = MessagesRequest> {
    (
        "[a-z0-9.-]{1,12}",
        prop::collection::vec(message(), 0..6),
        1u32..100_000,
        prop::option::of(prop_oneof![
            text().prop_map(SystemPrompt::Text),
            prop::collection::vec(text().prop_map(|text| SystemBlock::Text { text }), 0..4)
                .prop_map(SystemPrompt::Blocks),
        ]),
        prop::option::of(prop::collection::vec(text(), 0..3)),
        // Binary fractions: serde_json's default float parsing is not
        // guaranteed to round-trip every f64 to the last bit.
        (
            prop::option::of((0u32..128).prop_map(|n| f64::from(n) / 64.0)),
            prop::option::of((0u32..64).prop_map(|n| f64::from(n) / 64.0)),
            prop::option::of(1u32..100),
        ),
        prop::option::of("[a-z0-9-]{1,10}"),
        prop::option::of(any::<bool>()),
        prop::collection::vec(("[a-z_]{1,8}", prop::option::of(text())), 0..3),
    )
        .prop_map(
            |(
                model,
                messages,
                max_tokens,
                system,
                stop,
                (temperature, top_p, top_k),
                user,
                stream,
                tools,
            )| {
                MessagesRequest {
                    model,
                    messages,
                    max_tokens,
                    system,
                    stop_sequences: stop,
                    temperature,
                    top_p,
                    top_k,
                    metadata: user.map(|u| Metadata { user_id: Some(u) }),
                    stream,
                    tools: (!tools.is_empty()).then(|| {
                        tools
                            .into_iter()
                            .map(|(name, description)| Tool {
                                name,
                                description,
                                input_schema: Some(json!({"type": "object"})),
                                kind: None,
                            })
                            .collect()
                    }),
                    tool_choice: None,
                    thinking: None,
                }
            },
        )
}

/// Generated text without anything that could open a `<tool_call>` tag.
fn plain() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,!?é\n]{0,30}"
}

fn finish() -> impl Strategy<Value = Option<FinishReason>> {
    prop::option::of(prop::sample::select(vec![
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::ToolCalls,
    ]))
}

/// An upstream answer: text, tool calls (object arguments), finish, usage.
#[derive(Debug, Clone)]
struct Answer {
    text: String,
    calls: Vec<(String, Map<String, Value>)>,
    finish: Option<FinishReason>,
    usage: (u32, u32),
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        plain(),
        prop::collection::vec(("[a-z_]{1,8}", args_object()), 0..3),
        finish(),
        (0u32..10_000, 0u32..10_000),
    )
        .prop_map(|(text, calls, finish, usage)| Answer {
            text,
            calls,
            finish,
            usage,
        })
}

impl Answer {
    fn response(&self) -> ChatCompletionResponse {
        ChatCompletionResponse {
            id: "chatcmpl-p".into(),
            object: "chat.completion".into(),
            created: 1,
            model: "m".into(),
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessage {
                    role: "assistant".into(),
                    content: Some(MessageContent::Text(self.text.clone())),
                    tool_calls: (!self.calls.is_empty()).then(|| {
                        self.calls
                            .iter()
                            .enumerate()
                            .map(|(i, (name, args))| ToolCall {
                                id: format!("call_{i}"),
                                kind: "function".into(),
                                function: FunctionCall {
                                    name: name.clone(),
                                    arguments: Value::Object(args.clone()).to_string(),
                                },
                            })
                            .collect()
                    }),
                    ..Default::default()
                },
                finish_reason: self.finish,
                stop_reason: None,
            }],
            usage: Usage::new(self.usage.0, self.usage.1),
        }
    }

    /// The same answer as a chunk stream, text split at `cuts`, each
    /// call's arguments split in two.
    fn chunks(&self, cuts: &[usize]) -> Vec<ChatCompletionChunk> {
        let chunk = |content: Option<String>,
                     finish: Option<FinishReason>,
                     usage: Option<Usage>| ChatCompletionChunk {
            id: "chatcmpl-p".into(),
            object: "chat.completion.chunk".into(),
            created: 1,
            model: "m".into(),
            choices: if usage.is_some() {
                vec![]
            } else {
                vec![ChunkChoice {
                    index: 0,
                    delta: ChunkDelta {
                        content,
                        ..Default::default()
                    },
                    finish_reason: finish,
                    stop_reason: None,
                }]
            },
            usage,
        };
        let chars: Vec<char> = self.text.chars().collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
        points.push(0);
        points.push(chars.len());
        points.sort_unstable();
        points.dedup();
        let mut out = Vec::new();
        for w in points.windows(2) {
            let piece: String = chars[w[0]..w[1]].iter().collect();
            out.push((chunk(Some(piece), None, None), vec![]));
        }
        for (i, (name, args)) in self.calls.iter().enumerate() {
            let json = Value::Object(args.clone()).to_string();
            let mid = json
                .char_indices()
                .nth(json.chars().count() / 2)
                .map_or(0, |(b, _)| b);
            out.push((
                chunk(None, None, None),
                vec![ToolCallDelta {
                    index: i as u32,
                    id: Some(format!("call_{i}")),
                    kind: Some("function".into()),
                    function: Some(FunctionCallDelta {
                        name: Some(name.clone()),
                        arguments: Some(json[..mid].to_string()),
                    }),
                }],
            ));
            out.push((
                chunk(None, None, None),
                vec![ToolCallDelta {
                    index: i as u32,
                    function: Some(FunctionCallDelta {
                        name: None,
                        arguments: Some(json[mid..].to_string()),
                    }),
                    ..Default::default()
                }],
            ));
        }
        out.push((chunk(None, self.finish, None), vec![]));
        out.push((
            chunk(None, None, Some(Usage::new(self.usage.0, self.usage.1))),
            vec![],
        ));
        out.into_iter()
            .map(|(mut chunk, calls)| {
                if !calls.is_empty() {
                    chunk.choices[0].delta.tool_calls = Some(calls);
                }
                chunk
            })
            .collect()
    }
}

/// Rebuild a message from Anthropic stream events as the SDKs do, checking
/// the event grammar on the way.
fn accumulate(events: &[StreamEvent]) -> (Vec<Value>, Value, Value) {
    assert!(
        matches!(events.first(), Some(StreamEvent::MessageStart { .. })),
        "{events:?}"
    );
    assert!(matches!(events.last(), Some(StreamEvent::MessageStop)));
    let mut blocks: Vec<Value> = Vec::new();
    let mut open: Option<u32> = None;
    let mut json_buf = String::new();
    let (mut stop, mut usage) = (Value::Null, Value::Null);
    for ev in &events[1..events.len() - 1] {
        match ev {
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                assert_eq!(open, None, "a block opened while another was open");
                assert_eq!(*index as usize, blocks.len(), "block indices run 0, 1, …");
                open = Some(*index);
                blocks.push(serde_json::to_value(content_block).unwrap());
                json_buf.clear();
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                assert_eq!(open, Some(*index));
                let b = &mut blocks[*index as usize];
                match delta {
                    cortex_gateway::translate::anthropic::schema::BlockDelta::TextDelta {
                        text,
                    } => {
                        let t = b["text"].as_str().unwrap().to_string() + text;
                        b["text"] = Value::String(t);
                    }
                    cortex_gateway::translate::anthropic::schema::BlockDelta::InputJsonDelta {
                        partial_json,
                    } => json_buf.push_str(partial_json),
                    cortex_gateway::translate::anthropic::schema::BlockDelta::ThinkingDelta {
                        thinking,
                    } => {
                        let t = b["thinking"].as_str().unwrap().to_string() + thinking;
                        b["thinking"] = Value::String(t);
                    }
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                assert_eq!(open, Some(*index));
                let b = &mut blocks[*index as usize];
                if b["type"] == "tool_use" {
                    b["input"] = serde_json::from_str(&json_buf).unwrap();
                }
                open = None;
            }
            StreamEvent::MessageDelta { delta, usage: u } => {
                assert_eq!(open, None, "message_delta after every block closed");
                stop = serde_json::to_value(delta).unwrap();
                usage = serde_json::to_value(u).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (blocks, stop, usage)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Anthropic request → chat keeps model, system (one leading message,
    /// verbatim), parameters, every text, every tool_use and tool_result.
    #[test]
    fn anthropic_request_keeps_its_fields(req in messages_request()) {
        // The wire form parses back to the same request.
        let wire = serde_json::to_string(&req).unwrap();
        prop_assert_eq!(&serde_json::from_str::<MessagesRequest>(&wire).unwrap(), &req);

        let chat = anthropic_request::to_chat_request(&req).unwrap();
        prop_assert_eq!(&chat.model, &req.model);
        prop_assert_eq!(chat.max_tokens, Some(req.max_tokens));
        prop_assert_eq!(chat.temperature, req.temperature);
        prop_assert_eq!(chat.top_p, req.top_p);
        prop_assert_eq!(chat.top_k, req.top_k);
        prop_assert_eq!(chat.stop_sequences(), req.stop_sequences.clone().unwrap_or_default());
        prop_assert_eq!(chat.user.clone(), req.metadata.as_ref().and_then(|m| m.user_id.clone()));
        prop_assert_eq!(chat.is_stream(), req.is_stream());
        prop_assert_eq!(chat.include_usage(), req.is_stream());

        let want_system = match &req.system {
            None => None,
            Some(SystemPrompt::Text(s)) => Some(s.clone()),
            Some(SystemPrompt::Blocks(b)) if b.is_empty() => None,
            Some(SystemPrompt::Blocks(b)) => Some(b.iter().map(|b| b.text()).collect::<Vec<_>>().join(SYSTEM_BLOCK_SEPARATOR)),
        };
        let systems: Vec<&ChatMessage> = chat.messages.iter().filter(|m| m.role == "system").collect();
        match want_system {
            None => prop_assert!(systems.is_empty()),
            Some(s) => {
                prop_assert_eq!(systems.len(), 1);
                prop_assert_eq!(&chat.messages[0], &ChatMessage::text("system", &s));
            }
        }

        // Every text, tool_use and tool_result (assistant text blocks of one
        // turn are joined into one string).
        let mut want = Vec::new();
        for m in &req.messages {
            match &m.content {
                Content::Text(s) => want.push(format!("{}:text:{s}", m.role)),
                Content::Blocks(blocks) => {
                    let mut joined = String::new();
                    for b in blocks {
                        match b {
                            ContentBlock::Text { text } if m.role == "assistant" => joined.push_str(text),
                            ContentBlock::Text { text } => want.push(format!("{}:text:{text}", m.role)),
                            ContentBlock::ToolUse { id, name, input } => want.push(format!("call:{id}:{name}:{input}")),
                            ContentBlock::ToolResult { tool_use_id, content, .. } => want.push(format!(
                                "result:{tool_use_id}:{}",
                                match content { Some(ToolResultContent::Text(s)) => s.clone(), _ => String::new() }
                            )),
                            _ => {}
                        }
                    }
                    if m.role == "assistant" { want.push(format!("assistant:text:{joined}")); }
                }
            }
        }
        let mut got = Vec::new();
        for m in chat.messages.iter().skip(usize::from(!systems.is_empty())) {
            match m.role.as_str() {
                "tool" => got.push(format!(
                    "result:{}:{}",
                    m.tool_call_id.clone().unwrap(),
                    m.content.as_ref().and_then(|c| c.as_text()).unwrap()
                )),
                role => {
                    match &m.content {
                        Some(MessageContent::Text(s)) => got.push(format!("{role}:text:{s}")),
                        Some(MessageContent::Parts(parts)) => for p in parts {
                            got.push(format!("{role}:text:{}", p.text.clone().unwrap_or_default()));
                        },
                        None => {}
                    }
                    for c in m.tool_calls.iter().flatten() {
                        let input: Value = serde_json::from_str(&c.function.arguments).unwrap();
                        got.push(format!("call:{}:{}:{input}", c.id, c.function.name));
                    }
                }
            }
        }
        // Empty texts carry nothing (and an empty turn may or may not become a message).
        for v in [&mut want, &mut got] {
            v.retain(|s| !s.ends_with(":text:"));
            v.sort();
        }
        prop_assert_eq!(got, want);

        let tools = chat.tools.clone().unwrap_or_default();
        prop_assert_eq!(tools.len(), req.tools.as_ref().map_or(0, Vec::len));
        for (t, orig) in tools.iter().zip(req.tools.iter().flatten()) {
            prop_assert_eq!(&t["function"]["name"], &json!(orig.name));
            prop_assert_eq!(&t["function"]["parameters"], orig.input_schema.as_ref().unwrap());
        }
    }

    /// Chat answer → Anthropic message keeps text, every call (id, name,
    /// input object), usage, and maps the stop reason.
    #[test]
    fn anthropic_response_keeps_its_fields(a in answer()) {
        let m = to_anthropic_response(&a.response());
        let mut blocks = m.content.iter();
        if !a.text.is_empty() {
            prop_assert_eq!(blocks.next(), Some(&ContentBlock::Text { text: a.text.clone() }));
        }
        for (i, (name, args)) in a.calls.iter().enumerate() {
            prop_assert_eq!(blocks.next(), Some(&ContentBlock::ToolUse {
                id: format!("call_{i}"), name: name.clone(), input: Value::Object(args.clone())
            }));
        }
        prop_assert!(blocks.next().is_none());
        prop_assert_eq!(m.usage.input_tokens, a.usage.0);
        prop_assert_eq!(m.usage.output_tokens, a.usage.1);
        let want = match a.finish {
            Some(FinishReason::Length) => StopReason::MaxTokens,
            _ if !a.calls.is_empty() => StopReason::ToolUse,
            Some(FinishReason::ToolCalls) => StopReason::ToolUse,
            _ => StopReason::EndTurn,
        };
        prop_assert_eq!(m.stop_reason, Some(want));
    }

    /// However the upstream splits its stream, the Anthropic events obey
    /// the event grammar and rebuild the non-streaming message.
    #[test]
    fn anthropic_stream_rebuilds_the_message(a in answer(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let mut tr = AnthropicStream::new(StreamContext { id: "msg_p".into(), model: "m".into(), input_tokens: 0 });
        let mut events = Vec::new();
        tr.start(&mut events);
        for c in a.chunks(&cuts) {
            tr.push(&c, &mut events);
        }
        tr.finish(&mut events);
        let (blocks, stop, usage) = accumulate(&events);
        let full = serde_json::to_value(to_anthropic_response(&a.response())).unwrap();
        prop_assert_eq!(&Value::Array(blocks), &full["content"]);
        prop_assert_eq!(&stop["stop_reason"], &full["stop_reason"]);
        prop_assert_eq!(&usage["output_tokens"], &full["usage"]["output_tokens"]);
        prop_assert_eq!(&usage["input_tokens"], &full["usage"]["input_tokens"]);
        // Every event serialises to one SSE frame named after its type.
        for e in &events {
            let sse = e.to_sse();
            let data: Value = serde_json::from_str(sse.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap();
            prop_assert_eq!(data["type"].as_str(), Some(e.name()));
        }
    }

    /// The Responses stream's final object equals its deltas and the
    /// non-streaming translation; sequence numbers count from 0.
    #[test]
    fn responses_stream_matches_non_streaming(a in answer(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let req: ResponsesRequest = serde_json::from_str(r#"{"model":"m","input":"x"}"#).unwrap();
        let ctx = ResponsesContext::for_request(&req);
        let mut tr = ResponsesStream::new(ctx.clone());
        let mut events = Vec::new();
        for c in a.chunks(&cuts) {
            tr.push(&c, &mut events);
        }
        tr.finish(&mut events);
        let mut text = String::new();
        for (i, e) in events.iter().enumerate() {
            prop_assert_eq!(e.sequence_number, i as u64);
            if let StreamEventKind::OutputTextDelta { delta, .. } = &e.kind { text.push_str(delta); }
        }
        prop_assert_eq!(&text, &a.text);
        let last = match &events.last().unwrap().kind {
            StreamEventKind::Completed { response } | StreamEventKind::Incomplete { response } => serde_json::to_value(response).unwrap(),
            other => panic!("{other:?}"),
        };
        let full = serde_json::to_value(to_responses_response(&a.response(), &ctx)).unwrap();
        prop_assert_eq!(&last["status"], &full["status"]);
        prop_assert_eq!(&last["usage"], &full["usage"]);
        let strip = |v: &Value| -> Vec<Value> {
            v.as_array().unwrap().iter().map(|item| {
                let mut item = item.clone();
                item.as_object_mut().unwrap().remove("id");
                item
            }).collect()
        };
        prop_assert_eq!(strip(&last["output"]), strip(&full["output"]));
    }

    /// Arbitrary JSON never panics any parser or translator.
    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        let s = v.to_string();
        if let Ok(r) = serde_json::from_value::<MessagesRequest>(v.clone()) { let _ = anthropic_request::to_chat_request(&r); }
        if let Ok(r) = serde_json::from_value::<ResponsesRequest>(v.clone()) { let _ = responses_request::to_chat_request(&r); }
        if let Ok(r) = serde_json::from_value::<CompletionRequest>(v.clone()) { let _ = completions::to_chat_request(&r); }
        if let Ok(r) = serde_json::from_value::<ChatCompletionResponse>(v.clone()) {
            let _ = to_anthropic_response(&r);
        }
        if let Ok(chunk) = serde_json::from_str::<ChatCompletionChunk>(&s) {
            let mut tr = AnthropicStream::new(StreamContext { id: "m".into(), model: "m".into(), input_tokens: 0 });
            let mut out = Vec::new();
            tr.push(&chunk, &mut out);
            tr.finish(&mut out);
        }
        let kind = ErrorKind::from_status(400 + (s.len() % 200) as u16);
        let (status, body) = from_api_error(&ApiError::new(kind, "x", s));
        prop_assert!((400..600).contains(&status));
        prop_assert_eq!(body.kind, "error");
    }

    /// Arbitrary bytes as a request body are an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = serde_json::from_slice::<MessagesRequest>(&b);
        let _ = serde_json::from_slice::<ResponsesRequest>(&b);
        let _ = serde_json::from_slice::<CompletionRequest>(&b);
        let _ = serde_json::from_slice::<ChatCompletionChunk>(&b);
    }
}
