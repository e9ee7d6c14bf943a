//! Test support: start the real `neuron` binary on 127.0.0.1:0 and talk
//! HTTP to it.
#![allow(dead_code)]

pub mod chain;
pub mod hub;
pub mod tiny;

use std::process::Command;
use std::time::{Duration, Instant};

use cortex_common::event::Event;
use cortex_process::{Child, spawn_server};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};

pub struct Neuron {
    pub child: Child,
    pub url: String,
    pub http: reqwest::Client,
}

/// The environment that decides how a neuron reaches the Hugging Face Hub.
pub const HUB_ENV: [&str; 7] = [
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
];

pub fn neuron_bin() -> &'static str {
    env!("CARGO_BIN_EXE_neuron")
}

impl Neuron {
    pub fn start(args: &[&str]) -> Neuron {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Neuron {
        // Fetch the embedded model once, before any neuron needs it.
        neuron::model::embedded::ensure_model().expect("embedded model available");
        let mut cmd = Command::new(neuron_bin());
        cmd.args(["--listen", "127.0.0.1:0", "--name", "test"])
            .args(args);
        // The Hub settings of whoever runs the tests stay out of them.
        for k in HUB_ENV {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child =
            spawn_server("neuron", cmd, Duration::from_secs(30), false).expect("neuron starts");
        let url = child.url.clone();
        Neuron {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.at(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.at(path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.at(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn load(&self, model: &str, source: &str) -> Value {
        let (status, body) = self
            .post("/models/load", json!({"model": model, "source": source}))
            .await;
        assert_eq!(status, 200, "load {model}: {body}");
        body
    }

    pub async fn chat(&self, body: Value) -> (u16, Value) {
        self.post("/v1/chat/completions", body).await
    }

    /// A streamed chat: every `data:` payload in order (the final `[DONE]`
    /// included as a string).
    pub async fn chat_stream(&self, mut body: Value) -> Vec<Value> {
        body["stream"] = json!(true);
        let r = self
            .http
            .post(self.at("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .expect("POST stream");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        let mut out = Vec::new();
        let mut events = r.bytes_stream().eventsource();
        while let Some(ev) = events.next().await {
            let ev = ev.expect("sse");
            if ev.data == "[DONE]" {
                out.push(Value::String(ev.data));
                break;
            }
            out.push(serde_json::from_str(&ev.data).expect("json chunk"));
        }
        out
    }

    /// Subscribes to /events; returns a receiver of parsed events.
    pub async fn events(&self) -> tokio::sync::mpsc::UnboundedReceiver<Event> {
        let r = self
            .http
            .get(self.at("/events"))
            .send()
            .await
            .expect("events");
        assert_eq!(r.status(), 200);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut events = r.bytes_stream().eventsource();
            while let Some(Ok(ev)) = events.next().await {
                if let Ok(e) = serde_json::from_str::<Event>(&ev.data)
                    && tx.send(e).is_err()
                {
                    break;
                }
            }
        });
        rx
    }

    /// Polls `/models` until `pred` holds for the model's entry, or panics.
    /// Opens a sampled stream of a long story (up to `max_tokens`) on
    /// `model` and waits until the neuron counts it in flight; drop the
    /// response to leave.
    pub async fn long_stream(&self, model: &str, max_tokens: u32) -> reqwest::Response {
        let mut long = france(max_tokens);
        long["model"] = json!(model);
        long["messages"][1]["content"] = json!("Tell me a very long story about a dragon.");
        long["temperature"] = json!(0.8);
        long["seed"] = json!(5);
        long["stream"] = json!(true);
        let stream = self
            .http
            .post(self.at("/v1/chat/completions"))
            .json(&long)
            .send()
            .await
            .expect("chat request");
        assert_eq!(stream.status(), 200);
        self.wait_model(model, "the stream running", |m| m["in_flight"] == 1)
            .await;
        stream
    }

    pub async fn wait_model(
        &self,
        model: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = self.get("/models").await;
            if let Some(m) = body["models"]
                .as_array()
                .and_then(|a| a.iter().find(|m| m["id"] == model))
                && pred(m)
            {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {model}: {what}; last {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The first event `pred` picks, within 30 s, or a panic naming `what`.
pub async fn next_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the event stream ended before {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// The France question. With an explicit system turn: without one, the
/// model's own template injects "You are a helpful AI assistant named
/// SmolLM…", and on that exact prompt this 135M model, under candle's
/// kernels, greedily drifts into French instead of answering (see README).
pub fn france(max_tokens: u32) -> Value {
    json!({
        "model": "smol",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

/// Concatenated `delta.content` of a streamed chat.
pub fn stream_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}
