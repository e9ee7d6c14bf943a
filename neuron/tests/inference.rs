//! Real inference through the real `neuron` binary on the embedded model.

mod support;

use std::time::{Duration, Instant};

use cortex_common::event::{EventKind, FinishReason};
use serde_json::json;
use support::{Neuron, france, stream_text};

#[tokio::test]
async fn france_greedy_says_paris_with_usage() {
    let n = Neuron::start(&[]);
    let loaded = n.load("smol", "embedded").await;
    assert_eq!(loaded["changed"], true);
    assert!(loaded["memory_bytes"].as_u64().unwrap() > 50_000_000);

    let (status, body) = n.chat(france(40)).await;
    assert_eq!(status, 200, "{body}");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("Paris"), "got {text:?}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 10, "chat template adds a system turn: {prompt}");
    assert!(completion > 3 && completion < 40, "{completion}");
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);

    // A cut-off answer reports `length` and exactly max_tokens tokens.
    let (_, cut) = n.chat(france(3)).await;
    assert_eq!(cut["choices"][0]["finish_reason"], "length");
    assert_eq!(cut["usage"]["completion_tokens"], 3);
    assert_eq!(cut["usage"]["prompt_tokens"].as_u64(), Some(prompt));
    // max_completion_tokens wins over max_tokens.
    let mut both = france(40);
    both["max_completion_tokens"] = json!(2);
    let (_, two) = n.chat(both).await;
    assert_eq!(two["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn stream_and_non_stream_agree_for_a_seed() {
    let n = Neuron::start(&[]);
    n.load("smol", "embedded").await;
    let body = json!({
        "model": "smol",
        "messages": [{"role": "user", "content": "Write one sentence about the sea."}],
        "temperature": 0.9, "top_p": 0.95, "top_k": 40, "seed": 1234, "max_tokens": 24,
        "stream_options": {"include_usage": true},
    });
    let (status, whole) = n.chat(body.clone()).await;
    assert_eq!(status, 200, "{whole}");
    let chunks = n.chat_stream(body.clone()).await;
    let streamed = stream_text(&chunks);
    assert_eq!(
        streamed,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    // First chunk carries the role, then content, then finish_reason, usage, [DONE].
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks.last().unwrap(), "[DONE]");
    let usage_chunk = &chunks[chunks.len() - 2];
    assert_eq!(usage_chunk["choices"].as_array().unwrap().len(), 0);
    // The same counts; the streamed run found the prompt cached.
    for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(
            usage_chunk["usage"][field], whole["usage"][field],
            "{field}"
        );
    }
    assert_eq!(
        usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
        whole["usage"]["prompt_tokens"].as_u64().map(|n| n - 1),
        "a repeated prompt is served from the cache up to its last token"
    );
    let finish = &chunks[chunks.len() - 3];
    assert_eq!(
        finish["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );

    // Another seed gives (almost surely) another text; the same seed the same.
    let mut other = body.clone();
    other["seed"] = json!(99);
    let (_, again) = n.chat(body).await;
    assert_eq!(
        again["choices"][0]["message"]["content"],
        whole["choices"][0]["message"]["content"]
    );
    let (_, different) = n.chat(other).await;
    assert_ne!(
        different["choices"][0]["message"]["content"],
        whole["choices"][0]["message"]["content"]
    );
}

#[tokio::test]
async fn stop_sequences_cut_the_text_before_the_match() {
    let n = Neuron::start(&[]);
    n.load("smol", "embedded").await;
    let (_, full) = n.chat(france(40)).await;
    let text = full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let at = text.find("Paris").expect("Paris in the answer");
    let mut body = france(40);
    body["stop"] = json!(["Paris"]);
    let (_, cut) = n.chat(body.clone()).await;
    assert_eq!(
        cut["choices"][0]["message"]["content"].as_str().unwrap(),
        &text[..at]
    );
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    assert_eq!(cut["choices"][0]["stop_reason"], "Paris");
    let chunks = n.chat_stream(body).await;
    assert_eq!(stream_text(&chunks), &text[..at]);
    let last = &chunks[chunks.len() - 2];
    assert_eq!(last["choices"][0]["stop_reason"], "Paris", "{last}");
    // An answer that ended on its own says nothing of stop sequences.
    assert!(full["choices"][0].get("stop_reason").is_none());
}

#[tokio::test]
async fn events_follow_a_load_and_a_request_in_order() {
    let n = Neuron::start(&[]);
    let mut rx = n.events().await;
    n.load("smol", "embedded").await;
    let (_, body) = n.chat(france(3)).await;
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap() as u32;

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen
        .iter()
        .any(|k: &EventKind| matches!(k, EventKind::RequestFinished { .. }))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, rx.recv())
            .await
            .expect("events in time")
            .expect("stream open");
        assert_eq!(ev.v, cortex_common::event::EVENT_SCHEMA_VERSION);
        assert!(ev.ts_ms > 0);
        seen.push(ev.kind);
    }
    let names: Vec<&str> = seen
        .iter()
        .map(|k| k.name())
        .filter(|n| *n != "device_stats")
        .collect();
    let pos = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name} missing from {names:?}"))
    };
    assert!(pos("model_load_started") < pos("model_load_progress"));
    assert!(pos("model_load_progress") < pos("model_loaded"));
    assert!(pos("model_loaded") < pos("request_started"));
    assert!(pos("request_started") < pos("request_first_token"));
    assert!(pos("request_first_token") < pos("request_finished"));
    let progress: Vec<(u64, u64)> = seen
        .iter()
        .filter_map(|k| match k {
            EventKind::ModelLoadProgress { done, total, .. } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );
    assert_eq!(progress.last().map(|p| p.0 == p.1), Some(true));
    let finished = seen.iter().find_map(|k| match k {
        EventKind::RequestFinished {
            ttft_ms,
            decode_tok_s,
            completion_tokens,
            ended,
            finish_reason,
            ..
        } => Some((
            *ttft_ms,
            *decode_tok_s,
            *completion_tokens,
            *ended,
            finish_reason.clone(),
        )),
        _ => None,
    });
    let (ttft, tok_s, tokens, ended, reason) = finished.unwrap();
    assert!(ttft.unwrap() > 0.0);
    assert!(tok_s.unwrap() > 0.0);
    assert_eq!(tokens, completion);
    assert_eq!(ended, cortex_common::event::RequestEnd::Done);
    assert_eq!(reason, Some(FinishReason::Length));
}

#[tokio::test]
async fn concurrent_loads_of_one_model_load_it_once() {
    let n = Neuron::start(&[]);
    let mut rx = n.events().await;
    let (a, b) = tokio::join!(n.load("twin", "embedded"), n.load("twin", "embedded"));
    let changed = [
        a["changed"].as_bool().unwrap(),
        b["changed"].as_bool().unwrap(),
    ];
    assert_eq!(changed.iter().filter(|c| **c).count(), 1, "{a} {b}");
    // Already loaded is success, and changes nothing.
    let again = n.load("twin", "embedded").await;
    assert_eq!(again["changed"], false);
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"].as_array().unwrap().len(), 1);
    let mut starts = 0;
    let mut loaded = 0;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        match ev.kind {
            EventKind::ModelLoadStarted { .. } => starts += 1,
            EventKind::ModelLoaded { .. } => loaded += 1,
            _ => {}
        }
    }
    assert_eq!((starts, loaded), (1, 1));
}

#[tokio::test]
async fn control_plane_answers_while_generating() {
    let n = Neuron::start(&[]);
    n.load("smol", "embedded").await;
    let mut long = france(400);
    long["messages"][1]["content"] = json!("Tell me a very long story about a dragon.");
    long["temperature"] = json!(0.8);
    long["seed"] = json!(3);
    let url = n.at("/v1/chat/completions");
    let http = n.http.clone();
    let gen_task =
        tokio::spawn(async move { http.post(url).json(&long).send().await.map(|r| r.status()) });
    n.wait_model("smol", "a request running", |m| m["in_flight"] == 1)
        .await;
    for path in ["/health", "/models", "/discovery"] {
        let t = Instant::now();
        let (status, _) = n.get(path).await;
        let took = t.elapsed();
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(100),
            "{path} took {took:?} during generation"
        );
    }
    // Generation is still running: the probe did not just wait it out.
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"][0]["in_flight"], 1, "{models}");
    gen_task.abort();
}

#[tokio::test]
async fn discovery_describes_the_host() {
    let n = Neuron::start(&["--memory-limit-mb", "300"]);
    let (status, d) = n.get("/discovery").await;
    assert_eq!(status, 200);
    assert_eq!(d["name"], "test");
    assert!(d["cpu_cores"].as_u64().unwrap() >= 1);
    assert!(d["memory_total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(d["devices"][0]["id"], "cpu");
    assert_eq!(d["devices"][0]["memory_total_bytes"], 300u64 << 20);
    assert_eq!(d["devices"][0]["memory_used_bytes"], 0);
    assert!(
        d["candle_features"]
            .as_array()
            .unwrap()
            .contains(&json!("cpu"))
    );
    n.load("smol", "embedded").await;
    let (_, d) = n.get("/discovery").await;
    assert!(d["devices"][0]["memory_used_bytes"].as_u64().unwrap() > 50_000_000);
    let (_, h) = n.get("/health").await;
    assert_eq!(h["status"], "ok");
}

#[tokio::test]
async fn count_tokens_matches_the_usage_of_a_real_request() {
    let n = Neuron::start(&[]);
    n.load("smol", "embedded").await;
    let (status, counted) = n.post("/v1/chat/count_tokens", france(4)).await;
    assert_eq!(status, 200, "{counted}");
    let (_, done) = n.chat(france(4)).await;
    assert_eq!(counted["prompt_tokens"], done["usage"]["prompt_tokens"]);
    let (status, body) = n
        .post(
            "/v1/chat/count_tokens",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}
