//! The neuron's HTTP API: thin handlers over [`Neuron`].

pub mod auth;
pub mod chat;
pub mod error;
pub mod events;
pub mod health;
pub mod limits;
pub mod models;
pub mod steer;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::node::Neuron;

pub fn router(neuron: Arc<Neuron>) -> Router {
    let limit = neuron.settings.max_body_bytes;
    let protected = Router::new()
        .route("/discovery", get(health::discovery))
        .route("/models", get(models::list))
        .route("/models/load", post(models::load))
        .route("/models/unload", post(models::unload))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/chat/count_tokens", post(chat::count_tokens))
        .route("/events", get(events::events))
        .fallback(error::not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            neuron.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/health", get(health::health))
        .merge(protected)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(neuron)
}
