//! Forwarding a client request to the replica the router picked: bodies pass
//! through untouched (but for the resolved model id), streams pass through
//! as they arrive (SSE), with an idle read timeout and never a total one.
//! While a cold load or a long prefill keeps a stream silent the client gets
//! keepalive comments; a stream that fails after it started ends with an
//! error event and `[DONE]`. How every request ended is logged, counted and
//! published.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cortex_common::error::{ApiError, ErrorKind};
use cortex_common::event::EventKind;
use futures::StreamExt;

use crate::error::{AppError, UPSTREAM_QUEUE_FULL, from_upstream_body, unavailable, upstream};
use crate::metrics::{ErrorLabels, model_node};
use crate::router::{Lease, acquire, forget};
use crate::state::AppState;

/// Header naming the node that served a request.
pub const NODE_HEADER: &str = "x-cortex-node";
/// How long a streaming request waits for a replica before the gateway
/// commits to a 200 SSE response and keeps the client company.
const STREAM_COMMIT_AFTER: Duration = Duration::from_millis(250);
/// Largest upstream error body read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// One request to send to a neuron.
pub struct Forward {
    /// Neuron path, e.g. `/v1/chat/completions`.
    pub path: &'static str,
    /// Body as the neuron should get it (model id already resolved).
    pub body: serde_json::Value,
    pub model: String,
    pub stream: bool,
}

/// The bookkeeping of one client request; a request dropped before it was
/// finished is a client that went away.
struct Record {
    state: Arc<AppState>,
    id: String,
    model: String,
    node: Option<String>,
    started: Instant,
    done: bool,
}

impl Record {
    fn new(state: &Arc<AppState>, model: &str) -> Self {
        Record {
            state: state.clone(),
            id: state.next_request_id(),
            model: model.to_string(),
            node: None,
            started: Instant::now(),
            done: false,
        }
    }

    fn routed(&mut self, lease: &Lease) {
        self.node = Some(lease.replica.node.clone());
        self.state.bus.publish(
            self.node.clone(),
            EventKind::RequestRouted {
                request_id: self.id.clone(),
                model: self.model.clone(),
            },
        );
    }

    fn count(&self) {
        let node = self.node.clone().unwrap_or_default();
        let m = &self.state.metrics;
        let l = model_node(&self.model, &node);
        m.requests.get_or_create(&l).inc();
        if self.node.is_some() {
            m.request_duration_seconds
                .get_or_create(&l)
                .observe(self.started.elapsed().as_secs_f64());
        }
        self.state.fleet.lock().runtime(&self.model).requests_total += 1;
    }

    fn ok(mut self) {
        self.done = true;
        self.count();
        tracing::debug!(id = %self.id, model = %self.model, node = ?self.node, "request done");
    }

    fn fail(mut self, err: &ApiError) {
        self.done = true;
        self.count();
        let node = self.node.clone().unwrap_or_default();
        self.state
            .metrics
            .errors
            .get_or_create(&ErrorLabels {
                model: self.model.clone(),
                node: node.clone(),
                code: err.code.to_string(),
            })
            .inc();
        self.state.fleet.lock().runtime(&self.model).errors_total += 1;
        tracing::warn!(id = %self.id, model = %self.model, %node, status = err.status(), "request failed: {}", err.message);
        self.state.bus.publish(
            self.node.clone(),
            EventKind::RequestFailed {
                request_id: self.id.clone(),
                model: self.model.clone(),
                status: err.status(),
                reason: err.message.clone(),
            },
        );
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.done {
            self.count();
            tracing::info!(id = %self.id, model = %self.model, node = ?self.node, "client went away");
        }
    }
}

pub async fn forward(state: Arc<AppState>, req: Forward) -> Response {
    let mut record = Record::new(&state, &req.model);
    let mut acquiring = tokio::spawn(acquire(state.clone(), req.model.clone()));
    if req.stream {
        match tokio::time::timeout(STREAM_COMMIT_AFTER, &mut acquiring).await {
            Ok(joined) => {
                let lease = match flatten(joined) {
                    Ok(l) => l,
                    Err(e) => return failed(record, e),
                };
                // A replica was at hand: errors before the first byte can
                // still be answered with their own status.
                match send_queued(&state, &req, lease, &mut record).await {
                    Ok((lease, resp)) => stream_response(state, record, lease, resp),
                    Err(e) => failed(record, e),
                }
            }
            Err(_) => stream_response_after_load(state, record, req, acquiring),
        }
    } else {
        let lease = match flatten(acquiring.await) {
            Ok(l) => l,
            Err(e) => return failed(record, e),
        };
        let (lease, resp) = match send_queued(&state, &req, lease, &mut record).await {
            Ok(x) => x,
            Err(e) => return failed(record, e),
        };
        let mut down = lease.replica.down.clone();
        let status = resp.status();
        let body = tokio::select! {
            b = resp.bytes() => b.map_err(|e| upstream("upstream_failed", format!("reading the answer from {}: {e}", lease.replica.node))),
            _ = down.changed() => Err(upstream("node_down", format!("{} went down during the request", lease.replica.node))),
        };
        match body {
            Ok(body) => {
                record.ok();
                let mut r = Response::new(Body::from(body));
                *r.status_mut() = status;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                set_node(&mut r, &lease.replica.node);
                r
            }
            Err(e) => failed(record, e),
        }
    }
}

fn flatten(
    joined: Result<Result<Lease, ApiError>, tokio::task::JoinError>,
) -> Result<Lease, ApiError> {
    joined.unwrap_or_else(|e| Err(ApiError::internal(format!("routing task failed: {e}"))))
}

fn failed(record: Record, e: ApiError) -> Response {
    record.fail(&e);
    AppError(e).into_response()
}

fn set_node(r: &mut Response, node: &str) {
    if let Ok(v) = HeaderValue::from_str(node) {
        r.headers_mut().insert(NODE_HEADER, v);
    }
}

/// Sends the request; when every replica is full, waits in the model's line
/// at the gateway (arrival order) and retries as room frees, until the
/// queue timeout. 503 only when the line itself is full or time is up.
async fn send_queued(
    state: &Arc<AppState>,
    req: &Forward,
    lease: Lease,
    record: &mut Record,
) -> Result<(Lease, reqwest::Response), ApiError> {
    let first = match send_with_retry(state, req, lease, record).await {
        Err(e) if e.code == UPSTREAM_QUEUE_FULL => e,
        other => return other,
    };
    let retry = state.cfg.gateway.retry_after_secs;
    let timeout = state.cfg.gateway.queue_timeout();
    let deadline = tokio::time::Instant::now() + timeout;
    let Some(place) = state.waitlists.enter(&req.model) else {
        return Err(unavailable(
            "gateway_queue_full",
            format!(
                "`{}` is busy on every replica and {} requests already wait at the gateway: {}",
                req.model, state.cfg.gateway.max_waiting, first.message
            ),
            retry,
        ));
    };
    tracing::info!(id = %record.id, model = %req.model, waiting = state.waitlists.waiting(&req.model), "every replica is full; waiting at the gateway");
    let timed_out = || {
        unavailable(
            "queue_timeout",
            format!(
                "`{}` stayed busy on every replica for {} s",
                req.model,
                timeout.as_secs()
            ),
            retry,
        )
    };
    let _head = tokio::time::timeout_at(deadline, place.head())
        .await
        .map_err(|_| timed_out())?;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(timed_out());
        }
        tokio::time::timeout_at(deadline, place.capacity_freed())
            .await
            .map_err(|_| timed_out())?;
        let lease = tokio::time::timeout_at(deadline, acquire(state.clone(), req.model.clone()))
            .await
            .map_err(|_| timed_out())??;
        match send_with_retry(state, req, lease, record).await {
            Err(e) if e.code == UPSTREAM_QUEUE_FULL => continue,
            other => return other,
        }
    }
}

/// Sends the request; when the fleet view was stale (the neuron no longer
/// has the model, or cannot be reached) routes once more.
async fn send_with_retry(
    state: &Arc<AppState>,
    req: &Forward,
    mut lease: Lease,
    record: &mut Record,
) -> Result<(Lease, reqwest::Response), ApiError> {
    for attempt in 0..2 {
        record.routed(&lease);
        let url = format!("{}{}", lease.replica.endpoint, req.path);
        let sent = state
            .neurons
            .upstream(lease.replica.idx)
            .post(&url)
            .header("x-request-id", &record.id)
            .json(&req.body)
            .send()
            .await;
        let stale = match &sent {
            Err(e) => e.is_connect(),
            Ok(r) => r.status() == StatusCode::NOT_FOUND,
        };
        if stale && attempt == 0 {
            tracing::info!(node = %lease.replica.node, model = %req.model, "replica was not there; routing again");
            forget(state, &lease.replica, &req.model);
            drop(lease);
            lease = acquire(state.clone(), req.model.clone()).await?;
            continue;
        }
        let resp = sent.map_err(|e| {
            upstream(
                "upstream_unreachable",
                format!("sending to {}: {e}", lease.replica.node),
            )
        })?;
        if resp.status().is_success() {
            return Ok((lease, resp));
        }
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        let body = read_limited(resp).await;
        let mut e = from_upstream_body(status, &body);
        if e.kind == ErrorKind::Overloaded {
            e.retry_after_secs = Some(retry_after.unwrap_or(state.cfg.gateway.retry_after_secs));
        }
        return Err(e);
    }
    Err(ApiError::internal("routing retried without an answer"))
}

async fn read_limited(resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(Ok(chunk)) = s.next().await {
        out.extend_from_slice(&chunk);
        if out.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    out
}

fn sse_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// The SSE frame that ends a failed stream, then `[DONE]`.
pub fn error_frames(e: &ApiError, mid_event: bool) -> Bytes {
    let json = serde_json::to_string(&e.envelope()).unwrap_or_else(|_| "{}".into());
    let lead = if mid_event { "\n\n" } else { "" };
    Bytes::from(format!("{lead}data: {json}\n\ndata: [DONE]\n\n"))
}

/// Pass-through of a stream that already has its upstream response.
fn stream_response(
    state: Arc<AppState>,
    record: Record,
    lease: Lease,
    resp: reqwest::Response,
) -> Response {
    let node = lease.replica.node.clone();
    let body = pass_through(state, record, lease, resp).map(Ok::<Bytes, std::convert::Infallible>);
    let mut r = Response::new(Body::from_stream(body));
    sse_headers(&mut r);
    set_node(&mut r, &node);
    r
}

/// A stream whose replica is not ready yet (cold load, room being made):
/// answers 200 at once and sends keepalive comments until it is.
fn stream_response_after_load(
    state: Arc<AppState>,
    mut record: Record,
    req: Forward,
    mut acquiring: tokio::task::JoinHandle<Result<Lease, ApiError>>,
) -> Response {
    let keepalive = state.cfg.gateway.keepalive_interval();
    let body = async_stream::stream! {
        let mut tick = tokio::time::interval(keepalive);
        tick.reset();
        let lease = loop {
            tokio::select! {
                joined = &mut acquiring => break flatten(joined),
                _ = tick.tick() => yield Ok::<Bytes, std::convert::Infallible>(Bytes::from_static(b": cortex: waiting for the model to load\n\n")),
            }
        };
        let lease = match lease {
            Ok(l) => l,
            Err(e) => {
                yield Ok(error_frames(&e, false));
                record.fail(&e);
                return;
            }
        };
        let sent = {
            let sending = send_queued(&state, &req, lease, &mut record);
            tokio::pin!(sending);
            loop {
                tokio::select! {
                    r = &mut sending => break r,
                    _ = tick.tick() => yield Ok(Bytes::from_static(b": cortex: waiting for the neuron\n\n")),
                }
            }
        };
        match sent {
            Ok((lease, resp)) => {
                let mut pass = pass_through(state.clone(), record, lease, resp);
                while let Some(b) = pass.next().await {
                    yield Ok(b);
                }
            }
            Err(e) => {
                yield Ok(error_frames(&e, false));
                record.fail(&e);
            }
        }
    };
    let mut r = Response::new(Body::from_stream(body));
    sse_headers(&mut r);
    r
}

/// The upstream's bytes as they come, keepalives in the silences (only
/// between events), an error event then `[DONE]` when it fails.
fn pass_through(
    state: Arc<AppState>,
    record: Record,
    lease: Lease,
    resp: reqwest::Response,
) -> futures::stream::BoxStream<'static, Bytes> {
    let keepalive = state.cfg.gateway.keepalive_interval();
    Box::pin(async_stream::stream! {
        let mut up = resp.bytes_stream();
        let mut down = lease.replica.down.clone();
        let mut tick = tokio::time::interval(keepalive);
        tick.reset();
        let mut at_boundary = true;
        let mut tail: Vec<u8> = Vec::new();
        let mut saw_done = false;
        let failure = loop {
            tokio::select! {
                chunk = up.next() => match chunk {
                    Some(Ok(b)) => {
                        at_boundary = b.ends_with(b"\n\n");
                        tail.extend_from_slice(&b);
                        if find(&tail, b"data: [DONE]") {
                            saw_done = true;
                        }
                        let keep = tail.len().saturating_sub(16);
                        tail.drain(..keep);
                        tick.reset();
                        yield b;
                    }
                    Some(Err(e)) => break Some(upstream("upstream_failed", format!("stream from {} failed: {e}", lease.replica.node))),
                    None if saw_done => break None,
                    None => break Some(upstream("upstream_failed", format!("stream from {} ended before [DONE]", lease.replica.node))),
                },
                _ = down.changed() => break Some(upstream("node_down", format!("{} went down during the stream", lease.replica.node))),
                _ = tick.tick() => if at_boundary {
                    yield Bytes::from_static(b": keepalive\n\n");
                },
            }
        };
        drop(lease);
        match failure {
            None => record.ok(),
            Some(e) => {
                yield error_frames(&e, !at_boundary);
                record.fail(&e);
            }
        }
        drop(state);
    })
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frames_end_with_done_and_close_a_partial_event() {
        let e = upstream("upstream_failed", "boom");
        let text = String::from_utf8(error_frames(&e, true).to_vec()).unwrap();
        assert!(text.starts_with("\n\ndata: {\"error\""), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let text = String::from_utf8(error_frames(&e, false).to_vec()).unwrap();
        assert!(text.starts_with("data: {"), "{text}");
    }
}
