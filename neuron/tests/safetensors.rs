//! The Hugging Face directory path: tiny llama and qwen3 models with random
//! weights in the real format (config.json, tokenizer.json,
//! tokenizer_config.json, model.safetensors), generated here by the model
//! code itself, loaded by the real neuron from a directory and from the
//! Hugging Face cache layout.

mod support;

use serde_json::{Value, json};
use support::Neuron;
use support::tiny::{write_llama, write_qwen3};

async fn generate_greedy(n: &Neuron, model: &str) -> Value {
    let (status, body) = n
        .chat(json!({
            "model": model,
            "messages": [{"role": "user", "content": "hello"}],
            "temperature": 0, "max_tokens": 6,
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    let usage = &body["usage"];
    // "hello" + chat template, one token per byte.
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 10, "{usage}");
    let completion = usage["completion_tokens"].as_u64().unwrap();
    match body["choices"][0]["finish_reason"].as_str() {
        Some("length") => assert_eq!(completion, 6),
        Some("stop") => assert!(completion < 6),
        other => panic!("finish_reason {other:?}"),
    }
    body
}

#[tokio::test]
async fn dense_llama_directory_loads_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path());
    let n = Neuron::start(&["--model-root", dir.path().to_str().unwrap()]);
    let loaded = n.load("tiny-llama", dir.path().to_str().unwrap()).await;
    assert!(loaded["memory_bytes"].as_u64().unwrap() > 100_000);
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"][0]["architecture"], "llama");
    assert_eq!(models["models"][0]["context_length"], 256);
    let a = generate_greedy(&n, "tiny-llama").await;
    let b = generate_greedy(&n, "tiny-llama").await;
    // Greedy decoding is deterministic and the KV cache is reset between requests.
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
}

#[tokio::test]
async fn qwen3_from_the_hugging_face_cache_layout() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--test--tiny-qwen3");
    let snapshot = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    write_qwen3(&snapshot);
    let n = Neuron::start_with_env(&[], &[("HF_HUB_CACHE", cache.path().to_str().unwrap())]);
    n.load("tiny-qwen3", "test/tiny-qwen3").await;
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"][0]["architecture"], "qwen3");
    generate_greedy(&n, "tiny-qwen3").await;
    let chunks = n
        .chat_stream(json!({
            "model": "tiny-qwen3",
            "messages": [{"role": "user", "content": "hello"}],
            "temperature": 0, "max_tokens": 6,
        }))
        .await;
    assert_eq!(chunks.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn a_broken_directory_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path());
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let n = Neuron::start(&["--model-root", dir.path().to_str().unwrap()]);
    let (status, body) = n
        .post(
            "/models/load",
            json!({"model": "broken", "source": dir.path().to_str().unwrap()}),
        )
        .await;
    assert!(status >= 400, "{body}");
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"][0]["state"], "failed");
    assert!(
        models["models"][0]["error"]
            .as_str()
            .unwrap()
            .contains("model.safetensors")
            || body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid"),
        "{body}"
    );
}
