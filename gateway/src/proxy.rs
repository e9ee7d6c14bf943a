//! Forwarding a client request to the replica the router picked: bodies pass
//! through untouched (but for the resolved model id). The neuron always
//! streams, with an idle read timeout and never a total one: streams pass
//! through frame by frame (SSE, see `neuron_sse`), non-streamed answers are
//! assembled here (`assemble`). While a cold load or a long prefill keeps a
//! stream silent the client gets keepalive comments; a request whose node
//! fails before the client saw any of the answer is retried (`retry`); a
//! stream that fails after it started ends with an error event and
//! `[DONE]`. How every request ended is logged, counted and published.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cortex_common::error::{ApiError, ErrorKind};
use cortex_common::event::{EventKind, RequestEnd};
use cortex_common::openai::ChatCompletionResponse;
use futures::StreamExt;

use crate::assemble::Assembler;
use crate::error::{AppError, UPSTREAM_QUEUE_FULL, from_upstream_body, unavailable, upstream};
use crate::metrics::{ErrorLabels, model_node};
use crate::neuron_sse::{Frames, Kind, ReadError};
use crate::redact::redact_paths;
use crate::retry::{Failed, Retries, is_node_failure};
use crate::router::{Lease, acquire, forget};
use crate::state::AppState;
use crate::waitlist::Full;

/// The neuron's chat endpoint: the one whose answers are streamed.
const CHAT_PATH: &str = "/v1/chat/completions";

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

    /// Where the request failed, for a retry's event.
    fn failed_at(&self) -> Failed<'_> {
        Failed {
            request_id: &self.id,
            model: &self.model,
            node: self.node.as_deref(),
        }
    }

    /// Counted once per client request, however it `ended`.
    fn count(&self, ended: RequestEnd) {
        let node = self.node.clone().unwrap_or_default();
        let m = &self.state.metrics;
        let l = model_node(&self.model, &node);
        m.requests.get_or_create(&l).inc();
        if self.node.is_some() {
            m.request_duration_seconds
                .get_or_create(&l)
                .observe(self.started.elapsed().as_secs_f64());
        }
        self.state
            .fleet
            .lock()
            .request_done(&self.id, &self.model, self.node.as_deref(), ended);
    }

    fn ok(mut self) {
        self.done = true;
        self.count(RequestEnd::Done);
        tracing::debug!(id = %self.id, model = %self.model, node = ?self.node, "request done");
    }

    fn fail(mut self, err: &ApiError) {
        self.done = true;
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
        self.count(RequestEnd::Error);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.done {
            self.count(RequestEnd::ClientGone);
            tracing::info!(id = %self.id, model = %self.model, node = ?self.node, "client went away");
        }
    }
}

pub async fn forward(state: Arc<AppState>, mut req: Forward) -> Response {
    let record = Record::new(&state, &req.model);
    let retries = Retries::new(&state);
    if !req.stream {
        if req.path != CHAT_PATH {
            // Not a generation (e.g. counting tokens): a JSON answer as is.
            return answer_json(state, record, req, retries).await;
        }
        // The neuron always streams (see `assemble`); the JSON is built here.
        if let Some(body) = req.body.as_object_mut() {
            body.insert("stream".into(), serde_json::Value::Bool(true));
            body.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
        return answer_json(state, record, req, retries).await;
    }
    let mut record = record;
    let mut acquiring = tokio::spawn(acquire(state.clone(), req.model.clone()));
    match tokio::time::timeout(STREAM_COMMIT_AFTER, &mut acquiring).await {
        Ok(joined) => {
            let lease = match flatten(joined) {
                Ok(l) => l,
                Err(e) => return failed(record, e),
            };
            // A replica was at hand: errors before the first byte can
            // still be answered with their own status.
            match send_queued(&state, &req, lease, &mut record).await {
                Ok((lease, resp)) => {
                    let node = lease.replica.node.clone();
                    let body = stream_body(state, record, req, retries, Start::Sent(lease, resp));
                    sse_response(body, Some(&node))
                }
                Err(e) if is_node_failure(&e) => {
                    let body = stream_body(state, record, req, retries, Start::Failed(e));
                    sse_response(body, None)
                }
                Err(e) => failed(record, e),
            }
        }
        Err(_) => {
            let body = stream_body(state, record, req, retries, Start::Acquiring(acquiring));
            sse_response(body, None)
        }
    }
}

/// A non-streamed answer: assembled from the neuron's stream; retried on
/// another replica when its node fails first (the client has seen nothing).
async fn answer_json(
    state: Arc<AppState>,
    mut record: Record,
    req: Forward,
    mut retries: Retries,
) -> Response {
    loop {
        let lease = match acquire(state.clone(), req.model.clone()).await {
            Ok(l) => l,
            Err(e) => return failed(record, e),
        };
        let e = match send_queued(&state, &req, lease, &mut record).await {
            Ok((lease, resp)) => match collect(&lease, resp).await {
                Ok(mut r) => {
                    record.ok();
                    set_node(&mut r, &lease.replica.node);
                    return r;
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        if !retries.again(&state, record.failed_at(), &e).await {
            return failed(record, e);
        }
    }
}

/// Reads the neuron's answer: a chat stream assembled into one completion,
/// anything else (a JSON document) as it is.
async fn collect(lease: &Lease, resp: reqwest::Response) -> Result<Response, ApiError> {
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_sse {
        return Ok(axum::Json(assemble(lease, resp).await?).into_response());
    }
    let node = &lease.replica.node;
    let mut down = lease.replica.down.clone();
    let body = tokio::select! {
        b = resp.bytes() => b.map_err(|e| upstream("upstream_failed", format!("reading the answer from {node}: {e}")))?,
        _ = down.changed() => return Err(went_down(node)),
    };
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Reads a neuron's chat stream to `[DONE]` into one answer.
async fn assemble(
    lease: &Lease,
    resp: reqwest::Response,
) -> Result<ChatCompletionResponse, ApiError> {
    let node = &lease.replica.node;
    let mut frames = Frames::new(resp);
    let mut down = lease.replica.down.clone();
    let mut answer = Assembler::default();
    loop {
        let frame = tokio::select! {
            f = frames.next() => f.map_err(|e| read_failure(node, e))?,
            _ = down.changed() => return Err(went_down(node)),
        };
        match frame.kind {
            Kind::Comment => {}
            Kind::Chunk(Some(chunk)) => answer.push(&chunk),
            Kind::Chunk(None) => {
                return Err(upstream(
                    "upstream_invalid",
                    format!("{node} sent a chunk that is not a chat completion chunk"),
                ));
            }
            Kind::Error(e) => return Err(e),
            Kind::Done => return Ok(answer.finish()),
        }
    }
}

fn read_failure(node: &str, e: ReadError) -> ApiError {
    let code = match e {
        ReadError::TooLarge => "upstream_invalid",
        ReadError::Transport(_) | ReadError::Ended => "upstream_failed",
    };
    upstream(code, format!("the stream from {node} {e}"))
}

fn went_down(node: &str) -> ApiError {
    upstream("node_down", format!("{node} went down during the request"))
}

fn flatten(
    joined: Result<Result<Lease, ApiError>, tokio::task::JoinError>,
) -> Result<Lease, ApiError> {
    joined.unwrap_or_else(|e| Err(ApiError::internal(format!("routing task failed: {e}"))))
}

fn failed(record: Record, e: ApiError) -> Response {
    record.fail(&e);
    AppError(for_client(e)).into_response()
}

/// The error as a client may see it: no server paths in its message (the
/// event and the log keep the whole message).
fn for_client(mut e: ApiError) -> ApiError {
    e.message = redact_paths(&e.message);
    e
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
    let place = match state.waitlists.enter(&req.model) {
        Ok(place) => place,
        Err(full) => {
            let waiting = match full {
                Full::Model(n) => format!("{n} requests for it already wait at the gateway"),
                Full::Gateway(n) => format!("{n} requests already wait at the gateway"),
            };
            return Err(unavailable(
                "gateway_queue_full",
                format!(
                    "`{}` is busy on every replica and {waiting}: {}",
                    req.model, first.message
                ),
                retry,
            ));
        }
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
        let sending = state
            .neurons
            .upstream(lease.replica.idx)
            .post(&url)
            .header("x-request-id", &record.id)
            .json(&req.body)
            .send();
        // A node that hangs before answering (stopped, wedged) is marked
        // down by its silent event stream; the request is retried then,
        // not after the upstream idle timeout.
        let mut down = lease.replica.down.clone();
        let sent = tokio::select! {
            sent = sending => sent,
            Ok(()) = down.changed() => return Err(went_down(&lease.replica.node)),
        };
        // The neuron does not have the model (any more): the view was stale.
        let stale = matches!(&sent, Ok(r) if r.status() == StatusCode::NOT_FOUND);
        if stale && attempt == 0 {
            tracing::info!(node = %lease.replica.node, model = %req.model, "replica was not there; routing again");
            forget(state, &lease.replica, &req.model);
            drop(lease);
            lease = acquire(state.clone(), req.model.clone()).await?;
            continue;
        }
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                // Dead or resetting: route nowhere near it until its events
                // say otherwise; the caller may retry elsewhere.
                if e.is_connect() {
                    forget(state, &lease.replica, &req.model);
                }
                return Err(upstream(
                    "upstream_unreachable",
                    format!("sending to {}: {e}", lease.replica.node),
                ));
            }
        };
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

/// An SSE response over `body`, naming the node when it is known.
fn sse_response(
    body: impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
    node: Option<&str>,
) -> Response {
    let mut r = Response::new(Body::from_stream(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(node) = node {
        set_node(&mut r, node);
    }
    r
}

/// The SSE frame that ends a failed stream, then `[DONE]`.
pub fn error_frames(e: &ApiError) -> Bytes {
    let json =
        serde_json::to_string(&for_client(e.clone()).envelope()).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("data: {json}\n\ndata: [DONE]\n\n"))
}

const WAITING_FOR_MODEL: Bytes = Bytes::from_static(b": cortex: waiting for the model to load\n\n");
const WAITING_FOR_NEURON: Bytes = Bytes::from_static(b": cortex: waiting for the neuron\n\n");
const KEEPALIVE: Bytes = Bytes::from_static(b": keepalive\n\n");

/// Where a streamed request's body begins.
enum Start {
    /// Sent, with the neuron's 200 in hand.
    Sent(Lease, reqwest::Response),
    /// Still looking for a replica (cold load, room being made).
    Acquiring(tokio::task::JoinHandle<Result<Lease, ApiError>>),
    /// The first attempt's node failed before answering.
    Failed(ApiError),
}

/// A streamed request's SSE body: keepalive comments while a replica is
/// found and the neuron prefills; the neuron's frames, whole, once the
/// answer starts (the opening role-only chunk is held back until then);
/// retries while the client has seen nothing of the answer; an error
/// event then `[DONE]` when it fails.
fn stream_body(
    state: Arc<AppState>,
    mut record: Record,
    req: Forward,
    mut retries: Retries,
    start: Start,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let keepalive = state.cfg.gateway.keepalive_interval();
    async_stream::stream! {
        let mut tick = tokio::time::interval(keepalive);
        tick.reset();
        let mut start = Some(start);
        loop {
            let attempt = match start.take() {
                Some(Start::Sent(lease, resp)) => Ok((lease, resp)),
                Some(Start::Failed(e)) => Err(e),
                other => {
                    let mut acquiring = match other {
                        Some(Start::Acquiring(handle)) => handle,
                        _ => tokio::spawn(acquire(state.clone(), req.model.clone())),
                    };
                    let lease = loop {
                        tokio::select! {
                            joined = &mut acquiring => break flatten(joined),
                            _ = tick.tick() => yield Ok(WAITING_FOR_MODEL),
                        }
                    };
                    match lease {
                        Err(e) => Err(e),
                        Ok(lease) => {
                            let sending = send_queued(&state, &req, lease, &mut record);
                            tokio::pin!(sending);
                            loop {
                                tokio::select! {
                                    r = &mut sending => break r,
                                    _ = tick.tick() => yield Ok(WAITING_FOR_NEURON),
                                }
                            }
                        }
                    }
                }
            };
            let failure = match attempt {
                Err(e) => e,
                Ok((lease, resp)) => {
                    let node = lease.replica.node.clone();
                    let mut frames = Frames::new(resp);
                    let mut down = lease.replica.down.clone();
                    // Frames that open the message but say nothing yet.
                    let mut held: Vec<Bytes> = Vec::new();
                    let mut started = false;
                    let end = loop {
                        tokio::select! {
                            f = frames.next() => match f {
                                Err(e) => break Some(read_failure(&node, e)),
                                Ok(frame) => {
                                    tick.reset();
                                    match frame.kind {
                                        Kind::Error(e) => break Some(e),
                                        Kind::Comment => yield Ok(frame.raw),
                                        _ if !started && !frame.starts_answer() => held.push(frame.raw),
                                        _ => {
                                            started = true;
                                            for h in held.drain(..) {
                                                yield Ok(h);
                                            }
                                            let done = matches!(frame.kind, Kind::Done);
                                            yield Ok(frame.raw);
                                            if done {
                                                break None;
                                            }
                                        }
                                    }
                                }
                            },
                            _ = down.changed() => break Some(went_down(&node)),
                            _ = tick.tick() => yield Ok(KEEPALIVE),
                        }
                    };
                    drop(lease);
                    match end {
                        None => {
                            record.ok();
                            return;
                        }
                        Some(e) if started => {
                            yield Ok(error_frames(&e));
                            record.fail(&e);
                            return;
                        }
                        Some(e) => e,
                    }
                }
            };
            let again = {
                let deciding = retries.again(&state, record.failed_at(), &failure);
                tokio::pin!(deciding);
                loop {
                    tokio::select! {
                        r = &mut deciding => break r,
                        _ = tick.tick() => yield Ok(KEEPALIVE),
                    }
                }
            };
            if !again {
                yield Ok(error_frames(&failure));
                record.fail(&failure);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frames_end_with_done() {
        let e = upstream("upstream_failed", "boom");
        let text = String::from_utf8(error_frames(&e).to_vec()).unwrap();
        assert!(text.starts_with("data: {\"error\""), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }
}
