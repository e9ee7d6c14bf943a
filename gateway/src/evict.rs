//! Taking replicas off nodes: evictions placement asked for, idle replicas
//! past their `ttl`, and operator unloads. Every automatic unload is an
//! `evicted` event and a `cortex_evictions_total` increment.

use std::sync::Arc;
use std::time::Duration;

use cortex_common::error::ApiError;
use cortex_common::event::EvictionCause;
use cortex_common::neuron_api::{UnloadReason, UnloadRequest};

use crate::error::{from_upstream_body, upstream};
use crate::fleet::{Idle, ReplicaState};
use crate::metrics::EvictionLabels;
use crate::state::AppState;

/// What the neuron is told (its `model_unloaded` event says it).
fn unload_reason(cause: &EvictionCause) -> UnloadReason {
    match cause {
        EvictionCause::Ttl => UnloadReason::Ttl,
        EvictionCause::Lru
        | EvictionCause::Priority
        | EvictionCause::Operator
        | EvictionCause::Other(_) => UnloadReason::Evicted,
    }
}

/// Why an automatic (or operator) eviction happens.
pub struct Eviction<'a> {
    /// The model that needs the room; empty for ttl and operators.
    pub for_model: &'a str,
    pub cause: EvictionCause,
    pub reason: String,
}

/// Longest an unload the neuron answered as done may take to show in its
/// event stream.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Unloads `model` from node `idx`, which the caller has already marked
/// unloading in the fleet (`begin_unload`, so nothing new is routed there);
/// returns once the neuron's event stream says it is gone.
pub async fn unload(
    state: &AppState,
    idx: usize,
    model: &str,
    why: Option<Eviction<'_>>,
) -> Result<(), ApiError> {
    let (node, endpoint) = state.fleet.lock().node_addr(idx);
    let reason = why
        .as_ref()
        .map(|w| unload_reason(&w.cause))
        .unwrap_or(UnloadReason::Requested);
    let result = post_unload(state.neurons.control(idx), &endpoint, model, reason).await;
    if let Err(e) = &result {
        tracing::warn!(%node, %model, "unload failed: {}", e.message);
        state.fleet.lock().unload_failed(idx, model);
        return result;
    }
    match why {
        Some(why) => {
            tracing::info!(%node, %model, for_model = why.for_model, "evicted: {}", why.reason);
            state
                .metrics
                .evictions
                .get_or_create(&EvictionLabels {
                    model: model.to_string(),
                    node: node.clone(),
                    reason: why.cause.to_string(),
                })
                .inc();
            state
                .fleet
                .lock()
                .evicted(idx, model, why.for_model, why.cause, why.reason);
        }
        None => tracing::info!(%node, %model, "unloaded on request"),
    }
    // The neuron's word (its event, or its next listing) ends the replica.
    let (_, gone) = state
        .fleet
        .wait_replica(idx, model, CONFIRM_TIMEOUT, |s| {
            !s.up || s.state != Some(ReplicaState::Unloading)
        })
        .await;
    if !gone {
        // Back to the neuron's last word, rather than unloading forever.
        tracing::warn!(%node, %model, "unloaded, but the node's event stream has not said so within {} s", CONFIRM_TIMEOUT.as_secs());
        state.fleet.lock().unload_failed(idx, model);
    }
    Ok(())
}

async fn post_unload(
    client: &reqwest::Client,
    endpoint: &str,
    model: &str,
    reason: UnloadReason,
) -> Result<(), ApiError> {
    let resp = client
        .post(format!("{endpoint}/models/unload"))
        .timeout(Duration::from_secs(60))
        .json(&UnloadRequest {
            model: model.to_string(),
            reason,
        })
        .send()
        .await
        .map_err(|e| upstream("unload_failed", format!("unloading {model}: {e}")))?;
    let status = resp.status().as_u16();
    if resp.status().is_success() || status == 404 {
        // 404: it was not resident any more, which is what we wanted.
        return Ok(());
    }
    let body = resp.bytes().await.unwrap_or_default();
    Err(from_upstream_body(status, &body))
}

/// Unloads replicas idle past their model's `ttl`; runs for the gateway's life.
pub async fn ttl_task(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = cortex_common::now_ms();
        let ttls: Vec<(String, u64)> = state
            .fleet
            .catalogue
            .models
            .iter()
            .filter_map(|m| m.ttl.map(|t| (m.id.clone(), t.as_millis() as u64)))
            .collect();
        let due: Vec<Idle> = {
            let mut g = state.fleet.lock();
            let idle = g.idle_past_ttl(&ttls, now);
            idle.into_iter()
                .filter(|i| g.begin_unload(i.idx, &i.model) == Ok(true))
                .collect()
        };
        for idle in due {
            let state = state.clone();
            tokio::spawn(async move {
                let why = Eviction {
                    for_model: "",
                    cause: EvictionCause::Ttl,
                    reason: format!(
                        "idle for {:.1} s, ttl {:.1} s",
                        idle.idle_ms as f64 / 1000.0,
                        idle.ttl_ms as f64 / 1000.0
                    ),
                };
                let _ = unload(&state, idle.idx, &idle.model, Some(why)).await;
            });
        }
    }
}
