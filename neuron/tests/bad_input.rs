//! Every bad request gets a 4xx with the error envelope saying what to fix,
//! and the neuron keeps serving.

mod support;

use serde_json::{Value, json};
use support::{Neuron, france};

fn assert_envelope(status: u16, body: &Value, want_status: u16, mentions: &str) {
    assert_eq!(status, want_status, "{body}");
    let msg = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no envelope: {body}"));
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(
        msg.contains(mentions),
        "message {msg:?} should mention {mentions:?}"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_and_the_neuron_keeps_serving() {
    let n = Neuron::start(&[]);
    n.load("smol", "embedded").await;

    // Malformed JSON.
    let r = n
        .post_raw("/v1/chat/completions", b"{\"model\": ".to_vec())
        .await;
    let status = r.status().as_u16();
    assert_envelope(status, &r.json().await.unwrap(), 400, "not valid JSON");
    // Empty body.
    let r = n.post_raw("/v1/chat/completions", Vec::new()).await;
    let status = r.status().as_u16();
    assert_envelope(status, &r.json().await.unwrap(), 400, "empty");

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"model": "smol", "messages": "hi"}), 400, "messages"),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}),
            400,
            "temperature",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}),
            400,
            "max_tokens",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            400,
            "model",
        ),
        (
            json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "nope",
        ),
        (json!({"model": "smol", "messages": []}), 400, "messages"),
        (
            json!({"model": "smol", "messages": [{"role": "wizard", "content": "hi"}]}),
            400,
            "role",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}),
            400,
            "max_tokens",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0}),
            400,
            "max_completion_tokens",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000000}),
            400,
            "max_tokens",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "temperature": 3.5}),
            400,
            "temperature",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "top_p": 0}),
            400,
            "top_p",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "top_k": 0}),
            400,
            "top_k",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "repetition_penalty": -1}),
            400,
            "repetition_penalty",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "n": 3}),
            400,
            "n",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "stop": ["a","b","c","d","e"]}),
            400,
            "stop",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            400,
            "content",
        ),
        (
            json!({"model": "smol", "messages": [{"role": "user", "content": "x ".repeat(9000)}]}),
            400,
            "context",
        ),
    ];
    for (body, want, mentions) in cases {
        let (status, resp) = n.chat(body.clone()).await;
        assert_envelope(status, &resp, want, mentions);
    }

    // Oversized body: 413 with the envelope.
    let huge =
        json!({"model": "smol", "messages": [{"role": "user", "content": "y".repeat(5 << 20)}]});
    // On a connection of its own: the server answers before reading the
    // whole body and then closes that connection, which a pooled client
    // would otherwise try to reuse for the next request.
    let r = reqwest::Client::new()
        .post(n.at("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&huge).unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_envelope(status, &r.json().await.unwrap(), 413, "too large");

    // Lifecycle API errors.
    let (s, b) = n
        .post(
            "/models/load",
            json!({"model": "x", "source": "/no/such/model.gguf"}),
        )
        .await;
    // Outside the model roots: refused, without a word on whether it exists.
    assert_envelope(s, &b, 403, "model_roots");
    assert_eq!(b["error"]["code"], "model_source_forbidden");
    let (s, b) = n.post("/models/load", json!({"model": ""})).await;
    assert_envelope(s, &b, 400, "model");
    let (s, b) = n
        .post("/models/unload", json!({"model": "never-loaded"}))
        .await;
    assert_envelope(s, &b, 404, "never-loaded");
    let (s, b) = n.get("/no/such/route").await;
    assert_envelope(s, &b, 404, "endpoint");

    // Still serving, correctly.
    let (status, body) = n.chat(france(12)).await;
    assert_eq!(status, 200);
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Paris")
    );
}
