//! Loads run to their end whatever happens to their callers, and what a
//! load leaves behind is bounded: a caller that disconnects mid-load does
//! not wedge the model, a failed load is reported failed (never stuck
//! loading) with a bounded message, over-long strings are refused up front,
//! and an unloaded model's memory stays counted while a stream still uses it.

mod support;

use std::time::{Duration, Instant};

use cortex_common::event::EventKind;
use serde_json::json;
use support::{Neuron, france, next_event};

/// Starts a load whose caller goes away as soon as the load has started,
/// before its answer; returns once the caller is gone.
async fn load_and_leave(n: &Neuron, model: &str, source: &str) {
    let mut events = n.events().await;
    let http = n.http.clone();
    let url = n.at("/models/load");
    let body = json!({"model": model, "source": source});
    let caller = tokio::spawn(async move { http.post(url).json(&body).send().await });
    next_event(
        &mut events,
        "model_load_started",
        |e| matches!(&e.kind, EventKind::ModelLoadStarted { model: m, .. } if m == model),
    )
    .await;
    assert!(
        !caller.is_finished(),
        "the load answered before its caller could leave; nothing was tested"
    );
    // Dropping the request future closes its connection mid-load.
    caller.abort();
    let _ = caller.await;
}

#[tokio::test]
async fn a_load_whose_caller_disconnects_still_completes_and_serves() {
    let n = Neuron::start(&[]);
    load_and_leave(&n, "smol", "embedded").await;
    let m = n
        .wait_model("smol", "loaded after its caller left", |m| {
            m["state"] == "loaded"
        })
        .await;
    assert!(m["memory_bytes"].as_u64().unwrap() > 50 << 20, "{m}");
    let (status, body) = n.chat(france(8)).await;
    assert_eq!(status, 200, "{body}");
    // A later load of the same model is the loaded one.
    let again = n.load("smol", "embedded").await;
    assert_eq!(again["changed"], false, "{again}");
}

#[tokio::test]
async fn a_client_timeout_mid_load_does_not_wedge_the_model() {
    let n = Neuron::start(&[]);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    let err = impatient
        .post(n.at("/models/load"))
        .json(&json!({"model": "smol", "source": "embedded"}))
        .send()
        .await
        .expect_err("the embedded model takes longer than 30 ms to load");
    assert!(err.is_timeout(), "{err}");
    // A chat request waits for the load in flight (or finds it done).
    let (status, body) = n.chat(france(8)).await;
    assert_eq!(status, 200, "{body}");
    n.wait_model("smol", "loaded", |m| m["state"] == "loaded")
        .await;
}

#[tokio::test]
async fn a_failed_load_is_reported_failed_and_can_be_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, vec![7u8; 4 << 20]).unwrap();
    let n = Neuron::start(&["--model-root", dir.path().to_str().unwrap()]);
    let (status, body) = n
        .post(
            "/models/load",
            json!({"model": "bad", "source": broken.to_str().unwrap()}),
        )
        .await;
    assert!(status >= 400, "{body}");
    let m = n
        .wait_model("bad", "failed", |m| m["state"] != "loading")
        .await;
    assert_eq!(m["state"], "failed", "{m}");
    assert!(m["error"].as_str().unwrap().contains("broken.gguf"), "{m}");
    // Nothing waits on it, nothing reserves memory for it.
    let (status, body) = n
        .chat(json!({"model": "bad", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 404, "{body}");
    let (_, d) = n.get("/discovery").await;
    assert_eq!(d["devices"][0]["memory_used_bytes"], 0, "{d}");

    // The same id, abandoned by its caller this time, still ends failed.
    load_and_leave_or_fail(&n, "bad2", broken.to_str().unwrap()).await;
    let m = n
        .wait_model("bad2", "failed", |m| m["state"] != "loading")
        .await;
    assert_eq!(m["state"], "failed", "{m}");

    // A load of the id from a good source replaces the failure.
    n.load("bad", "embedded").await;
    let m = n.wait_model("bad", "loaded", |_| true).await;
    assert_eq!(m["state"], "loaded", "{m}");
    assert!(m["error"].is_null(), "{m}");
}

/// Like [`load_and_leave`] for a load that may fail before its caller can
/// leave (a broken file fails fast): either way the caller is gone.
async fn load_and_leave_or_fail(n: &Neuron, model: &str, source: &str) {
    let http = n.http.clone();
    let url = n.at("/models/load");
    let body = json!({"model": model, "source": source});
    let caller = tokio::spawn(async move { http.post(url).json(&body).send().await });
    // Not a wait for readiness: the caller leaves early on purpose, before
    // or after the neuron has failed the load.
    tokio::time::sleep(Duration::from_millis(5)).await;
    caller.abort();
    let _ = caller.await;
}

#[tokio::test]
async fn long_strings_are_refused_and_failure_messages_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let n = Neuron::start(&["--model-root", dir.path().to_str().unwrap()]);
    let (status, body) = n
        .post(
            "/models/load",
            json!({"model": "m", "source": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "value_too_long");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("`source`") && msg.contains("4096"), "{msg}");
    let (status, body) = n
        .post("/models/load", json!({"model": "m".repeat(300)}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`model`")
    );
    let (status, _) = n
        .chat(json!({"model": "m".repeat(300), "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 400);
    // Nothing was recorded for the refused ones.
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"], json!([]), "{models}");

    // A source just under the cap that fails: its error (which quotes the
    // source) is cut to a bounded length in /models and device_stats.
    let long = dir.path().join("y".repeat(200)).join("z".repeat(3500));
    let long = long.to_str().unwrap();
    assert!(long.len() < 4096);
    let (status, body) = n
        .post("/models/load", json!({"model": "long", "source": long}))
        .await;
    assert_eq!(status, 404, "{body}");
    let m = n
        .wait_model("long", "failed", |m| m["state"] == "failed")
        .await;
    let error = m["error"].as_str().unwrap();
    assert!(error.len() <= 1024, "{} bytes", error.len());
}

#[tokio::test]
async fn an_unloaded_model_stays_counted_until_its_last_stream_ends() {
    // ~94 MiB per copy of the embedded model: two fit in 200 MiB, three do not.
    let n = Neuron::start(&["--memory-limit-mb", "200"]);
    n.load("a", "embedded").await;
    let stream = n.long_stream("a", 2000).await;

    let (status, body) = n.post("/models/unload", json!({"model": "a"})).await;
    assert_eq!(status, 200, "{body}");
    let used = memory_used(&n).await;
    assert!(
        used > 80 << 20,
        "the running stream still holds a's weights: {used}"
    );
    // So only one more copy fits, not two.
    n.load("b", "embedded").await;
    let (status, body) = n
        .post("/models/load", json!({"model": "c", "source": "embedded"}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_memory");

    // The stream's client leaves; a's memory is released.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let used = memory_used(&n).await;
        if used < 120 << 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a's memory never released: {used}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n.load("c", "embedded").await;
}

async fn memory_used(n: &Neuron) -> u64 {
    let (_, d) = n.get("/discovery").await;
    d["devices"][0]["memory_used_bytes"].as_u64().unwrap()
}
