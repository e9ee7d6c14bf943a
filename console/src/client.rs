//! The console's side of the gateway's admin API: the fleet event stream
//! (`GET /admin/events`, SSE, resumed with `Last-Event-ID` after a drop, with
//! backoff), the status document (`GET /admin/status`), and the actions
//! (`POST /admin/models/{load,unload,pin,unpin}`).

use std::time::Duration;

use cortex_common::error::ErrorEnvelope;
use cortex_common::event::Event;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::mpsc;

pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:31313";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    #[error("gateway {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the gateway refused the admin token ({message}); pass --token or set CORTEX_ADMIN_TOKEN"
    )]
    Unauthorized { message: String },
    #[error("{status}: {message}")]
    Api {
        status: u16,
        message: String,
        code: Option<String>,
    },
    #[error("unexpected answer from the gateway: {0}")]
    Protocol(String),
}

/// One admin action, as sent to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    /// Load `model`, on `node` or where the gateway places it.
    Load {
        model: String,
        node: Option<String>,
    },
    /// Unload `model` everywhere, or from `node` only.
    Unload {
        model: String,
        node: Option<String>,
    },
    /// Evict `model` from `node`: an unload the gateway records as an
    /// operator's eviction (`evicted` event, `cortex_evictions_total`).
    Evict {
        model: String,
        node: String,
    },
    Pin {
        model: String,
    },
    Unpin {
        model: String,
    },
}

impl AdminRequest {
    pub fn path(&self) -> &'static str {
        match self {
            AdminRequest::Load { .. } => "/admin/models/load",
            AdminRequest::Unload { .. } => "/admin/models/unload",
            AdminRequest::Evict { .. } => "/admin/models/evict",
            AdminRequest::Pin { .. } => "/admin/models/pin",
            AdminRequest::Unpin { .. } => "/admin/models/unpin",
        }
    }

    pub fn body(&self) -> Value {
        match self {
            AdminRequest::Load { model, node } | AdminRequest::Unload { model, node } => match node
            {
                Some(node) => json!({"model": model, "node": node}),
                None => json!({"model": model}),
            },
            AdminRequest::Evict { model, node } => json!({"model": model, "node": node}),
            AdminRequest::Pin { model } | AdminRequest::Unpin { model } => {
                json!({"model": model})
            }
        }
    }

    pub fn model(&self) -> &str {
        match self {
            AdminRequest::Load { model, .. }
            | AdminRequest::Unload { model, .. }
            | AdminRequest::Evict { model, .. }
            | AdminRequest::Pin { model }
            | AdminRequest::Unpin { model } => model,
        }
    }

    /// `load m on n`, `unload m`, `pin m`.
    pub fn describe(&self) -> String {
        match self {
            AdminRequest::Load { model, node: None } => format!("load {model}"),
            AdminRequest::Load {
                model,
                node: Some(n),
            } => format!("load {model} on {n}"),
            AdminRequest::Unload { model, node: None } => format!("unload {model}"),
            AdminRequest::Unload {
                model,
                node: Some(n),
            } => format!("unload {model} from {n}"),
            AdminRequest::Evict { model, node } => format!("evict {model} from {node}"),
            AdminRequest::Pin { model } => format!("pin {model}"),
            AdminRequest::Unpin { model } => format!("unpin {model}"),
        }
    }

    /// What a 200 answer means, in words.
    pub fn outcome(&self, answer: &Value) -> String {
        let model = self.model();
        match self {
            AdminRequest::Load { .. } => match answer.get("node").and_then(Value::as_str) {
                Some(node) => format!("{model} loaded on {node}"),
                None => format!("{model} loaded"),
            },
            AdminRequest::Unload { .. } | AdminRequest::Evict { .. } => {
                let nodes: Vec<&str> = answer
                    .get("nodes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if nodes.is_empty() {
                    format!("{model} unloaded")
                } else {
                    format!("{model} unloaded from {}", nodes.join(", "))
                }
            }
            AdminRequest::Pin { .. } => format!("{model} pinned"),
            AdminRequest::Unpin { .. } => format!("{model} unpinned"),
        }
    }
}

/// What the event-stream task reports to the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamMsg {
    Connected,
    Event(Box<Event>),
    /// A message that did not parse as an [`Event`]: shown, then skipped.
    BadEvent(String),
    /// The stream dropped or could not be opened; next try after `retry_in`.
    Disconnected {
        error: String,
        attempt: u32,
        retry_in: Duration,
    },
}

/// Reconnect timing of the event stream.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// A stream with no bytes (not even a keepalive) for this long is dead.
    pub idle_timeout: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(45),
        }
    }
}

impl Backoff {
    /// The wait before try number `attempt` (1-based): doubling, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Protocol(format!("cannot build HTTP client: {e}")))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            reason: error_chain(e),
        }
    }

    /// `GET /admin/status` as the gateway wrote it (unknown fields kept).
    pub async fn status(&self) -> Result<Value, ClientError> {
        let req = self
            .authed(self.http.get(self.url("/admin/status")))
            .timeout(Duration::from_secs(10));
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let resp = check(resp).await?;
        resp.json::<Value>()
            .await
            .map_err(|e| ClientError::Protocol(format!("status is not JSON: {e}")))
    }

    /// Sends one admin action and waits for its answer (a load blocks until
    /// the model is resident, so no total timeout here).
    pub async fn admin(&self, action: &AdminRequest) -> Result<String, ClientError> {
        let req = self
            .authed(self.http.post(self.url(action.path())))
            .json(&action.body());
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let resp = check(resp).await?;
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        Ok(action.outcome(&answer))
    }

    /// Follows `/admin/events` until `tx` is closed: reports each event,
    /// reconnects with backoff after any drop, resuming after the last `id`
    /// seen. Never returns an error: every failure is reported on `tx`.
    pub async fn run_event_stream(&self, tx: mpsc::Sender<StreamMsg>, backoff: Backoff) {
        let mut last_id: Option<String> = None;
        let mut attempt = 0u32;
        loop {
            let outcome = self.follow_once(&tx, &mut last_id, backoff).await;
            let error = match outcome {
                FollowEnd::ReceiverGone => return,
                FollowEnd::Dropped { error, had_events } => {
                    if had_events {
                        attempt = 0;
                    }
                    error
                }
            };
            attempt = attempt.saturating_add(1);
            let retry_in = backoff.delay(attempt);
            tracing::warn!(%error, attempt, ?retry_in, "fleet event stream lost");
            let msg = StreamMsg::Disconnected {
                error,
                attempt,
                retry_in,
            };
            if tx.send(msg).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(retry_in) => {}
                _ = tx.closed() => return,
            }
        }
    }

    async fn follow_once(
        &self,
        tx: &mpsc::Sender<StreamMsg>,
        last_id: &mut Option<String>,
        backoff: Backoff,
    ) -> FollowEnd {
        let mut req = self
            .authed(self.http.get(self.url("/admin/events")))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_id.as_deref() {
            req = req.header("Last-Event-ID", id);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return FollowEnd::dropped(self.unreachable(&e).to_string(), false),
        };
        let resp = match check(resp).await {
            Ok(r) => r,
            Err(e) => return FollowEnd::dropped(e.to_string(), false),
        };
        tracing::info!(url = %self.base, resume_after = ?last_id, "fleet event stream open");
        if tx.send(StreamMsg::Connected).await.is_err() {
            return FollowEnd::ReceiverGone;
        }
        let idle = backoff.idle_timeout;
        let bytes = futures::stream::unfold(resp.bytes_stream(), move |mut s| async move {
            match tokio::time::timeout(idle, s.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), s)),
                Ok(Some(Err(e))) => Some((Err(error_chain(&e)), s)),
                Ok(None) => None,
                Err(_) => Some((Err(format!("no data for {}s", idle.as_secs())), s)),
            }
        });
        let mut events = Box::pin(bytes.eventsource());
        let mut had_events = false;
        loop {
            let item = tokio::select! {
                item = events.next() => item,
                _ = tx.closed() => return FollowEnd::ReceiverGone,
            };
            let Some(item) = item else { break };
            let sse = match item {
                Ok(sse) => sse,
                Err(e) => return FollowEnd::dropped(format!("stream broke: {e}"), had_events),
            };
            if !sse.id.is_empty() {
                *last_id = Some(sse.id.clone());
            }
            if sse.data.trim().is_empty() {
                continue;
            }
            let msg = match serde_json::from_str::<Event>(&sse.data) {
                Ok(ev) => {
                    had_events = true;
                    if sse.id.is_empty() {
                        *last_id = Some(ev.seq.to_string());
                    }
                    StreamMsg::Event(Box::new(ev))
                }
                Err(e) => StreamMsg::BadEvent(format!("id {}: {e}", sse.id)),
            };
            if tx.send(msg).await.is_err() {
                return FollowEnd::ReceiverGone;
            }
        }
        FollowEnd::dropped("the gateway closed the event stream".into(), had_events)
    }
}

enum FollowEnd {
    ReceiverGone,
    Dropped { error: String, had_events: bool },
}

impl FollowEnd {
    fn dropped(error: String, had_events: bool) -> Self {
        FollowEnd::Dropped { error, had_events }
    }
}

/// Passes a 2xx answer through; turns anything else into a [`ClientError`]
/// carrying the gateway's own error message.
async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let (message, code) = match serde_json::from_str::<ErrorEnvelope>(&body) {
        Ok(env) => (env.error.message, env.error.code),
        Err(_) if body.trim().is_empty() => (
            status.canonical_reason().unwrap_or("error").to_string(),
            None,
        ),
        Err(_) => (body.trim().chars().take(200).collect(), None),
    };
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(ClientError::Unauthorized { message });
    }
    Err(ClientError::Api {
        status: status.as_u16(),
        message,
        code,
    })
}

/// An error and its sources, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_the_admin_contract() {
        let load = AdminRequest::Load {
            model: "m".into(),
            node: Some("n".into()),
        };
        assert_eq!(load.path(), "/admin/models/load");
        assert_eq!(load.body(), json!({"model": "m", "node": "n"}));
        let unload = AdminRequest::Unload {
            model: "m".into(),
            node: None,
        };
        assert_eq!(unload.path(), "/admin/models/unload");
        assert_eq!(unload.body(), json!({"model": "m"}));
        assert_eq!(
            AdminRequest::Pin { model: "m".into() }.path(),
            "/admin/models/pin"
        );
        assert_eq!(
            AdminRequest::Unpin { model: "m".into() }.body(),
            json!({"model": "m"})
        );
    }

    #[test]
    fn outcomes_read_the_answer() {
        let load = AdminRequest::Load {
            model: "m".into(),
            node: None,
        };
        assert_eq!(
            load.outcome(&json!({"model":"m","node":"alpha","state":"loaded"})),
            "m loaded on alpha"
        );
        let unload = AdminRequest::Unload {
            model: "m".into(),
            node: None,
        };
        assert_eq!(
            unload.outcome(&json!({"model":"m","nodes":["a","b"]})),
            "m unloaded from a, b"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_millis(250));
        assert_eq!(b.delay(2), Duration::from_millis(500));
        assert_eq!(b.delay(3), Duration::from_secs(1));
        assert_eq!(b.delay(10), Duration::from_secs(5));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
    }
}
