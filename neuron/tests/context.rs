//! The whole context and the prompt cache, end to end on the embedded
//! model through the real neuron: prompts past candle-transformers' old
//! 4096-token limit are served; prompts past the model's own context are a
//! 400 before any compute; a follow-up turn reuses the cached prefix and
//! answers exactly what a cold neuron answers.

mod support;

use std::time::{Duration, Instant};

use cortex_common::event::EventKind;
use serde_json::{Value, json};
use support::Neuron;

const PARAGRAPH: &str = "The lighthouse keeper climbed the spiral stairs every evening, \
    counting the steps as his father had taught him, and lit the great lamp that warned \
    the fishing boats away from the rocks. ";

fn long_text(paragraphs: usize) -> String {
    PARAGRAPH.repeat(paragraphs)
}

fn chat_body(user: &str, max_tokens: u32) -> Value {
    json!({
        "model": "smol",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": user},
        ],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

#[tokio::test]
async fn a_prompt_past_4096_tokens_is_served() {
    let n = Neuron::start(&[]);
    n.load("smol", "embedded").await;
    // ~37 tokens a paragraph: about 4,800 tokens.
    let (status, body) = n.chat(chat_body(&long_text(130), 4)).await;
    assert_eq!(status, 200, "{body}");
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 4096, "prompt of {prompt} tokens");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn past_the_context_is_a_400_before_any_compute() {
    let n = Neuron::start(&[]);
    n.load("smol", "embedded").await;
    let started = Instant::now();
    let (status, body) = n.chat(chat_body(&long_text(260), 4)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("8192"), "{message}");
    assert!(
        !message.contains("backtrace") && !message.contains("narrow"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused without running the model"
    );

    // Fits alone, but not with the completion asked for.
    let (status, body) = n.chat(chat_body(&long_text(200), 2000)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );

    // The neuron carries on.
    let (status, _) = n.chat(chat_body("Hello!", 4)).await;
    assert_eq!(status, 200);
}

fn answer(body: &Value) -> String {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

fn cached(body: &Value) -> u64 {
    body["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0)
}

/// A chat's second turn through a warm prompt cache: it reuses the first
/// turn's tokens, reports them, and answers exactly what a neuron with no
/// prompt cache answers.
#[tokio::test]
async fn a_follow_up_turn_reuses_the_cached_prefix_and_answers_the_same() {
    let warm = Neuron::start(&[]);
    let cold = Neuron::start(&["--prompt-cache-mb", "0"]);
    warm.load("smol", "embedded").await;
    cold.load("smol", "embedded").await;
    let mut events = warm.events().await;

    let story = format!("{} What did the keeper count?", long_text(8));
    let turn1 = chat_body(&story, 24);
    let (status, first) = warm.chat(turn1.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(cached(&first), 0, "nothing is cached yet: {first}");

    let mut turn2 = turn1.clone();
    let messages = turn2["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": answer(&first)}));
    messages.push(json!({"role": "user", "content": "And what did he light?"}));
    let (status, second) = warm.chat(turn2.clone()).await;
    assert_eq!(status, 200, "{second}");
    let prompt = second["usage"]["prompt_tokens"].as_u64().unwrap();
    let reused = cached(&second);
    let first_prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        reused,
        first_prompt - 1,
        "turn 2 reuses turn 1's prompt up to its prefill boundary ({reused} of {prompt})"
    );
    assert!(reused < prompt);

    let (status, cold_second) = cold.chat(turn2).await;
    assert_eq!(status, 200);
    assert_eq!(cached(&cold_second), 0);
    assert_eq!(
        answer(&second),
        answer(&cold_second),
        "a prompt-cache hit answers what a cold run answers"
    );

    // The events carry the reuse too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while seen.len() < 2 && Instant::now() < deadline {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await
            && let EventKind::RequestFinished { cached_tokens, .. } = e.kind
        {
            seen.push(cached_tokens as u64);
        }
    }
    assert_eq!(seen, vec![0, reused]);

    let (_, models) = warm.get("/models").await;
    let m = &models["models"][0];
    assert!(m["prompt_cache_entries"].as_u64().unwrap() >= 1, "{m}");
    assert!(m["kv_cache_bytes"].as_u64().unwrap() > 0, "{m}");
    assert!(m["memory_bytes"].as_u64().unwrap() > m["kv_cache_bytes"].as_u64().unwrap());
}
