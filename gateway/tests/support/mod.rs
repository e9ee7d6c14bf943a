//! A real fleet on loopback for the gateway's integration tests: `neuron`
//! processes and a `cortex serve` process on port 0, configs in a temp dir.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cortex_common::event::Event;
use cortex_common::status::{FleetStatus, NodeState};
pub use cortex_process::Child;
use cortex_process::{sibling_binary, spawn_server};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};

pub const TOKEN: &str = "test-admin-token";
const READY: Duration = Duration::from_secs(60);

pub fn neuron_bin() -> PathBuf {
    sibling_binary("neuron", "CORTEX_NEURON_BIN").unwrap_or_else(|| {
        panic!("the neuron binary was not found next to the test binary; build it (cargo build -p neuron) or set CORTEX_NEURON_BIN")
    })
}

/// A neuron with a small memory limit, on `listen` (port 0 for a fresh one).
/// The embedded model's path, fetched by the neuron that owns the fetch
/// (`neuron pull embedded`, which prints the path).
pub fn embedded_model() -> PathBuf {
    let out = std::process::Command::new(neuron_bin())
        .args(["pull", "embedded"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running neuron pull embedded");
    assert!(out.status.success(), "neuron pull embedded: {}", out.status);
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn neuron_at(name: &str, limit_mb: u64, listen: &str) -> Child {
    neuron_with(name, limit_mb, listen, &["--max-queue", "64"])
}

/// A neuron with extra flags (batch and queue sizes).
pub fn neuron_with(name: &str, limit_mb: u64, listen: &str, flags: &[&str]) -> Child {
    neuron_env(name, limit_mb, listen, flags, &[])
}

/// A neuron with extra flags and environment (its token).
pub fn neuron_env(
    name: &str,
    limit_mb: u64,
    listen: &str,
    flags: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let mut cmd = Command::new(neuron_bin());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(["--listen", listen, "--name", name])
        .args(["--memory-limit-mb", &limit_mb.to_string()])
        .args(flags)
        .env("RUST_LOG", "warn");
    spawn_server(name, cmd, READY, false).unwrap_or_else(|e| panic!("starting neuron {name}: {e}"))
}

pub fn neuron(name: &str, limit_mb: u64) -> Child {
    neuron_at(name, limit_mb, "127.0.0.1:0")
}

/// A running cortex (`cortex serve`, or `cortex demo`) whose admin API a
/// test reads: its fleet status, once or polled until a condition holds.
pub trait FleetAdmin {
    /// Its client, its URL and its admin token.
    fn admin(&self) -> (&reqwest::Client, &str, &str);

    /// `GET /admin/status`, which must answer 200.
    async fn status(&self) -> FleetStatus {
        let (http, url, token) = self.admin();
        let resp = http
            .get(format!("{url}/admin/status"))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /admin/status");
        assert_eq!(resp.status(), 200, "GET /admin/status");
        resp.json().await.expect("status JSON")
    }

    /// Polls the status until `pred` holds; panics with the last status
    /// after `timeout`.
    async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&FleetStatus) -> bool,
    ) -> FleetStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last status:\n{}",
                    serde_json::to_string_pretty(&s).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub struct Gateway {
    pub child: Child,
    pub url: String,
    pub metrics_url: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// `cortex serve` over `neurons`, with `models` as models.toml and `extra`
/// appended to cortex.toml (sections after [gateway]); waits until every
/// node is up.
pub async fn gateway(
    neurons: &[&Child],
    strategy: &str,
    models: &str,
    gateway_extra: &str,
) -> Gateway {
    gateway_with(neurons, strategy, models, gateway_extra, "").await
}

/// One neuron `a` (250 MB: room for two copies of the embedded model) and
/// a gateway serving `smol` on it, with `gateway_extra` in its [gateway].
pub async fn smol_on_one_node(gateway_extra: &str) -> (Child, Gateway) {
    let a = neuron("a", 250);
    let gw = gateway(&[&a], "lru", &models_toml(&[("smol", "")]), gateway_extra).await;
    (a, gw)
}

pub async fn gateway_with(
    neurons: &[&Child],
    strategy: &str,
    models: &str,
    gateway_extra: &str,
    auth_extra: &str,
) -> Gateway {
    let gw = gateway_started(neurons, strategy, models, gateway_extra, auth_extra);
    let total = neurons.len() as u32;
    gw.wait_status("every node up", Duration::from_secs(20), |s| {
        s.nodes_up == total
    })
    .await;
    gw
}

/// `cortex serve` started and listening, its nodes not waited for.
pub fn gateway_started(
    neurons: &[&Child],
    strategy: &str,
    models: &str,
    gateway_extra: &str,
    auth_extra: &str,
) -> Gateway {
    let nodes: Vec<(&Child, &str)> = neurons.iter().map(|n| (*n, "")).collect();
    gateway_nodes(&nodes, strategy, models, gateway_extra, auth_extra)
}

/// A `[[neurons]]` table: name, endpoint, extra keys.
pub struct NodeEntry<'a> {
    pub name: &'a str,
    pub endpoint: &'a str,
    pub extra: &'a str,
}

/// `cortex serve` started and listening, with keys of its own for each
/// `[[neurons]]` table (e.g. its `token_file`); nodes not waited for.
pub fn gateway_nodes(
    neurons: &[(&Child, &str)],
    strategy: &str,
    models: &str,
    gateway_extra: &str,
    auth_extra: &str,
) -> Gateway {
    let entries: Vec<NodeEntry> = neurons
        .iter()
        .map(|(n, extra)| NodeEntry {
            name: &n.name,
            endpoint: &n.url,
            extra,
        })
        .collect();
    gateway_entries(&entries, strategy, models, gateway_extra, auth_extra)
}

/// `cortex serve` over any endpoints (a neuron, or something that only
/// pretends to be one); nodes not waited for.
pub fn gateway_entries(
    neurons: &[NodeEntry],
    strategy: &str,
    models: &str,
    gateway_extra: &str,
    auth_extra: &str,
) -> Gateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\n{gateway_extra}\n\
         [eviction]\nstrategy = \"{strategy}\"\n[auth]\nadmin_token = \"{TOKEN}\"\n{auth_extra}\n"
    );
    for n in neurons {
        cfg.push_str(&format!(
            "[[neurons]]\nname = \"{}\"\nendpoint = \"{}\"\n{}\n",
            n.name, n.endpoint, n.extra
        ));
    }
    std::fs::write(dir.path().join("cortex.toml"), cfg).expect("write cortex.toml");
    std::fs::write(dir.path().join("models.toml"), models).expect("write models.toml");
    let child = serve(dir.path());
    Gateway {
        url: child.url.clone(),
        metrics_url: child
            .metrics_url
            .clone()
            .expect("cortex announces its metrics listener"),
        child,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

/// `cortex serve` on the config in `dir`, listening.
fn serve(dir: &std::path::Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cortex"));
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("cortex.toml"))
        .env("RUST_LOG", "info")
        .env_remove("CORTEX_ADMIN_TOKEN")
        .env_remove("CORTEX_API_KEYS");
    spawn_server("cortex", cmd, READY, false).expect("starting cortex")
}

impl FleetAdmin for Gateway {
    fn admin(&self) -> (&reqwest::Client, &str, &str) {
        (&self.http, &self.url, TOKEN)
    }
}

impl Gateway {
    /// The folder of its config (and, under `state/`, its state).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Stops the gateway (SIGKILL: nothing gets saved on the way out) and
    /// starts it again on the same config; waits until `nodes` are up.
    pub async fn restart(&mut self, nodes: u32) {
        self.child.kill();
        self.child = serve(self._dir.path());
        self.url = self.child.url.clone();
        self.metrics_url = self
            .child
            .metrics_url
            .clone()
            .expect("cortex announces its metrics listener");
        self.wait_status("every node up again", Duration::from_secs(20), |s| {
            s.nodes_up == nodes
        })
        .await;
    }

    /// A two-token chat for `model` that must succeed: it is loaded (and
    /// warm) before what a test measures next.
    pub async fn warm(&self, model: &str) {
        let (status, _, body) = self.chat(model, 2).await;
        assert_eq!(status, 200, "warming {model}: {body}");
    }

    pub async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("admin call");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET` of one of its paths, answered with JSON (any status).
    pub async fn get_json(&self, path: &str) -> Value {
        get_json(&self.http, &format!("{}{path}", self.url)).await
    }

    /// An admin call that must succeed; its answer.
    pub async fn admin_ok(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.admin(path, body.clone()).await;
        assert_eq!(status, 200, "{path} {body}: {answer}");
        answer
    }

    /// Loads `model` (on `node`, or where the gateway places it); the node.
    pub async fn load(&self, model: &str, node: Option<&str>) -> String {
        let body = match node {
            Some(n) => json!({"model": model, "node": n}),
            None => json!({"model": model}),
        };
        let answer = self.admin_ok("/admin/models/load", body).await;
        answer["node"].as_str().unwrap_or_default().to_string()
    }

    /// A non-streaming chat: status, node that served it, body.
    pub async fn chat(&self, model: &str, max_tokens: u32) -> (u16, Option<String>, Value) {
        let resp = post_chat(&self.http, &self.url, &chat_body(model, max_tokens, false)).await;
        let status = resp.status().as_u16();
        let node = node_of(&resp);
        (status, node, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn stream(&self, model: &str, max_tokens: u32) -> reqwest::Response {
        post_chat(&self.http, &self.url, &chat_body(model, max_tokens, true)).await
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.metrics_url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Sum of a metric's samples whose line contains every `filters` string.
    pub async fn metric_sum(&self, name: &str, filters: &[&str]) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter(|l| filters.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Opens `/admin/events`, optionally resuming after `last_event_id`.
    pub async fn events(&self, last_event_id: Option<u64>) -> EventReader {
        let mut req = self
            .http
            .get(format!("{}/admin/events", self.url))
            .bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.expect("GET /admin/events");
        assert_eq!(resp.status(), 200);
        EventReader {
            inner: resp.bytes_stream().eventsource().boxed(),
        }
    }
}

/// One item of a server-sent event stream read over HTTP.
pub type SseItem =
    Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>;

pub struct EventReader {
    inner: futures::stream::BoxStream<'static, SseItem>,
}

impl EventReader {
    pub async fn next(&mut self) -> Event {
        let ev = tokio::time::timeout(Duration::from_secs(10), self.inner.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("a well-formed SSE event");
        let parsed: Event = serde_json::from_str(&ev.data).expect("event JSON");
        assert_eq!(ev.id, parsed.seq.to_string(), "SSE id is the seq");
        parsed
    }

    /// Reads until `pred` matches; returns every event read.
    pub async fn until(&mut self, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await;
            let done = pred(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}

/// `GET url`, answered with JSON (any status).
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// `POST /v1/chat/completions` of `body` to the gateway (or neuron) at `base`.
pub async fn post_chat(http: &reqwest::Client, base: &str, body: &Value) -> reqwest::Response {
    http.post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {base}/v1/chat/completions: {e}"))
}

pub fn chat_body(model: &str, max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "messages": [{"role": "user", "content": "Count: one, two, three"}],
    })
}

pub fn node_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("x-cortex-node")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// Reads an SSE body to its end; returns the `data:` payloads.
pub async fn read_sse(resp: reqwest::Response) -> Vec<String> {
    read_events(&mut resp.bytes_stream().eventsource()).await
}

/// Reads the rest of an SSE stream; returns the `data:` payloads.
pub async fn read_events(s: &mut (impl futures::Stream<Item = SseItem> + Unpin)) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(60), s.next())
        .await
        .expect("stream progresses within 60 s")
    {
        match ev {
            Ok(ev) => out.push(ev.data),
            Err(e) => {
                out.push(format!("<transport error: {e}>"));
                break;
            }
        }
    }
    out
}

/// Reads a streamed answer until its first content token.
pub async fn first_token(s: &mut (impl futures::Stream<Item = SseItem> + Unpin)) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), s.next())
            .await
            .expect("a token within 60 s")
            .expect("the stream goes on")
            .expect("well-formed SSE");
        let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        if v["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
        {
            return;
        }
    }
}

pub fn placement_nodes(s: &FleetStatus, model: &str) -> Vec<String> {
    s.models
        .iter()
        .find(|m| m.id == model)
        .map(|m| {
            let mut v: Vec<String> = m
                .placements
                .iter()
                .filter(|p| p.state == cortex_common::status::PlacementState::Loaded)
                .map(|p| p.node.clone())
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default()
}

pub fn node_state(s: &FleetStatus, node: &str) -> Option<NodeState> {
    s.nodes.iter().find(|n| n.name == node).map(|n| n.state)
}

/// models.toml declaring each id as the embedded model with `extra` keys.
pub fn models_toml(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(id, extra)| {
            format!("[[models]]\nid = \"{id}\"\nsource = \"embedded\"\nmemory_mb = 100\n{extra}\n")
        })
        .collect()
}

/// A neuron started with `--config` pointing at `toml` (written into
/// `dir`), for settings that have no flag (header timeout, token limit).
pub fn neuron_conf(
    dir: &std::path::Path,
    name: &str,
    limit_mb: u64,
    listen: &str,
    toml: &str,
) -> Child {
    let path = dir.join(format!("{name}.neuron.toml"));
    std::fs::write(&path, toml).expect("write neuron.toml");
    let path = path.to_string_lossy().into_owned();
    neuron_with(
        name,
        limit_mb,
        listen,
        &["--config", &path, "--max-queue", "64"],
    )
}

/// Resident memory of process `pid` in KiB (Linux: VmRSS of
/// /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
