//! The translated surfaces end to end — `/v1/messages` (+ count_tokens),
//! `/v1/responses`, `/v1/completions` — through a real gateway to a real
//! neuron serving the embedded 135M model. One fleet for the whole file;
//! each case is a function run in order by the single test. The model is
//! tiny: the cases assert shapes, stop reasons and token counts, never
//! wording.

mod support;

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use support::*;

const KEY: &str = "client-key";
const SYSTEM: &str = "You are a helpful assistant.";
const QUESTION: &str = "What is the capital of France?";

struct Fleet {
    neuron_url: String,
    neuron: cortex_process::Child,
    gw: Gateway,
}

impl Fleet {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self.send(path, body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("answer body");
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {text}"));
        (status, v)
    }

    async fn send(&self, path: &str, body: Value) -> reqwest::Response {
        self.gw
            .http
            .post(format!("{}{path}", self.gw.url))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// A streamed answer: status, content type and every SSE event
    /// (`event` name or "" , data), comments counted as ("comment", "").
    async fn stream(&self, path: &str, body: Value) -> (u16, String, Vec<(String, String)>) {
        let resp = self.send(path, body).await;
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ctype, read_events(resp).await)
    }
}

/// Every SSE event of a body, plus one ("comment", "") per comment line.
async fn read_events(resp: reqwest::Response) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut raw = resp.bytes_stream();
    let mut buf = String::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(60), raw.next())
            .await
            .expect("the stream progresses within 60 s");
        match next {
            Some(Ok(b)) => buf.push_str(&String::from_utf8_lossy(&b)),
            Some(Err(e)) => panic!("transport error mid-stream: {e}"),
            None => break,
        }
    }
    let comments = buf.lines().filter(|l| l.starts_with(':')).count();
    out.extend((0..comments).map(|_| ("comment".to_string(), String::new())));
    // Parse the events proper with a real SSE parser, in order.
    let bytes = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(buf))]);
    let mut s = bytes.eventsource();
    let mut events = Vec::new();
    while let Some(ev) = s.next().await {
        let ev = ev.expect("well-formed SSE");
        events.push((ev.event, ev.data));
    }
    // Comments first is only a count; events keep their order.
    out.extend(events);
    out
}

fn json_of(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"))
}

fn messages_body(system: Option<&str>, question: &str, max_tokens: u32) -> Value {
    let mut b = json!({
        "model": "smol",
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "messages": [{"role": "user", "content": question}],
    });
    if let Some(s) = system {
        b["system"] = json!(s);
    }
    b
}

fn text_of_message(m: &Value) -> String {
    m["content"]
        .as_array()
        .expect("content is a list")
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().expect("text block has text").to_string())
        .collect()
}

fn assert_anthropic_error(status: u16, body: &Value, want_status: u16, want_type: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], want_type, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_surface_end_to_end() {
    let a = neuron("a", 400);
    let gw = gateway_with(
        &[&a],
        "lru",
        &models_toml(&[("smol", ""), ("smol-cold", "")]),
        "keepalive_interval = \"100ms\"",
        &format!("api_keys = [\"{KEY}\"]"),
    )
    .await;
    let mut f = Fleet {
        neuron_url: a.url.clone(),
        neuron: a,
        gw,
    };

    count_tokens_cold_loads_and_matches_the_neuron(&f).await;
    messages_non_streaming(&f).await;
    messages_max_tokens_and_stop_sequences(&f).await;
    messages_streaming(&f).await;
    messages_stream_pings_while_the_model_loads(&f).await;
    messages_errors_and_auth(&f).await;
    responses_surface(&f).await;
    completions_surface(&f).await;
    tools_are_accepted(&f).await;
    messages_report_prompt_cache_reads(&f).await;
    metrics_count_translated_requests(&f).await;
    // Last: it takes the neuron down.
    messages_stream_fails_in_anthropic_shape_when_the_node_dies(&mut f).await;
}

async fn count_tokens_cold_loads_and_matches_the_neuron(f: &Fleet) {
    // Nothing is loaded yet: counting cold-loads the model.
    let (s, with_system) = f
        .post(
            "/v1/messages/count_tokens",
            json!({"model": "smol", "system": SYSTEM,
                   "messages": [{"role": "user", "content": QUESTION}]}),
        )
        .await;
    assert_eq!(s, 200, "{with_system}");
    let n = with_system["input_tokens"].as_u64().expect("input_tokens");
    assert!(n > 5, "{with_system}");
    assert_eq!(with_system.as_object().map(|o| o.len()), Some(1));

    // The neuron's own count of the same chat is the same number.
    let direct: Value = reqwest::Client::new()
        .post(format!("{}/v1/chat/count_tokens", f.neuron_url))
        .json(&json!({"model": "smol", "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION}]}))
        .send()
        .await
        .expect("neuron count_tokens")
        .json()
        .await
        .expect("neuron count JSON");
    assert_eq!(direct["prompt_tokens"].as_u64(), Some(n), "{direct}");

    // The system prompt goes through verbatim: without it the count differs.
    let (s, without) = f
        .post(
            "/v1/messages/count_tokens",
            json!({"model": "smol", "messages": [{"role": "user", "content": QUESTION}]}),
        )
        .await;
    assert_eq!(s, 200, "{without}");
    let m = without["input_tokens"].as_u64().expect("input_tokens");
    assert_ne!(m, n, "a system prompt must change the count");

    // A system prompt given as blocks counts like the same string.
    let (_, blocks) = f
        .post(
            "/v1/messages/count_tokens",
            json!({"model": "smol", "system": [{"type": "text", "text": SYSTEM}],
                   "messages": [{"role": "user", "content": QUESTION}]}),
        )
        .await;
    assert_eq!(blocks["input_tokens"].as_u64(), Some(n), "{blocks}");

    // Errors on count_tokens are Anthropic-shaped too.
    let (s, body) = f
        .post(
            "/v1/messages/count_tokens",
            json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_anthropic_error(s, &body, 404, "not_found_error");
}

async fn messages_non_streaming(f: &Fleet) {
    let (s, m) = f
        .post("/v1/messages", messages_body(Some(SYSTEM), QUESTION, 24))
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert!(
        m["id"].as_str().is_some_and(|i| i.starts_with("msg_")),
        "{m}"
    );
    assert!(m["model"].is_string());
    assert!(
        ["end_turn", "max_tokens"].contains(&m["stop_reason"].as_str().unwrap_or("")),
        "{m}"
    );
    assert!(m["stop_sequence"].is_null());
    let text = text_of_message(&m);
    assert!(!text.is_empty(), "{m}");
    assert!(
        text.contains("Paris"),
        "greedy answer with a system prompt: {text}"
    );
    // Usage: the prompt is exactly what count_tokens says.
    let (_, counted) = f
        .post(
            "/v1/messages/count_tokens",
            messages_body(Some(SYSTEM), QUESTION, 24),
        )
        .await;
    // Anthropic counts prompt-cache reads apart from `input_tokens`.
    let read = m["usage"]["cache_read_input_tokens"].as_u64().unwrap_or(0);
    assert_eq!(
        m["usage"]["input_tokens"].as_u64().map(|n| n + read),
        counted["input_tokens"].as_u64(),
        "{m}"
    );
    let out = m["usage"]["output_tokens"].as_u64().expect("output_tokens");
    assert!((1..=24).contains(&out), "{m}");
}

async fn messages_max_tokens_and_stop_sequences(f: &Fleet) {
    let (s, m) = f
        .post(
            "/v1/messages",
            messages_body(None, "Count: one, two, three", 3),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["stop_reason"], "max_tokens", "{m}");
    assert_eq!(m["usage"]["output_tokens"], 3, "{m}");

    // Greedy, so the same request with a stop sequence taken from the
    // middle of the answer ends right before it.
    let (_, full) = f
        .post("/v1/messages", messages_body(Some(SYSTEM), QUESTION, 24))
        .await;
    let text = text_of_message(&full);
    let (stop, at) = text
        .split_whitespace()
        .skip(1)
        .find_map(|w| {
            let at = text.find(w)?;
            (at > 0).then(|| (w.to_string(), at))
        })
        .unwrap_or_else(|| panic!("no word to stop at in {text:?}"));
    let mut body = messages_body(Some(SYSTEM), QUESTION, 24);
    body["stop_sequences"] = json!([stop]);
    let (s, cut) = f.post("/v1/messages", body).await;
    assert_eq!(s, 200, "{cut}");
    assert_eq!(text_of_message(&cut), text[..at], "stopped at {stop:?}");
    assert_eq!(cut["stop_reason"], "stop_sequence", "{cut}");
    assert_eq!(cut["stop_sequence"], json!(stop), "{cut}");
    assert!(
        cut["usage"]["output_tokens"].as_u64() < full["usage"]["output_tokens"].as_u64(),
        "{cut} vs {full}"
    );
}

/// Checks Anthropic's event grammar; returns the text and the final
/// `message_delta`.
fn check_anthropic_stream(events: &[(String, String)]) -> (String, Value) {
    let events: Vec<(&str, Value)> = events
        .iter()
        .filter(|(name, _)| name != "comment")
        .map(|(name, data)| {
            let v = json_of(data);
            assert_eq!(v["type"], name.as_str(), "event name = data.type");
            (name.as_str(), v)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    let start = &events[0].1["message"];
    assert!(start["id"].as_str().is_some_and(|i| i.starts_with("msg_")));
    assert_eq!(start["content"], json!([]));
    let mut text = String::new();
    let mut open: Option<u64> = None;
    let mut next_index = 0;
    let mut delta = Value::Null;
    for (name, v) in &events[1..] {
        match *name {
            "ping" => {}
            "content_block_start" => {
                assert!(open.is_none(), "{names:?}");
                assert_eq!(v["index"], next_index);
                open = v["index"].as_u64();
            }
            "content_block_delta" => {
                assert_eq!(v["index"].as_u64(), open, "delta outside its block");
                if v["delta"]["type"] == "text_delta" {
                    text.push_str(v["delta"]["text"].as_str().expect("text"));
                } else {
                    assert_eq!(v["delta"]["type"], "input_json_delta", "{v}");
                }
            }
            "content_block_stop" => {
                assert_eq!(v["index"].as_u64(), open);
                open = None;
                next_index += 1;
            }
            "message_delta" => {
                assert!(open.is_none());
                delta = v.clone();
            }
            "message_stop" => assert!(!delta.is_null(), "message_delta first"),
            other => panic!("unexpected event {other}: {v}"),
        }
    }
    (text, delta)
}

async fn messages_streaming(f: &Fleet) {
    let mut body = messages_body(Some(SYSTEM), QUESTION, 24);
    let (_, whole) = f.post("/v1/messages", body.clone()).await;
    body["stream"] = json!(true);
    let (s, ctype, events) = f.stream("/v1/messages", body).await;
    assert_eq!(s, 200);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let (text, delta) = check_anthropic_stream(&events);
    assert_eq!(text, text_of_message(&whole), "greedy: stream = non-stream");
    assert_eq!(delta["delta"]["stop_reason"], whole["stop_reason"]);
    assert_eq!(
        delta["usage"]["output_tokens"],
        whole["usage"]["output_tokens"]
    );

    // Cut off by max_tokens while streaming.
    let mut body = messages_body(None, "Count: one, two, three", 2);
    body["stream"] = json!(true);
    let (s, _, events) = f.stream("/v1/messages", body).await;
    assert_eq!(s, 200);
    let (_, delta) = check_anthropic_stream(&events);
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens", "{delta}");
    assert_eq!(delta["usage"]["output_tokens"], 2, "{delta}");
}

async fn messages_stream_pings_while_the_model_loads(f: &Fleet) {
    // `smol-cold` is not loaded: the stream opens with message_start, then
    // pings (every 100 ms here) until the model is there.
    let mut body = messages_body(Some(SYSTEM), QUESTION, 4);
    body["model"] = json!("smol-cold");
    body["stream"] = json!(true);
    let started = std::time::Instant::now();
    let (s, _, events) = f.stream("/v1/messages", body).await;
    let took = started.elapsed();
    assert_eq!(s, 200);
    let (_, delta) = check_anthropic_stream(&events);
    assert!(delta["delta"]["stop_reason"].is_string(), "{delta}");
    let pings = events.iter().filter(|(n, _)| n == "ping").count();
    if took > Duration::from_millis(800) {
        assert!(pings > 0, "a {took:?} cold stream sent no ping: {events:?}");
    }
    assert_eq!(
        events.iter().filter(|(n, _)| n == "comment").count(),
        0,
        "keepalives become pings, not comments, on the Anthropic surface"
    );
    eprintln!("cold stream took {took:?} with {pings} pings");
}

async fn messages_errors_and_auth(f: &Fleet) {
    // Unknown model: 404 not_found_error, streaming or not.
    let mut body = messages_body(None, "hi", 4);
    body["model"] = json!("no-such-model");
    let (s, e) = f.post("/v1/messages", body.clone()).await;
    assert_anthropic_error(s, &e, 404, "not_found_error");
    body["stream"] = json!(true);
    let (s, e) = f.post("/v1/messages", body).await;
    assert_anthropic_error(s, &e, 404, "not_found_error");

    // Malformed: not JSON; missing max_tokens; wrong role.
    let resp =
        f.gw.http
            .post(format!("{}/v1/messages", f.gw.url))
            .header("x-api-key", KEY)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("POST");
    let s = resp.status().as_u16();
    let e: Value = resp.json().await.expect("error JSON");
    assert_anthropic_error(s, &e, 400, "invalid_request_error");
    let (s, e) = f
        .post(
            "/v1/messages",
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_anthropic_error(s, &e, 400, "invalid_request_error");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("max_tokens"),
        "{e}"
    );
    let (s, e) = f
        .post(
            "/v1/messages",
            json!({"model": "smol", "max_tokens": 4, "messages": [{"role": "robot", "content": "hi"}]}),
        )
        .await;
    assert_anthropic_error(s, &e, 400, "invalid_request_error");

    // The client key: x-api-key (above) or Bearer; none or a wrong one is an
    // Anthropic-shaped 401 here and an OpenAI envelope on chat.
    let url = format!("{}/v1/messages", f.gw.url);
    let ok =
        f.gw.http
            .post(&url)
            .bearer_auth(KEY)
            .json(&messages_body(None, "hi", 1))
            .send()
            .await
            .expect("POST");
    assert_eq!(ok.status(), 200);
    for key in [None, Some("wrong")] {
        let mut req = f.gw.http.post(&url).json(&messages_body(None, "hi", 1));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.expect("POST");
        let s = resp.status().as_u16();
        let e: Value = resp.json().await.expect("error JSON");
        assert_anthropic_error(s, &e, 401, "authentication_error");
    }
    let resp =
        f.gw.http
            .post(format!("{}/v1/chat/completions", f.gw.url))
            .json(&chat_body("smol", 1, false))
            .send()
            .await
            .expect("POST");
    assert_eq!(resp.status(), 401);
    let e: Value = resp.json().await.expect("error JSON");
    assert_eq!(e["error"]["code"], "invalid_api_key", "{e}");
}

async fn responses_surface(f: &Fleet) {
    let body = json!({"model": "smol", "instructions": SYSTEM, "input": QUESTION,
                      "max_output_tokens": 24, "temperature": 0.0});
    let (s, r) = f.post("/v1/responses", body.clone()).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["object"], "response");
    assert!(
        r["id"].as_str().is_some_and(|i| i.starts_with("resp_")),
        "{r}"
    );
    assert!(
        ["completed", "incomplete"].contains(&r["status"].as_str().unwrap_or("")),
        "{r}"
    );
    assert_eq!(r["output"][0]["type"], "message", "{r}");
    assert_eq!(r["output"][0]["content"][0]["type"], "output_text", "{r}");
    let text = r["output"][0]["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(!text.is_empty());
    assert_eq!(r["instructions"], SYSTEM);
    let usage = &r["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["input_tokens"].as_u64().unwrap_or(0)
                + usage["output_tokens"].as_u64().unwrap_or(0)
        ),
        "{r}"
    );

    // Cut off: incomplete, for max_output_tokens.
    let (s, cut) = f
        .post(
            "/v1/responses",
            json!({"model": "smol", "input": "Count: one, two, three", "max_output_tokens": 2}),
        )
        .await;
    assert_eq!(s, 200, "{cut}");
    assert_eq!(cut["status"], "incomplete", "{cut}");
    assert_eq!(cut["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(cut["usage"]["output_tokens"], 2);

    // Streamed: typed events, numbered from 0, same text as non-streamed.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (s, ctype, events) = f.stream("/v1/responses", sbody).await;
    assert_eq!(s, 200);
    assert!(ctype.starts_with("text/event-stream"));
    let events: Vec<(String, Value)> = events
        .into_iter()
        .filter(|(n, _)| n != "comment")
        .map(|(n, d)| (n, json_of(&d)))
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..2],
        ["response.created", "response.in_progress"],
        "{names:?}"
    );
    let last = names.last().copied().unwrap_or("");
    assert!(
        ["response.completed", "response.incomplete"].contains(&last),
        "{names:?}"
    );
    assert!(names.contains(&"response.output_text.delta"), "{names:?}");
    assert!(names.contains(&"response.output_text.done"), "{names:?}");
    for (i, (n, v)) in events.iter().enumerate() {
        assert_eq!(v["type"], n.as_str());
        assert_eq!(v["sequence_number"], i, "{v}");
    }
    let streamed: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().expect("delta").to_string())
        .collect();
    assert_eq!(streamed, text);
    let final_obj = &events.last().expect("events").1["response"];
    assert_eq!(final_obj["output"][0]["content"][0]["text"], text.as_str());

    // Errors keep OpenAI's envelope here.
    let (s, e) = f
        .post(
            "/v1/responses",
            json!({"model": "no-such-model", "input": "hi"}),
        )
        .await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["error"]["code"], "model_not_found");
    let (s, e) = f.post("/v1/responses", json!({"model": "smol"})).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"]["type"], "invalid_request_error");
}

async fn completions_surface(f: &Fleet) {
    let body = json!({"model": "smol", "prompt": "Count: one, two, three", "max_tokens": 8,
                      "temperature": 0.0});
    let (s, c) = f.post("/v1/completions", body.clone()).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["object"], "text_completion");
    assert!(
        c["id"].as_str().is_some_and(|i| i.starts_with("cmpl-")),
        "{c}"
    );
    let text = c["choices"][0]["text"].as_str().expect("text").to_string();
    assert!(!text.is_empty());
    assert!(["stop", "length"].contains(&c["choices"][0]["finish_reason"].as_str().unwrap_or("")));
    assert!(c["usage"]["prompt_tokens"].as_u64() > Some(0));

    let (_, cut) = f
        .post(
            "/v1/completions",
            json!({"model": "smol", "prompt": "Count: one, two, three", "max_tokens": 2}),
        )
        .await;
    assert_eq!(cut["choices"][0]["finish_reason"], "length", "{cut}");
    assert_eq!(cut["usage"]["completion_tokens"], 2);

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let (s, _, events) = f.stream("/v1/completions", sbody).await;
    assert_eq!(s, 200);
    let data: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n != "comment")
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| json_of(d)).collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, text, "greedy: stream = non-stream");
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert!(
        chunks.iter().any(|c| c["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n >= 1)),
        "a usage chunk: {chunks:?}"
    );

    let (s, e) = f
        .post(
            "/v1/completions",
            json!({"model": "no-such-model", "prompt": "hi"}),
        )
        .await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["error"]["code"], "model_not_found");
}

async fn tools_are_accepted(f: &Fleet) {
    let tool = json!({"name": "get_weather", "description": "The weather in a city",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                       "required": ["city"]}});
    let body = json!({"model": "smol", "max_tokens": 24, "temperature": 0.0, "tools": [tool],
                      "messages": [{"role": "user", "content": "What is the weather in Paris?"}]});
    let (s, m) = f.post("/v1/messages", body.clone()).await;
    assert_eq!(s, 200, "{m}");
    assert!(
        ["end_turn", "max_tokens", "tool_use"].contains(&m["stop_reason"].as_str().unwrap_or("")),
        "{m}"
    );
    for b in m["content"].as_array().expect("content") {
        match b["type"].as_str() {
            Some("text") => assert!(b["text"].is_string()),
            Some("tool_use") => {
                assert!(b["id"].as_str().is_some_and(|i| !i.is_empty()), "{b}");
                assert!(b["name"].is_string() && b["input"].is_object(), "{b}");
            }
            other => panic!("unexpected block {other:?}: {b}"),
        }
    }
    // The tools reach the neuron's template (SmolLM2's ignores them, so no
    // count comparison here); counting a request with tools works.
    let (s, counted) = f.post("/v1/messages/count_tokens", body.clone()).await;
    assert_eq!(s, 200, "{counted}");
    assert!(counted["input_tokens"].as_u64() > Some(0), "{counted}");

    let mut sbody = body;
    sbody["stream"] = json!(true);
    let (s, _, events) = f.stream("/v1/messages", sbody).await;
    assert_eq!(s, 200);
    check_anthropic_stream(&events);

    // The same tool on chat completions.
    let (s, c) = f
        .post(
            "/v1/chat/completions",
            json!({"model": "smol", "max_tokens": 24, "temperature": 0.0,
                   "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                   "tools": [{"type": "function", "function": {"name": "get_weather",
                       "description": "The weather in a city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant", "{c}");
    assert!(c["choices"][0]["finish_reason"].is_string(), "{c}");
}

/// A conversation's second turn reuses the first turn's prefix on the
/// neuron; `/v1/messages` reports it as Anthropic does, as
/// `cache_read_input_tokens` apart from `input_tokens`, streamed and not.
async fn messages_report_prompt_cache_reads(f: &Fleet) {
    let story = "The lighthouse keeper climbed the spiral stairs every evening and lit the lamp. "
        .repeat(6);
    let first = messages_body(Some(SYSTEM), &story, 8);
    let (s, one) = f.post("/v1/messages", first.clone()).await;
    assert_eq!(s, 200, "{one}");
    let mut second = first.clone();
    let turns = second["messages"].as_array_mut().expect("messages");
    turns.push(json!({"role": "assistant", "content": text_of_message(&one)}));
    turns.push(json!({"role": "user", "content": "What did he light?"}));
    let (s, two) = f.post("/v1/messages", second.clone()).await;
    assert_eq!(s, 200, "{two}");
    let read = two["usage"]["cache_read_input_tokens"]
        .as_u64()
        .unwrap_or(0);
    let (_, counted) = f.post("/v1/messages/count_tokens", second.clone()).await;
    let total = counted["input_tokens"].as_u64().expect("count");
    assert!(
        read > total / 2,
        "most of turn 2 is read from the cache: {two}"
    );
    assert_eq!(
        two["usage"]["input_tokens"].as_u64(),
        Some(total - read),
        "{two}"
    );

    // Streamed: the final message_delta carries the same split.
    let mut third = second.clone();
    third["messages"]
        .as_array_mut()
        .expect("messages")
        .push(json!({"role": "assistant", "content": text_of_message(&two)}));
    third["messages"]
        .as_array_mut()
        .expect("messages")
        .push(json!({"role": "user", "content": "And then?"}));
    third["stream"] = json!(true);
    let (s, _, events) = f.stream("/v1/messages", third).await;
    assert_eq!(s, 200);
    let delta = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .map(|(_, d)| json_of(d))
        .expect("a message_delta event");
    assert!(
        delta["usage"]["cache_read_input_tokens"]
            .as_u64()
            .unwrap_or(0)
            > read,
        "{delta}"
    );
}

async fn metrics_count_translated_requests(f: &Fleet) {
    // Every surface is counted under the model like chat is.
    let smol =
        f.gw.metric_sum("cortex_requests_total", &["model=\"smol\""])
            .await;
    assert!(smol >= 20.0, "requests counted for smol: {smol}");
    let cold =
        f.gw.metric_sum("cortex_cold_starts_total", &["model=\"smol-cold\""])
            .await;
    assert_eq!(cold, 1.0);
}

async fn messages_stream_fails_in_anthropic_shape_when_the_node_dies(f: &mut Fleet) {
    let mut body = messages_body(None, "Write a long story about a dragon.", 400);
    body["stream"] = json!(true);
    body["temperature"] = json!(1.0);
    let resp = f.send("/v1/messages", body).await;
    assert_eq!(resp.status(), 200);
    let mut raw = resp.bytes_stream();
    let mut buf = String::new();
    while !buf.contains("event: content_block_delta") {
        let b = tokio::time::timeout(Duration::from_secs(60), raw.next())
            .await
            .expect("a first delta within 60 s")
            .expect("the stream goes on")
            .expect("bytes");
        buf.push_str(&String::from_utf8_lossy(&b));
    }
    f.neuron.kill();
    while let Some(b) = tokio::time::timeout(Duration::from_secs(30), raw.next())
        .await
        .expect("the stream ends within 30 s of the node dying")
    {
        buf.push_str(&String::from_utf8_lossy(&b.expect("bytes")));
    }
    let events: Vec<&str> = buf
        .split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("event: ")))
        .collect();
    assert_eq!(events.last(), Some(&"error"), "{buf}");
    assert!(!events.contains(&"message_stop"), "{buf}");
    let data = buf
        .rsplit("event: error\ndata: ")
        .next()
        .and_then(|d| d.lines().next())
        .expect("error data");
    let e = json_of(data);
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["error"]["type"], "api_error", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}
