//! The client API on `listen`: `GET /v1/models`, `GET /health`, and one
//! module per generation surface: `POST /v1/chat/completions` ([`chat`]),
//! `POST /v1/messages` + `/v1/messages/count_tokens` ([`anthropic`]),
//! `POST /v1/responses` ([`responses`]), `POST /v1/completions`
//! ([`completions`]). Handlers only parse, validate, translate and hand
//! over through [`upstream`]; routing and proxying live in `router.rs` and
//! `proxy.rs`, whose typed answer each surface renders in its own shape.

mod anthropic;
mod chat;
mod completions;
mod responses;
mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cortex_common::openai::{ModelCard, ModelList};
use cortex_common::status::FleetHealth;
use serde_json::{Value, json};

use crate::error::{AppError, unauthorized};
use crate::extract::{bearer, same};
use crate::redact::public_source;
use crate::state::AppState;

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let keyed = Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/completions", post(completions::completions))
        .route_layer(middleware::from_fn_with_state(state, require_api_key));
    Router::new().route("/health", get(health)).merge(keyed)
}

/// With client keys configured, requests need one (`Authorization: Bearer`
/// or `x-api-key`); without, the client API is open. Refusals on the
/// Anthropic routes come in Anthropic's shape.
async fn require_api_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let keys = &state.cfg.auth.api_keys;
    if keys.is_empty() {
        return next.run(req).await;
    }
    let presented = bearer(req.headers()).or_else(|| {
        req.headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let refused = match presented {
        Some(k) if keys.iter().any(|key| same(key, &k)) => {
            return next.run(req).await;
        }
        Some(_) => unauthorized("the API key is not valid"),
        None => unauthorized(
            "an API key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        ),
    };
    if req.uri().path().starts_with("/v1/messages") {
        anthropic::unauthorized(&refused)
    } else {
        AppError(refused).into_response()
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let s = state.fleet.status();
    let code = match s.health {
        FleetHealth::Down => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    let body = json!({
        "status": s.health,
        "nodes_up": s.nodes_up,
        "nodes_total": s.nodes_total,
        "version": s.gateway_version,
    });
    (code, axum::Json(body)).into_response()
}

async fn list_models(State(state): State<Arc<AppState>>) -> axum::Json<ModelList> {
    let g = state.fleet.lock();
    let catalogue = &state.fleet.catalogue;
    let data = g
        .listed_ids()
        .into_iter()
        .map(|id| {
            let entry = catalogue.get(&id);
            let want = g.want(entry, &id, None);
            let placements: Vec<Value> = g
                .placements(&id)
                .into_iter()
                .map(|p| json!({"node": p.node, "state": p.state, "in_flight": p.in_flight}))
                .collect();
            // What a request that leaves sampling out gets: models.toml's
            // settings over the model's own, as a neuron serving it reports
            // them (only the former before it has been loaded).
            let published = g.reported_sampling(&id).unwrap_or_default();
            let configured = entry.map(|e| e.sampling()).unwrap_or_default();
            ModelCard {
                object: "model".into(),
                created: 0,
                owned_by: "cortex".into(),
                cortex: Some(json!({
                    // Local paths are the server's business (admin status shows them).
                    "source": entry.and_then(|e| public_source(e.source())),
                    "aliases": catalogue.aliases_of(&id),
                    "pinned": g.is_pinned(&id),
                    "residency_priority": want.priority,
                    "memory_mb": want.bytes.div_ceil(1 << 20),
                    "placements": placements,
                    "loadable_on": g.loadable_on(&want),
                    "sampling": published.overridden_by(&configured),
                })),
                id,
            }
        })
        .collect();
    axum::Json(ModelList {
        object: "list".into(),
        data,
    })
}
