//! Continuous batching through the real neuron on the embedded model:
//! concurrent streams decode together and each gets exactly its own tokens,
//! a stream that leaves does not disturb the others, and a long prompt is
//! prefilled in chunks between the running streams' tokens.

mod support;

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use support::Neuron;

fn body(question: &str, max_tokens: u32) -> Value {
    json!({
        "model": "smol",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question},
        ],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

const QUESTIONS: [&str; 4] = [
    "What is the capital of France?",
    "Name three colours of the rainbow.",
    "Write a haiku about the sea.",
    "Explain what a lighthouse does.",
];

async fn answer(n: &Neuron, b: Value) -> String {
    let (status, v) = n.chat(b).await;
    assert_eq!(status, 200, "{v}");
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Starts a streamed chat.
async fn open_stream(n: &Neuron, mut b: Value) -> reqwest::Response {
    b["stream"] = json!(true);
    let r = n
        .http
        .post(n.at("/v1/chat/completions"))
        .json(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

/// Streams a chat; returns its text and the arrival time of every content
/// delta.
async fn stream(n: &Neuron, b: Value) -> (String, Vec<Instant>) {
    let r = open_stream(n, b).await;
    let mut text = String::new();
    let mut times = Vec::new();
    let mut events = r.bytes_stream().eventsource();
    while let Some(ev) = events.next().await {
        let ev = ev.unwrap();
        if ev.data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str()
            && !t.is_empty()
        {
            text.push_str(t);
            times.push(Instant::now());
        }
    }
    (text, times)
}

/// Four different prompts decoded in one batch give each the greedy text
/// it gets alone (the neuron with `--max-batch 1` runs them one by one).
#[tokio::test]
async fn batched_decode_gives_each_prompt_its_own_greedy_tokens() {
    let alone = Neuron::start(&["--max-batch", "1", "--prompt-cache-mb", "0"]);
    let batched = Neuron::start(&["--max-batch", "8", "--prompt-cache-mb", "0"]);
    alone.load("smol", "embedded").await;
    batched.load("smol", "embedded").await;
    let mut expected = Vec::new();
    for q in QUESTIONS {
        expected.push(answer(&alone, body(q, 24)).await);
    }
    let together =
        futures::future::join_all(QUESTIONS.iter().map(|q| answer(&batched, body(q, 24)))).await;
    assert_eq!(together, expected);
}

/// Eight streams at once all complete; one that leaves mid-stream does not
/// change the others' tokens.
#[tokio::test]
async fn concurrent_streams_complete_and_a_cancelled_one_disturbs_none() {
    let n = Neuron::start(&["--max-batch", "8", "--prompt-cache-mb", "0"]);
    n.load("smol", "embedded").await;
    let prompts: Vec<String> = (0..8)
        .map(|i| format!("{} (variant {i})", QUESTIONS[i % 4]))
        .collect();
    let mut expected = Vec::new();
    for p in &prompts {
        expected.push(answer(&n, body(p, 20)).await);
    }
    // A ninth stream's client leaves mid-stream, while the eight run.
    let quitter = async {
        let r = open_stream(&n, body("Tell me a very long story about a dragon.", 400)).await;
        let mut chunks = r.bytes_stream();
        for _ in 0..4 {
            let _ = chunks.next().await;
        }
        // Dropped here: the client is gone.
    };
    let (got, ()) = tokio::join!(
        futures::future::join_all(prompts.iter().map(|p| stream(&n, body(p, 20)))),
        quitter
    );
    for (i, ((text, _), want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(text, want, "stream {i}");
    }
    n.wait_model("smol", "every slot released", |m| m["in_flight"] == 0)
        .await;
}

/// While three streams decode, a long prompt arrives: it is prefilled in
/// chunks, so the running streams' longest pause stays near one chunk's
/// prefill rather than the whole prompt's.
#[tokio::test]
async fn a_long_prompt_does_not_stall_running_streams() {
    let n = Neuron::start(&["--max-batch", "8"]);
    n.load("smol", "embedded").await;
    // How long one whole ~1500-token prefill takes alone.
    let long = "The lighthouse keeper counted the steps and lit the lamp. ".repeat(120);
    let started = Instant::now();
    let (status, v) = n.chat(body(&long, 1)).await;
    assert_eq!(status, 200, "{v}");
    let whole_prefill = started.elapsed();
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 1200, "{v}");

    let streams =
        futures::future::join_all(QUESTIONS[..3].iter().map(|q| stream(&n, body(q, 120))));
    let intruder = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // A different long prompt, so the prompt cache cannot serve it.
        let other = "A storm rolled over the rocks and the keeper kept his log. ".repeat(120);
        n.chat(body(&other, 1)).await
    };
    let (results, (status, _)) = tokio::join!(streams, intruder);
    assert_eq!(status, 200);
    let worst = results
        .iter()
        .flat_map(|(_, t)| t.windows(2).map(|w| w[1] - w[0]))
        .max()
        .unwrap();
    // 256-token chunks: a pause is about a sixth of the whole prefill.
    // Allow half of it (generous for a loaded CI machine), far below the
    // whole prefill that a run-to-completion scheduler would impose.
    assert!(
        worst < whole_prefill / 2,
        "longest gap between tokens {worst:?}; a whole prefill takes {whole_prefill:?}"
    );
}
