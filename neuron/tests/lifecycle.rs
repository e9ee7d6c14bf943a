//! Unload, the memory budget, the bounded queue and clients that leave.

mod support;

use std::time::Duration;

use cortex_common::event::{EventKind, RequestEnd};
use serde_json::json;
use support::{Neuron, france};

#[tokio::test]
async fn unload_frees_memory_and_the_budget_is_enforced() {
    // ~94 MiB per copy of the embedded model: two fit in 200 MiB, three do not.
    let n = Neuron::start(&["--memory-limit-mb", "200"]);
    n.load("a", "embedded").await;
    n.load("b", "embedded").await;
    let (status, body) = n
        .post("/models/load", json!({"model": "c", "source": "embedded"}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_memory");
    assert!(body["error"]["message"].as_str().unwrap().contains("MiB"));

    let (status, body) = n.post("/models/unload", json!({"model": "a"})).await;
    assert_eq!(status, 200, "{body}");
    let (_, d) = n.get("/discovery").await;
    let used = d["devices"][0]["memory_used_bytes"].as_u64().unwrap();
    assert!(used < 120 << 20, "one model left, used {used}");
    n.load("c", "embedded").await;
    let (status, _) = n
        .chat(json!({"model": "a", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 404);
    let mut req = france(12);
    req["model"] = json!("c");
    let (status, body) = n.chat(req).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_full_queue_answers_503_and_a_departed_client_frees_its_slot() {
    let n = Neuron::start(&["--max-batch", "1", "--max-queue", "0"]);
    n.load("smol", "embedded").await;
    let mut events = n.events().await;
    let first = n.long_stream("smol", 500).await;

    let r = n
        .http
        .post(n.at("/v1/chat/completions"))
        .json(&france(4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(retry.as_deref(), Some("1"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");

    // The client goes away mid-stream: generation stops, the slot frees.
    drop(first);
    n.wait_model("smol", "slot released", |m| m["in_flight"] == 0)
        .await;
    let ended = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let EventKind::RequestFinished {
            ended,
            completion_tokens,
            ..
        } = ev.kind
        {
            break (ended, completion_tokens);
        }
    };
    assert_eq!(ended.0, RequestEnd::ClientGone);
    assert!(
        ended.1 < 500,
        "generation stopped early, at {} tokens",
        ended.1
    );
    let (status, _) = n.chat(france(4)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_config_file_sets_the_same_settings_and_bad_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("neuron.toml");
    std::fs::write(&good, "name = \"from-file\"\nmemory_limit_mb = 123\n").unwrap();
    let n = Neuron::start(&["--config", good.to_str().unwrap()]);
    let (_, d) = n.get("/discovery").await;
    // The flag given by the test harness (--name test) wins over the file.
    assert_eq!(d["name"], "test");
    assert_eq!(d["devices"][0]["memory_total_bytes"], 123u64 << 20);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nmemory_limit = 5\n").unwrap();
    let out = std::process::Command::new(support::neuron_bin())
        .args(["--listen", "127.0.0.1:0", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:2") && stderr.contains("memory_limit"),
        "{stderr}"
    );
}

/// A panic in the device worker (injected after its first step, outside
/// the forward pass's own guard) fails the request that was running with an
/// error envelope, and the device keeps serving: the next request answers.
#[tokio::test]
async fn a_worker_panic_fails_its_request_and_the_device_carries_on() {
    let n = Neuron::start_with_env(&[], &[("CORTEX_NEURON_FAILPOINT", "panic-after-step")]);
    n.load("smol", "embedded").await;
    let (status, body) = n.chat(france(4)).await;
    assert_eq!(status, 500, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("panicked"), "{body}");
    let (status, body) = n.chat(france(4)).await;
    assert_eq!(status, 200, "the device serves again: {body}");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    let (status, health) = n.get("/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}
