//! One task per neuron: subscribes to its `/events` stream (push), reads its
//! state, and keeps the fleet view current from the events. A dropped stream
//! marks the node down at once — unless an immediate re-check finds it
//! answering, which absorbs a blip — and the task keeps trying to rejoin,
//! re-reading the node's state when it does. A node that flaps is retried
//! with a growing delay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cortex_common::event::{Event, EventKind};
use cortex_common::neuron_api::{Discovery, ModelsResponse};
use eventsource_stream::Eventsource;
use futures::StreamExt;

use crate::echo;
use crate::metrics::{DeviceLabels, NodeLabel, model_node};
use crate::state::AppState;

/// Silence on an event stream longer than this means the neuron is hung
/// (it sends device stats every second).
const EVENTS_IDLE: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait for a neuron to answer the event stream's request: a host
/// that accepts connections and never answers is reported as such.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// A node up for less than this before dropping is flapping.
const STABLE_AFTER: Duration = Duration::from_secs(10);

pub async fn watch_node(state: Arc<AppState>, idx: usize) {
    let (name, endpoint) = state.fleet.lock().node_addr(idx);
    // This node's control client: it carries the node's token.
    let client = state.neurons.control(idx).clone();
    let mut backoff = MIN_BACKOFF;
    let mut logged_failure = false;
    loop {
        match connect(&client, &endpoint).await {
            Ok((stream, discovery, models)) => {
                logged_failure = false;
                state
                    .fleet
                    .lock()
                    .node_up(idx, discovery.devices, models.models);
                update_gauges(&state, idx);
                tracing::info!(node = %name, %endpoint, "node up");
                let since = Instant::now();
                let reason = consume(&state, idx, &name, stream).await;
                backoff = if since.elapsed() >= STABLE_AFTER {
                    MIN_BACKOFF
                } else {
                    (backoff * 2).min(MAX_BACKOFF)
                };
                // Debounce: a stream that dropped while the node still
                // answers is re-opened without declaring the node down.
                if quick_health(&client, &endpoint).await {
                    tracing::warn!(node = %name, "event stream dropped ({reason}); node still answers, reconnecting");
                    if let Ok(again) = connect(&client, &endpoint).await {
                        let (stream, discovery, models) = again;
                        state
                            .fleet
                            .lock()
                            .node_up(idx, discovery.devices, models.models);
                        let reason = consume(&state, idx, &name, stream).await;
                        mark_down(&state, idx, &name, &reason);
                    } else {
                        mark_down(&state, idx, &name, &reason);
                    }
                } else {
                    mark_down(&state, idx, &name, &reason);
                }
            }
            Err(e) => {
                if !logged_failure {
                    tracing::warn!(node = %name, %endpoint, "cannot reach neuron: {e:#}");
                    logged_failure = true;
                }
                state
                    .fleet
                    .lock()
                    .unreachable(idx, format!("unreachable: {e:#}"));
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

type ByteStream = futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>;

/// Opens the event stream first, then reads the state, so nothing that
/// happens in between is missed.
async fn connect(
    client: &reqwest::Client,
    endpoint: &str,
) -> anyhow::Result<(ByteStream, Discovery, ModelsResponse)> {
    let asked = client
        .get(format!("{endpoint}/events"))
        .header("accept", "text/event-stream")
        .send();
    let resp = tokio::time::timeout(HANDSHAKE, asked)
        .await
        .map_err(|_| anyhow::anyhow!("no answer to GET /events within {} s", HANDSHAKE.as_secs()))?
        .context("GET /events")?;
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        bail!(
            "the neuron refused the gateway's token (401): give the gateway the fleet's \
             neuron token ([auth] neuron_token, neuron_token_file or CORTEX_NEURON_TOKEN), \
             or this node's own ([[neurons]] token_file)"
        );
    }
    if !resp.status().is_success() {
        bail!("GET /events answered {}", resp.status());
    }
    let stream: ByteStream = resp.bytes_stream().boxed();
    let mut discovery: Discovery = get_json(client, &format!("{endpoint}/discovery")).await?;
    let mut models: ModelsResponse = get_json(client, &format!("{endpoint}/models")).await?;
    echo::cap_devices(&mut discovery.devices);
    echo::cap_models(&mut models.models);
    Ok((stream, discovery, models))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    let resp = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url} answered {}", resp.status());
    }
    resp.json().await.with_context(|| format!("reading {url}"))
}

async fn quick_health(client: &reqwest::Client, endpoint: &str) -> bool {
    client
        .get(format!("{endpoint}/health"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Applies the stream's events until it ends; returns why it ended.
async fn consume(state: &AppState, idx: usize, name: &str, stream: ByteStream) -> String {
    let mut events = stream.eventsource();
    loop {
        let next = match tokio::time::timeout(EVENTS_IDLE, events.next()).await {
            Err(_) => return format!("no event for {} s", EVENTS_IDLE.as_secs()),
            Ok(None) => return "event stream ended".into(),
            Ok(Some(Err(e))) => return format!("event stream failed: {e}"),
            Ok(Some(Ok(ev))) => ev,
        };
        if next.data.is_empty() {
            continue;
        }
        let mut event: Event = match serde_json::from_str(&next.data) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(node = %name, "unreadable event ({e}): {}", truncate(&next.data));
                continue;
            }
        };
        if !echo::from_neuron(&event.kind) {
            tracing::warn!(node = %name, kind = event.kind.name(), "ignoring an event only the gateway may send");
            continue;
        }
        echo::cap_event(&mut event.kind);
        let stats = matches!(event.kind, EventKind::DeviceStats { .. });
        record_metrics(state, name, &event.kind);
        state.fleet.lock().apply(idx, event.kind);
        if stats {
            update_gauges(state, idx);
        }
    }
}

fn mark_down(state: &AppState, idx: usize, name: &str, reason: &str) {
    let was_up = state.fleet.lock().node_down(idx, reason);
    update_gauges(state, idx);
    if was_up {
        tracing::warn!(node = %name, "node down: {reason}");
    }
}

/// Token counts, TTFT and speed come from the neuron's own measurements.
fn record_metrics(state: &AppState, node: &str, kind: &EventKind) {
    if let EventKind::RequestFinished {
        model,
        prompt_tokens,
        completion_tokens,
        ttft_ms,
        decode_tok_s,
        ..
    } = kind
    {
        let m = &state.metrics;
        let l = model_node(model, node);
        m.prompt_tokens
            .get_or_create(&l)
            .inc_by(u64::from(*prompt_tokens));
        m.completion_tokens
            .get_or_create(&l)
            .inc_by(u64::from(*completion_tokens));
        if let Some(t) = ttft_ms {
            m.ttft_seconds.get_or_create(&l).observe(t / 1000.0);
        }
        if let Some(s) = decode_tok_s {
            m.tokens_per_second.get_or_create(&l).observe(*s);
        }
    }
}

/// Node, device and replica gauges from the current view.
pub fn update_gauges(state: &AppState, idx: usize) {
    let n = state.fleet.lock().gauges(idx);
    let m = &state.metrics;
    let node = NodeLabel {
        node: n.name.clone(),
    };
    m.node_up.get_or_create(&node).set(i64::from(n.up));
    m.node_in_flight
        .get_or_create(&node)
        .set(i64::from(n.in_flight));
    for d in &n.devices {
        let l = DeviceLabels {
            node: n.name.clone(),
            device: d.id.clone(),
        };
        m.device_memory_total
            .get_or_create(&l)
            .set(d.memory_total_bytes as i64);
        m.device_memory_used.get_or_create(&l).set(if n.up {
            d.memory_used_bytes as i64
        } else {
            0
        });
    }
    for (model, in_flight, queued) in &n.models {
        let l = model_node(model, &n.name);
        m.model_in_flight
            .get_or_create(&l)
            .set(i64::from(*in_flight));
        m.model_queue_depth
            .get_or_create(&l)
            .set(i64::from(*queued));
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
