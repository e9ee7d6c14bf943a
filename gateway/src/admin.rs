//! The admin API (admin token required): fleet status, the fleet event
//! stream, and load / unload / evict / pin / unpin.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use cortex_common::error::ApiError;
use cortex_common::event::{EVENT_SCHEMA_VERSION, Event, EventKind, EvictionCause};
use cortex_common::status::FleetStatus;
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::error::{AppError, unauthorized};
use crate::events::Subscription;
use crate::evict::{self, Eviction};
use crate::extract::{bearer, json_body, same, typed};
use crate::fleet::ReplicaState;
use crate::load::load_when_room;
use crate::state::AppState;

/// Interval of keepalive comments on `/admin/events`.
const EVENTS_KEEPALIVE: Duration = Duration::from_secs(15);
/// Longest an unload waits for one another call started on the same replica.
const UNLOAD_JOIN: Duration = Duration::from_secs(60);

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/status", get(status))
        .route("/admin/events", get(events))
        .route("/admin/models/load", post(load))
        .route("/admin/models/unload", post(unload))
        .route("/admin/models/evict", post(evict_model))
        .route("/admin/models/pin", post(pin))
        .route("/admin/models/unpin", post(unpin))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

async fn require_admin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(expected) = state.cfg.auth.admin_token.as_deref() else {
        return AppError(unauthorized(
            "the admin API is disabled: no admin token is configured ([auth] admin_token or CORTEX_ADMIN_TOKEN)",
        ))
        .into_response();
    };
    match bearer(req.headers()) {
        Some(t) if same(expected, &t) => next.run(req).await,
        Some(_) => AppError(unauthorized("the admin token is not valid")).into_response(),
        None => AppError(unauthorized(
            "the admin API needs `Authorization: Bearer <admin token>`",
        ))
        .into_response(),
    }
}

/// The fleet's status with the depth of the gateway's wait lines.
fn with_waiting(state: &AppState, mut status: FleetStatus) -> FleetStatus {
    for m in &mut status.models {
        m.waiting = state.waitlists.waiting(&m.id);
    }
    status
}

async fn status(State(state): State<Arc<AppState>>) -> axum::Json<FleetStatus> {
    axum::Json(with_waiting(&state, state.fleet.status()))
}

/// Subscribes after `last_seen`; the snapshot event to start from when
/// what was missed cannot be replayed.
fn subscribe(state: &AppState, last_seen: Option<u64>) -> (Subscription, Option<Event>) {
    let (sub, status) = state.fleet.subscribe(last_seen);
    let snapshot = status.map(|s| Event {
        v: EVENT_SCHEMA_VERSION,
        seq: sub.last_seq,
        ts_ms: cortex_common::now_ms(),
        node: None,
        kind: EventKind::Snapshot {
            status: Box::new(with_waiting(state, s)),
        },
    });
    (sub, snapshot)
}

fn sse(event: &Event) -> Result<SseEvent, Infallible> {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    Ok(SseEvent::default().id(event.seq.to_string()).data(data))
}

/// `GET /admin/events`: a snapshot (or, with `Last-Event-ID`, what was
/// missed), then every event as it happens. A subscriber too slow for the
/// live feed is caught up from the replay buffer, or given a new snapshot.
async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (sub, snapshot) = subscribe(&state, last_seen);
    let stream = async_stream::stream! {
        let mut rx = sub.rx;
        let mut sent = sub.last_seq;
        for e in sub.replay.unwrap_or_default() {
            yield sse(&e);
        }
        if let Some(s) = snapshot {
            yield sse(&s);
        }
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if e.seq > sent {
                        sent = e.seq;
                        yield sse(&e);
                    }
                }
                Err(RecvError::Lagged(_)) => match state.bus.since(sent) {
                    Some(missed) => {
                        for e in missed {
                            sent = e.seq;
                            yield sse(&e);
                        }
                    }
                    None => {
                        let (again, snapshot) = subscribe(&state, None);
                        rx = again.rx;
                        sent = again.last_seq;
                        if let Some(s) = snapshot {
                            yield sse(&s);
                        }
                    }
                },
                Err(RecvError::Closed) => break,
            }
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::new().interval(EVENTS_KEEPALIVE))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelAction {
    model: String,
    #[serde(default)]
    node: Option<String>,
}

fn action(body: Result<Bytes, BytesRejection>) -> Result<ModelAction, ApiError> {
    let v: Value = json_body(body)?;
    let a: ModelAction = typed(&v)?;
    if a.model.trim().is_empty() {
        return Err(ApiError::invalid(
            "invalid_model",
            "`model` must not be empty",
        ));
    }
    Ok(a)
}

fn known(state: &AppState, name: &str) -> Result<String, ApiError> {
    state
        .fleet
        .resolve(name)
        .ok_or_else(|| crate::error::unknown_model(name))
}

async fn load(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, AppError> {
    let a = action(body)?;
    let model = known(&state, &a.model)?;
    let node = load_when_room(&state, &model, a.node.as_deref()).await?;
    Ok(axum::Json(
        json!({"model": model, "node": node, "state": "loaded"}),
    ))
}

async fn unload(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, AppError> {
    let a = action(body)?;
    remove(&state, a, false).await
}

async fn evict_model(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, AppError> {
    let a = action(body)?;
    remove(&state, a, true).await
}

/// Unloads the model from the named node, or from every node holding it.
/// `evict` records it as an operator eviction (event + counter).
async fn remove(
    state: &AppState,
    a: ModelAction,
    evict: bool,
) -> Result<axum::Json<Value>, AppError> {
    let model = known(state, &a.model)?;
    // (node, whether this call started its unload).
    let targets: Vec<(usize, bool)> = {
        let mut g = state.fleet.lock();
        if let Some(n) = &a.node
            && g.node_index(n).is_none()
        {
            return Err(
                ApiError::not_found("node_not_found", format!("no neuron is named `{n}`")).into(),
            );
        }
        g.resident_on(&model, a.node.as_deref())
            .into_iter()
            .filter_map(|i| g.begin_unload(i, &model).ok().map(|started| (i, started)))
            .collect()
    };
    if targets.is_empty() {
        return Err(ApiError::not_found(
            "not_loaded",
            format!(
                "`{model}` is not resident{}",
                a.node.map(|n| format!(" on {n}")).unwrap_or_default()
            ),
        )
        .into());
    }
    let mut nodes = Vec::new();
    let mut first_error = None;
    for (idx, started) in targets {
        let node = state.fleet.lock().node_name(idx);
        if !started {
            // Another call is unloading it: done when that one is (and
            // if that one failed, it is still there).
            let (seen, _) = state
                .fleet
                .wait_replica(idx, &model, UNLOAD_JOIN, |s| {
                    s.state != Some(ReplicaState::Unloading)
                })
                .await;
            if seen.state.is_none() {
                nodes.push(node);
            } else {
                first_error.get_or_insert(crate::error::upstream(
                    "unload_failed",
                    format!("an unload of `{model}` from {node} under way did not finish"),
                ));
            }
            continue;
        }
        let why = evict.then(|| Eviction {
            for_model: "",
            cause: EvictionCause::Operator,
            reason: "evicted by an operator".into(),
        });
        match evict::unload(state, idx, &model, why).await {
            Ok(()) => nodes.push(node),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if nodes.is_empty() => Err(e.into()),
        _ => Ok(axum::Json(json!({"model": model, "nodes": nodes}))),
    }
}

async fn pin(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, AppError> {
    set_pin(&state, body, true)
}

async fn unpin(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, AppError> {
    set_pin(&state, body, false)
}

fn set_pin(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    pinned: bool,
) -> Result<axum::Json<Value>, AppError> {
    let a = action(body)?;
    if a.node.is_some() {
        return Err(ApiError::invalid(
            "invalid_request",
            "pins apply to a model on every node; drop `node`",
        )
        .into());
    }
    let model = known(state, &a.model)?;
    let changed = state.fleet.lock().set_pinned(&model, pinned);
    if let Some(store) = &state.pins {
        store.record(&model, pinned);
    }
    if changed {
        tracing::info!(%model, pinned, "pin changed by an operator");
    }
    Ok(axum::Json(json!({"model": model, "pinned": pinned})))
}
