//! The gateway when things go wrong around it, with real processes on
//! loopback: long generations under a short idle timeout, neurons killed
//! while requests wait in their queues, and clients that never finish
//! their request headers.

mod support;

use std::time::{Duration, Instant};

use cortex_common::event::EventKind;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use support::*;

/// A chat that keeps the model talking for a while.
fn long_chat(model: &str, max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "messages": [{"role": "user", "content": "Write the numbers from one to five hundred in words, one per line."}],
    })
}

/// Only silence counts against `upstream_idle_timeout`: a non-streamed
/// answer that takes several times the timeout in total, while tokens keep
/// coming, succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_unstreamed_answer_outlives_a_short_idle_timeout() {
    let (_a, gw) = smol_on_one_node("upstream_idle_timeout = \"1s\"").await;
    // Warm: the cold load is not what this is about.
    gw.warm("smol").await;

    let started = Instant::now();
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&long_chat("smol", 300, false))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion", "{body}");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty(), "{body}");
    let tokens = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(
        tokens > 20,
        "the answer is too short to prove anything: {body}"
    );
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(body["choices"][0]["finish_reason"].is_string(), "{body}");
    assert!(
        took > Duration::from_millis(1500),
        "{tokens} tokens took only {took:?}; the test needs an answer longer than the 1 s idle timeout"
    );
}

/// Requests waiting in a neuron's queue when it is killed (SIGKILL) have
/// sent their clients nothing: they are retried — here after a cold load on
/// the other node — and succeed. Only the request already streaming tokens
/// fails, with an error event then `[DONE]`. Retries are counted and
/// published.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_queued_on_a_killed_neuron_are_retried_elsewhere() {
    let flags = ["--max-batch", "1", "--max-queue", "64"];
    let mut a = neuron_with("a", 250, "127.0.0.1:0", &flags);
    let b = neuron_with("b", 250, "127.0.0.1:0", &flags);
    let gw = gateway(&[&a, &b], "lru", &models_toml(&[("smol", "")]), "").await;
    let text = gw.metrics().await;
    assert!(
        text.lines().any(|l| l == "cortex_retries_total 0"),
        "the retry counter is exported from the start:\n{text}"
    );
    gw.load("smol", Some("a")).await;
    let mut events = gw.events(None).await;

    // One stream generating on a, its first token received...
    let running = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&long_chat("smol", 400, true))
        .send()
        .await
        .unwrap();
    assert_eq!(running.status(), 200);
    let mut running = running.bytes_stream().eventsource();
    first_token(&mut running).await;

    // ...and four more queued behind it (a runs one at a time).
    let mut waiting = Vec::new();
    for i in 0..4 {
        let http = gw.http.clone();
        let url = format!("{}/v1/chat/completions", gw.url);
        let stream = i % 2 == 0;
        waiting.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .json(&chat_body("smol", 6, stream))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let node = node_of(&resp);
            if stream {
                (status, node, json!(read_sse(resp).await))
            } else {
                (
                    status,
                    node,
                    resp.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        }));
    }
    // All five are with neuron a: it reports them in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let models: Value = get_json(&gw.http, &format!("{}/models", a.url)).await;
        let in_flight = models["models"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["id"] == "smol"))
            .and_then(|m| m["in_flight"].as_u64())
            .unwrap_or(0);
        if in_flight >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the requests never all reached a: {models}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    a.kill();

    // The running stream fails cleanly: an error event, then [DONE].
    let mut tail = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(30), running.next())
        .await
        .expect("the running stream ends")
    {
        tail.push(ev.expect("well-formed SSE").data);
    }
    assert_eq!(tail.last().map(String::as_str), Some("[DONE]"), "{tail:?}");
    assert!(
        tail.iter().any(|d| d.contains("\"error\"")),
        "the broken stream says so: {tail:?}"
    );

    // The queued ones are answered in full, from b.
    for w in waiting {
        let (status, node, body) = tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .expect("a retried request finishes")
            .unwrap();
        assert_eq!(status, 200, "{body}");
        match body {
            Value::Array(data) => {
                let data: Vec<&str> = data.iter().filter_map(Value::as_str).collect();
                assert_eq!(data.last(), Some(&"[DONE]"), "{data:?}");
                assert!(!data.iter().any(|d| d.contains("\"error\"")), "{data:?}");
                let ids: std::collections::BTreeSet<String> = data
                    .iter()
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .filter_map(|v| v["id"].as_str().map(String::from))
                    .collect();
                assert_eq!(ids.len(), 1, "one answer, not pieces of two: {data:?}");
                let roles = data.iter().filter(|d| d.contains("\"role\"")).count();
                assert_eq!(roles, 1, "{data:?}");
            }
            body => {
                assert_eq!(node.as_deref(), Some("b"), "{body}");
                assert!(
                    body["choices"][0]["message"]["content"].is_string(),
                    "{body}"
                );
            }
        }
    }
    let retries: f64 = gw
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("cortex_retries_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(retries >= 4.0, "four retries counted, got {retries}");
    let seen = events
        .until(|e| matches!(e.kind, EventKind::RequestRetried { .. }))
        .await;
    match &seen.last().unwrap().kind {
        EventKind::RequestRetried {
            model,
            attempt,
            reason,
            ..
        } => {
            assert_eq!(model, "smol");
            assert_eq!(*attempt, 2);
            assert!(!reason.is_empty());
            assert_eq!(seen.last().unwrap().node.as_deref(), Some("a"));
        }
        other => panic!("{other:?}"),
    }
}

/// A client that sends half its headers is cut off after
/// `header_read_timeout`; other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_loris_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_a, gw) = smol_on_one_node("header_read_timeout = \"1s\"").await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut loris = tokio::net::TcpStream::connect(&addr).await.unwrap();
    loris
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: app")
        .await
        .unwrap();
    let opened = Instant::now();

    let asked = Instant::now();
    let resp = gw
        .http
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        asked.elapsed() < Duration::from_millis(900),
        "a normal request waited for the slow one: {:?}",
        asked.elapsed()
    );

    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), loris.read(&mut buf))
        .await
        .expect("the gateway closes the slow connection")
        .unwrap_or(0);
    let closed_after = opened.elapsed();
    assert!(
        n == 0 || buf.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed before the timeout: {closed_after:?}"
    );
    // Still serving. (On a new connection: the test client's pooled one
    // has been idle for the header timeout too, and the gateway closes it
    // at this very moment — a race any idle timeout has.)
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let resp = post_chat(&fresh, &gw.url, &chat_body("smol", 2, false)).await;
    assert_eq!(resp.status(), 200);
}
