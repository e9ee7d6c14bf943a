//! `GET /health` and `GET /discovery`: cached state only.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use cortex_common::neuron_api::{Discovery, Health};

use crate::node::Neuron;

pub async fn health(State(n): State<Arc<Neuron>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        name: n.settings.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: n.started.elapsed().as_secs(),
    })
}

pub async fn discovery(State(n): State<Arc<Neuron>>) -> Json<Discovery> {
    Json(n.host.discovery(&n.settings.name, n.devices()))
}
