//! Forwarding a client request to the replica the router picked: bodies go
//! out untouched (but for the resolved model id). The neuron always
//! streams, with an idle read timeout and never a total one; its frames are
//! parsed once (`neuron_sse`) and handed on as typed values ([`Answer`]):
//! a stream's chunks one by one, a non-streamed answer assembled here
//! (`assemble`). Each client surface renders those in its own shape. While
//! a cold load or a long prefill keeps a stream silent the surface is told
//! to keep the client company ([`Event::Wait`]); a request whose node fails
//! before the client saw any of the answer is retried (`retry`); a stream
//! that fails after it started ends with [`Event::Failed`]. How every
//! request ended is logged, counted and published.

mod answer;

pub use answer::{Answer, Event, Reply, Wait};

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
use cortex_common::error::{ApiError, ErrorKind};
use cortex_common::event::{EventKind, RequestEnd};
use cortex_common::openai::{ChatCompletionChunk, ChatCompletionResponse};
use futures::StreamExt;

use crate::assemble::Assembler;
use crate::error::{Refusal, refusal, unavailable, upstream};
use crate::metrics::{ErrorLabels, model_node};
use crate::neuron_sse::{Frame, Frames, ReadError};
use crate::redact::redact_paths;
use crate::retry::{Failed, Retries, is_node_failure};
use crate::router::{Lease, acquire, forget};
use crate::state::AppState;
use crate::waitlist::Full;

/// The neuron's chat endpoint: the one whose answers are streamed.
const CHAT_PATH: &str = "/v1/chat/completions";

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

/// Sends `req` to a replica of its model and answers with what came back;
/// `Err` is a failure before any of the answer, its message fit for the
/// client (already logged, counted and published).
pub async fn forward(state: Arc<AppState>, mut req: Forward) -> Result<Answer, ApiError> {
    let record = Record::new(&state, &req.model);
    let retries = Retries::new(&state);
    if !req.stream {
        if req.path == CHAT_PATH {
            // The neuron always streams (see `assemble`); the answer is
            // built here.
            if let Some(body) = req.body.as_object_mut() {
                body.insert("stream".into(), serde_json::Value::Bool(true));
                body.insert(
                    "stream_options".into(),
                    serde_json::json!({"include_usage": true}),
                );
            }
        }
        // Otherwise not a generation (e.g. counting tokens): its JSON as is.
        return answer_whole(state, record, req, retries).await;
    }
    let mut record = record;
    let mut acquiring = tokio::spawn(acquire(state.clone(), req.model.clone()));
    let (node, start) = match tokio::time::timeout(STREAM_COMMIT_AFTER, &mut acquiring).await {
        Ok(joined) => {
            let lease = match flatten(joined) {
                Ok(l) => l,
                Err(e) => return Err(failed(record, e)),
            };
            // A replica was at hand: errors before the first byte can
            // still be answered with their own status.
            match send_queued(&state, &req, lease, &mut record).await {
                Ok((lease, resp)) => (Some(lease.replica.node.clone()), Start::Sent(lease, resp)),
                Err(e) if is_node_failure(&e) => (None, Start::Failed(e)),
                Err(e) => return Err(failed(record, e)),
            }
        }
        Err(_) => (None, Start::Acquiring(acquiring)),
    };
    Ok(Answer::Stream {
        node,
        events: Box::pin(stream_events(state, record, req, retries, start)),
    })
}

/// A non-streamed answer: read whole from the neuron; retried on another
/// replica when its node fails first (the client has seen nothing).
async fn answer_whole(
    state: Arc<AppState>,
    mut record: Record,
    req: Forward,
    mut retries: Retries,
) -> Result<Answer, ApiError> {
    loop {
        let lease = match acquire(state.clone(), req.model.clone()).await {
            Ok(l) => l,
            Err(e) => return Err(failed(record, e)),
        };
        let e = match send_queued(&state, &req, lease, &mut record).await {
            Ok((lease, resp)) => match collect(&lease, resp).await {
                Ok(reply) => {
                    record.ok();
                    return Ok(Answer::Whole {
                        node: lease.replica.node.clone(),
                        reply,
                    });
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        if !retries.again(&state, record.failed_at(), &e).await {
            return Err(failed(record, e));
        }
    }
}

/// Reads the neuron's answer: a chat stream assembled into one completion,
/// anything else as the JSON document it is.
async fn collect(lease: &Lease, resp: reqwest::Response) -> Result<Reply, ApiError> {
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_sse {
        return Ok(Reply::Chat(Box::new(assemble(lease, resp).await?)));
    }
    let node = &lease.replica.node;
    let mut down = lease.replica.down.clone();
    let body = tokio::select! {
        b = resp.bytes() => b.map_err(|e| upstream("upstream_failed", format!("reading the answer from {node}: {e}")))?,
        _ = down.changed() => return Err(went_down(node)),
    };
    serde_json::from_slice(&body)
        .map(Reply::Document)
        .map_err(|e| {
            upstream(
                "upstream_invalid",
                format!("{node} answered with something that is not JSON: {e}"),
            )
        })
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
        match frame {
            Frame::Comment => {}
            Frame::Chunk(chunk) => answer.push(&chunk),
            Frame::Invalid(what) => return Err(invalid_frame(node, &what)),
            Frame::Error(e) => return Err(e),
            Frame::Done => return Ok(answer.finish()),
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

fn invalid_frame(node: &str, what: &str) -> ApiError {
    upstream("upstream_invalid", format!("{node} sent {what}"))
}

fn went_down(node: &str) -> ApiError {
    upstream("node_down", format!("{node} went down during the request"))
}

fn flatten(
    joined: Result<Result<Lease, ApiError>, tokio::task::JoinError>,
) -> Result<Lease, ApiError> {
    joined.unwrap_or_else(|e| Err(ApiError::internal(format!("routing task failed: {e}"))))
}

/// Records the failure; the error as the client gets it.
fn failed(record: Record, e: ApiError) -> ApiError {
    record.fail(&e);
    for_client(e)
}

/// The error as a client may see it: no server paths in its message (the
/// event and the log keep the whole message).
fn for_client(mut e: ApiError) -> ApiError {
    e.message = redact_paths(&e.message);
    e
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
        Err(Refusal::QueueFull(e)) => e,
        Err(Refusal::Failed(e)) => return Err(e),
        Ok(sent) => return Ok(sent),
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
            Err(Refusal::QueueFull(_)) => continue,
            Err(Refusal::Failed(e)) => return Err(e),
            Ok(sent) => return Ok(sent),
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
) -> Result<(Lease, reqwest::Response), Refusal> {
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
            Ok(()) = down.changed() => return Err(went_down(&lease.replica.node).into()),
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
                )
                .into());
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
        let mut refused = refusal(status, &body);
        let (Refusal::QueueFull(e) | Refusal::Failed(e)) = &mut refused;
        if e.kind == ErrorKind::Overloaded {
            e.retry_after_secs = Some(retry_after.unwrap_or(state.cfg.gateway.retry_after_secs));
        }
        return Err(refused);
    }
    Err(ApiError::internal("routing retried without an answer").into())
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

/// Where a streamed request's body begins.
enum Start {
    /// Sent, with the neuron's 200 in hand.
    Sent(Lease, reqwest::Response),
    /// Still looking for a replica (cold load, room being made).
    Acquiring(tokio::task::JoinHandle<Result<Lease, ApiError>>),
    /// The first attempt's node failed before answering.
    Failed(ApiError),
}

/// A streamed request's events: waits while a replica is found and the
/// neuron prefills; the neuron's chunks once the answer starts (chunks that
/// only open the message are held back until then); retries while the
/// client has seen nothing of the answer; `Failed` when it fails.
fn stream_events(
    state: Arc<AppState>,
    mut record: Record,
    req: Forward,
    mut retries: Retries,
    start: Start,
) -> impl futures::Stream<Item = Event> + Send + 'static {
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
                            _ = tick.tick() => yield Event::Wait(Wait::Model),
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
                                    _ = tick.tick() => yield Event::Wait(Wait::Neuron),
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
                    // Chunks that open the message but say nothing yet.
                    let mut held: Vec<Box<ChatCompletionChunk>> = Vec::new();
                    let mut started = false;
                    let end = loop {
                        tokio::select! {
                            f = frames.next() => match f {
                                Err(e) => break Some(read_failure(&node, e)),
                                Ok(frame) => {
                                    tick.reset();
                                    let starts = started || frame.starts_answer();
                                    match frame {
                                        Frame::Comment => yield Event::Wait(Wait::Idle),
                                        Frame::Error(e) => break Some(e),
                                        Frame::Invalid(what) => break Some(invalid_frame(&node, &what)),
                                        Frame::Done => break None,
                                        Frame::Chunk(chunk) if !starts => held.push(chunk),
                                        Frame::Chunk(chunk) => {
                                            started = true;
                                            for h in held.drain(..) {
                                                yield Event::Chunk(h);
                                            }
                                            yield Event::Chunk(chunk);
                                        }
                                    }
                                }
                            },
                            _ = down.changed() => break Some(went_down(&node)),
                            _ = tick.tick() => yield Event::Wait(Wait::Idle),
                        }
                    };
                    drop(lease);
                    match end {
                        None => {
                            // An answer with nothing in it still has its
                            // opening chunks.
                            for h in held.drain(..) {
                                yield Event::Chunk(h);
                            }
                            record.ok();
                            yield Event::Done;
                            return;
                        }
                        Some(e) if started => {
                            let e = failed(record, e);
                            yield Event::Failed(e);
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
                        _ = tick.tick() => yield Event::Wait(Wait::Idle),
                    }
                }
            };
            if !again {
                let e = failed(record, failure);
                yield Event::Failed(e);
                return;
            }
        }
    }
}
