//! `GET /models`, `POST /models/load`, `POST /models/unload`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use cortex_common::error::ApiError;
use cortex_common::neuron_api::{
    LifecycleResponse, LoadRequest, ModelState, ModelsResponse, UnloadRequest,
};

use super::error::{Failure, JsonBody};
use super::limits::{MAX_MODEL_ID_BYTES, MAX_SOURCE_BYTES, check_len};
use crate::node::Neuron;

pub async fn list(State(n): State<Arc<Neuron>>) -> Json<ModelsResponse> {
    Json(ModelsResponse {
        models: n.registry.list(),
    })
}

pub async fn load(
    State(n): State<Arc<Neuron>>,
    JsonBody(req): JsonBody<LoadRequest>,
) -> Result<Json<LifecycleResponse>, Failure> {
    if req.model.trim().is_empty() {
        return Err(ApiError::invalid("invalid_value", "field `model` must not be empty").into());
    }
    check_len("model", &req.model, MAX_MODEL_ID_BYTES)?;
    let source = req.source.clone().unwrap_or_else(|| req.model.clone());
    check_len("source", &source, MAX_SOURCE_BYTES)?;
    let quant = match req.quant.as_deref() {
        None => None,
        Some(name) => Some(crate::runtime::QuantType::parse(name).ok_or_else(|| {
            ApiError::invalid(
                "invalid_value",
                format!(
                    "field `quant`: `{name}` is not a quantization; use q4_0, q4k, q5k, q6k or q8_0"
                ),
            )
        })?),
    };
    let result = n.registry.load(&req.model, &source, quant).await?;
    Ok(Json(LifecycleResponse {
        model: req.model,
        state: ModelState::Loaded,
        changed: result.changed,
        memory_bytes: result.entry.weight_bytes,
        duration_ms: result.duration_ms,
    }))
}

pub async fn unload(
    State(n): State<Arc<Neuron>>,
    JsonBody(req): JsonBody<UnloadRequest>,
) -> Result<Json<LifecycleResponse>, Failure> {
    check_len("model", &req.model, MAX_MODEL_ID_BYTES)?;
    let entry = n.registry.unload(&req.model, req.reason)?;
    Ok(Json(LifecycleResponse {
        model: req.model,
        state: ModelState::Unloading,
        changed: true,
        memory_bytes: entry.weight_bytes,
        duration_ms: 0,
    }))
}
