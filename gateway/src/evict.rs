//! Taking replicas off nodes: evictions placement asked for, idle replicas
//! past their `ttl`, and operator unloads. Every automatic unload is an
//! `evicted` event and a `cortex_evictions_total` increment.

use std::sync::Arc;
use std::time::Duration;

use cortex_common::error::ApiError;
use cortex_common::event::EventKind;
use cortex_common::neuron_api::{ModelState, UnloadReason, UnloadRequest};

use crate::error::{from_upstream_body, upstream};
use crate::metrics::EvictionLabels;
use crate::state::AppState;

/// Why an automatic unload happens.
pub struct Eviction<'a> {
    /// The model that needs the room; empty for ttl.
    pub for_model: &'a str,
    /// `lru`, `priority` or `ttl`.
    pub strategy: &'a str,
    pub reason: String,
}

/// Unloads `model` from node `idx`, which the caller has already marked
/// unloading in the fleet view (so nothing new is routed there).
pub async fn unload(
    state: &AppState,
    idx: usize,
    model: &str,
    why: Option<Eviction<'_>>,
) -> Result<(), ApiError> {
    let (node, endpoint) = {
        let g = state.fleet.lock();
        (g.nodes[idx].name.clone(), g.nodes[idx].endpoint.clone())
    };
    let reason = match &why {
        Some(w) if w.strategy == "ttl" => UnloadReason::Ttl,
        Some(_) => UnloadReason::Evicted,
        None => UnloadReason::Requested,
    };
    let result = post_unload(state.neurons.control(idx), &endpoint, model, reason).await;
    // Counted and published before the view changes, so whoever sees the
    // replica gone also sees why.
    match &result {
        Ok(()) => {
            if let Some(why) = why {
                tracing::info!(%node, %model, for_model = why.for_model, "evicted: {}", why.reason);
                state
                    .metrics
                    .evictions
                    .get_or_create(&EvictionLabels {
                        model: model.to_string(),
                        node: node.clone(),
                        reason: why.strategy.to_string(),
                    })
                    .inc();
                state.bus.publish(
                    Some(node),
                    EventKind::Evicted {
                        model: model.to_string(),
                        for_model: why.for_model.to_string(),
                        strategy: why.strategy.to_string(),
                        reason: why.reason,
                    },
                );
            } else {
                tracing::info!(%node, %model, "unloaded on request");
            }
        }
        Err(e) => tracing::warn!(%node, %model, "unload failed: {}", e.message),
    }
    let mut g = state.fleet.lock();
    let n = &mut g.nodes[idx];
    n.unloading.remove(model);
    if result.is_ok() {
        n.reported.remove(model);
        n.pending.remove(model);
    }
    drop(g);
    result
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
        let mut due = Vec::new();
        {
            let mut g = state.fleet.lock();
            let ttls: Vec<(String, u64)> = state
                .fleet
                .catalogue
                .models
                .iter()
                .filter_map(|m| m.ttl.map(|t| (m.id.clone(), t.as_millis() as u64)))
                .filter(|(id, _)| !g.is_pinned(id))
                .collect();
            for (idx, n) in g.nodes.iter_mut().enumerate() {
                if !n.up {
                    continue;
                }
                for (id, ttl_ms) in &ttls {
                    let idle = n
                        .reported
                        .get(id)
                        .is_some_and(|m| m.state == ModelState::Loaded && m.in_flight == 0)
                        && !n.unloading.contains(id)
                        && !n.pending.contains_key(id)
                        && n.in_flight.get(id).copied().unwrap_or(0) == 0;
                    let last = n.last_used.get(id).copied().unwrap_or(now);
                    if idle && now.saturating_sub(last) >= *ttl_ms {
                        n.unloading.insert(id.clone());
                        due.push((idx, id.clone(), now - last, *ttl_ms));
                    }
                }
            }
        }
        for (idx, id, idle_ms, ttl_ms) in due {
            let state = state.clone();
            tokio::spawn(async move {
                let why = Eviction {
                    for_model: "",
                    strategy: "ttl",
                    reason: format!(
                        "idle for {:.1} s, ttl {:.1} s",
                        idle_ms as f64 / 1000.0,
                        ttl_ms as f64 / 1000.0
                    ),
                };
                let _ = unload(&state, idx, &id, Some(why)).await;
            });
        }
    }
}
