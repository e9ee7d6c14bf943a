//! Translation cost per request and per streamed event (goal: < 5 µs per
//! streamed event). Stream benches translate a 256-chunk upstream stream
//! end to end — parse the upstream `data:` JSON, translate, serialise each
//! outgoing SSE frame — so time per iteration / 256 is the per-event cost.
//!
//!     cargo bench -p cortex-gateway --bench translate

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use cortex_common::openai::{ChatCompletionChunk, ChatCompletionResponse};
use cortex_gateway::translate::SseEvent;
use cortex_gateway::translate::anthropic::request as anthropic_request;
use cortex_gateway::translate::anthropic::response::to_anthropic_response;
use cortex_gateway::translate::anthropic::schema::MessagesRequest;
use cortex_gateway::translate::anthropic::stream::{AnthropicStream, StreamContext};
use cortex_gateway::translate::responses::request as responses_request;
use cortex_gateway::translate::responses::response::ResponsesContext;
use cortex_gateway::translate::responses::schema::ResponsesRequest;
use cortex_gateway::translate::responses::stream::ResponsesStream;

const EVENTS: usize = 256;

fn claude_code_request() -> String {
    serde_json::json!({
        "model": "qwen2.5-0.5b", "max_tokens": 4096, "stream": true,
        "system": [{"type":"text","text":"You are Claude Code, an interactive CLI tool. ".repeat(40),"cache_control":{"type":"ephemeral"}},
                   {"type":"text","text":"Environment: linux, cwd /repo"}],
        "messages": [
            {"role":"user","content":[{"type":"text","text":"<system-reminder>context</system-reminder>"},{"type":"text","text":"Fix the failing test in src/lib.rs"}]},
            {"role":"assistant","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_1","name":"Read","input":{"file_path":"/repo/src/lib.rs"}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"fn main() {}\n".repeat(50)}]}
        ],
        "tools": (0..12).map(|i| serde_json::json!({"name": format!("Tool{i}"), "description": "Does a thing. ".repeat(10),
            "input_schema": {"type":"object","properties":{"path":{"type":"string"},"limit":{"type":"integer"}},"required":["path"]}})).collect::<Vec<_>>(),
        "temperature": 0.7
    })
    .to_string()
}

fn text_chunk(i: usize) -> String {
    serde_json::json!({"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"qwen2.5-0.5b",
        "choices":[{"index":0,"delta":{"content":format!(" tok{i}")},"finish_reason":null}]})
    .to_string()
}

fn bench_requests(c: &mut Criterion) {
    let body = claude_code_request();
    let req: MessagesRequest = serde_json::from_str(&body).unwrap();
    let mut g = c.benchmark_group("request");
    g.bench_function("anthropic_translate_only", |b| {
        b.iter(|| anthropic_request::to_chat_request(black_box(&req)).unwrap())
    });
    g.bench_function("anthropic_parse_translate_serialize", |b| {
        b.iter(|| {
            let req: MessagesRequest = serde_json::from_str(black_box(&body)).unwrap();
            serde_json::to_vec(&anthropic_request::to_chat_request(&req).unwrap()).unwrap()
        })
    });
    let rbody = r#"{"model":"m","instructions":"Be terse.","input":[{"role":"user","content":"hi"},
        {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"ok"}]}"#;
    g.bench_function("responses_parse_translate_serialize", |b| {
        b.iter(|| {
            let req: ResponsesRequest = serde_json::from_str(black_box(rbody)).unwrap();
            serde_json::to_vec(&responses_request::to_chat_request(&req).unwrap()).unwrap()
        })
    });
    let resp: ChatCompletionResponse = serde_json::from_str(
        r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"finish_reason":"tool_calls",
        "message":{"role":"assistant","content":"Checking the file now.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"Read","arguments":"{\"file_path\":\"/repo/src/lib.rs\"}"}}]}}],
        "usage":{"prompt_tokens":900,"completion_tokens":40,"total_tokens":940}}"#,
    )
    .unwrap();
    g.bench_function("anthropic_response_translate_serialize", |b| {
        b.iter(|| serde_json::to_vec(&to_anthropic_response(black_box(&resp))).unwrap())
    });
    g.finish();
}

/// One stream as a surface translates it: each upstream chunk parsed,
/// pushed, and what it yields written as SSE; the bytes written.
fn translate<E: SseEvent>(
    chunks: &[String],
    mut push: impl FnMut(&ChatCompletionChunk, &mut Vec<E>),
) -> usize {
    let mut out = Vec::with_capacity(4);
    let mut bytes = 0;
    for data in chunks {
        let chunk: ChatCompletionChunk = serde_json::from_str(black_box(data)).unwrap();
        push(&chunk, &mut out);
        for ev in out.drain(..) {
            bytes += ev.to_sse().len();
        }
    }
    bytes
}

fn bench_streams(c: &mut Criterion) {
    let chunks: Vec<String> = (0..EVENTS).map(text_chunk).collect();
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("anthropic_256_events", |b| {
        b.iter(|| {
            let mut tr = AnthropicStream::new(StreamContext {
                id: "msg_b".into(),
                model: "qwen2.5-0.5b".into(),
                input_tokens: 0,
            });
            translate(&chunks, |c, out| tr.push(c, out))
        })
    });
    let req: ResponsesRequest =
        serde_json::from_str(r#"{"model":"qwen2.5-0.5b","input":"hi"}"#).unwrap();
    let ctx = ResponsesContext::for_request(&req);
    g.bench_function("responses_256_events", |b| {
        b.iter(|| {
            let mut tr = ResponsesStream::new(ctx.clone());
            translate(&chunks, |c, out| tr.push(c, out))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_requests, bench_streams);
criterion_main!(benches);
