//! Cold loads: deciding where a model goes (placement), making room
//! (eviction), and asking the neuron to load it — once per model however
//! many requests are waiting for it (single-flight). "Already loaded" is
//! success.

use std::sync::Arc;
use std::time::Duration;

use cortex_common::error::{ApiError, ErrorKind};
use cortex_common::event::EventKind;
use cortex_common::neuron_api::{LifecycleResponse, LoadRequest};
use futures::FutureExt;

use crate::error::{CAPACITY_BUSY, from_upstream_body, unavailable, upstream};
use crate::evict::{self, Eviction};
use crate::metrics::model_node;
use crate::placement::{self, Decision};
use crate::state::AppState;

/// Longest a neuron may take to load a model.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Where a load should go.
#[derive(Debug, Clone)]
enum Target {
    /// Anywhere, unless some replica already serves the model.
    Any,
    /// This node (an admin's explicit load).
    Node(String),
    /// A node that does not hold the model yet (scale-out), for this reason.
    NewReplica(String),
}

/// Makes `model` servable (on `node` when given) and returns the node's
/// name. Concurrent callers for the same key share one load. The load runs
/// in its own task, so a caller that gives up does not cancel it for the
/// others.
pub async fn ensure_loaded(
    state: &Arc<AppState>,
    model: &str,
    node: Option<&str>,
) -> Result<String, ApiError> {
    let (key, target) = match node {
        Some(n) => (format!("{model}@{n}"), Target::Node(n.to_string())),
        None => (model.to_string(), Target::Any),
    };
    single_flight(state, key, model, target).await
}

/// Loads one more replica of `model` on a node that does not hold it yet,
/// placed by the usual rules; `why` goes into the placement event. Returns
/// the node's name.
pub async fn add_replica(
    state: &Arc<AppState>,
    model: &str,
    why: String,
) -> Result<String, ApiError> {
    single_flight(
        state,
        format!("{model}+replica"),
        model,
        Target::NewReplica(why),
    )
    .await
}

async fn single_flight(
    state: &Arc<AppState>,
    key: String,
    model: &str,
    target: Target,
) -> Result<String, ApiError> {
    let fut = {
        let mut map = state.loads.map();
        match map.get(&key) {
            Some(f) => f.clone(),
            None => {
                let st = state.clone();
                let (m, k) = (model.to_string(), key.clone());
                let task = tokio::spawn(async move {
                    let result = load_once(&st, &m, target).await;
                    st.loads.map().remove(&k);
                    result
                });
                let fut = async move {
                    task.await.unwrap_or_else(|e| {
                        Err(ApiError::internal(format!("load task failed: {e}")))
                    })
                }
                .boxed()
                .shared();
                map.insert(key, fut.clone());
                fut
            }
        }
    };
    fut.await
}

async fn load_once(state: &Arc<AppState>, model: &str, target: Target) -> Result<String, ApiError> {
    let retry = state.cfg.gateway.retry_after_secs;
    let entry = state.fleet.entry(model).cloned();
    let strategy = state.fleet.strategy;
    // Decide and reserve under one lock, so concurrent loads of other
    // models see this one's memory and victims.
    let (idx, node_name, evictions, source) = {
        let mut g = state.fleet.lock();
        // Only what models.toml declares is loaded from a source; a source
        // a neuron reports for itself is never sent to another node (it
        // names a path there). Anything else is asked for by its id, which
        // the neuron resolves within its own model roots.
        let source = entry
            .as_ref()
            .map(|e| e.source().to_string())
            .unwrap_or_else(|| model.to_string());
        let named = match &target {
            Target::Node(n) => {
                Some(g.nodes.iter().position(|v| &v.name == n).ok_or_else(|| {
                    ApiError::not_found("node_not_found", format!("no neuron is named `{n}`"))
                })?)
            }
            Target::Any | Target::NewReplica(_) => None,
        };
        let servable = match (&target, named) {
            (_, Some(i)) => g.nodes[i].servable(model).then_some(i),
            (Target::Any, None) => g.replicas(model).first().copied(),
            _ => None,
        };
        if let Some(i) = servable {
            return Ok(g.nodes[i].name.clone());
        }
        let joining = match (&target, named) {
            (_, Some(i)) => g.loading_on(model).filter(|l| *l == i),
            (Target::Any, None) => g.loading_on(model),
            _ => None,
        };
        if let Some(i) = joining {
            // A load is already under way there (the neuron joins it).
            (i, g.nodes[i].name.clone(), Vec::new(), source)
        } else {
            let only_on = match &target {
                Target::Any => None,
                Target::Node(n) => Some(vec![n.clone()]),
                Target::NewReplica(_) => {
                    let free = g.nodes_without(model, entry.as_ref());
                    if free.is_empty() {
                        return Err(unavailable(
                            "no_capacity",
                            format!("every node that may run `{model}` already holds it"),
                            retry,
                        ));
                    }
                    Some(free)
                }
            };
            let want = g.want(entry.as_ref(), model, only_on);
            let candidates = g.candidates(&state.fleet.catalogue);
            match placement::plan(&candidates, &want, strategy) {
                Decision::Place(mut plan) => {
                    let Some(i) = g.nodes.iter().position(|v| v.name == plan.node) else {
                        return Err(ApiError::internal("placement chose an unknown node"));
                    };
                    if let Target::NewReplica(why) = &target {
                        plan.reason = format!("scale-out ({why}): {}", plan.reason);
                    }
                    g.nodes[i].pending.insert(model.to_string(), want.bytes);
                    for v in &plan.evict {
                        g.nodes[i].unloading.insert(v.model.clone());
                    }
                    tracing::info!(%model, node = %plan.node, "placement: {}", plan.reason);
                    state.bus.publish(
                        Some(plan.node.clone()),
                        EventKind::PlacementDecided {
                            model: model.to_string(),
                            reason: plan.reason.clone(),
                        },
                    );
                    (i, plan.node, plan.evict, source)
                }
                Decision::Wait(reason) => {
                    return Err(unavailable(
                        CAPACITY_BUSY,
                        format!("no room for `{model}` yet: {reason}"),
                        retry,
                    ));
                }
                Decision::Impossible(reason) => {
                    return Err(unavailable(
                        "no_capacity",
                        format!("no node can load `{model}` now: {reason}"),
                        retry,
                    ));
                }
            }
        }
    };
    let mut victims = evictions.into_iter();
    while let Some(v) = victims.next() {
        let why = Eviction {
            for_model: model,
            strategy: strategy.as_str(),
            reason: v.reason.clone(),
        };
        if let Err(e) = evict::unload(state, idx, &v.model, Some(why)).await {
            let mut g = state.fleet.lock();
            let n = &mut g.nodes[idx];
            n.pending.remove(model);
            for rest in victims {
                n.unloading.remove(&rest.model);
            }
            return Err(upstream(
                "eviction_failed",
                format!(
                    "could not evict `{}` from {node_name} to make room: {}",
                    v.model, e.message
                ),
            ));
        }
    }
    state.bus.publish(
        Some(node_name.clone()),
        EventKind::ColdLoad {
            model: model.to_string(),
        },
    );
    state
        .metrics
        .cold_starts
        .get_or_create(&model_node(model, &node_name))
        .inc();
    let quant = entry.as_ref().and_then(|e| e.quant.clone());
    tracing::info!(%model, node = %node_name, %source, quant = ?quant, "cold load");
    let result = post_load(state, idx, model, &source, quant).await;
    let mut g = state.fleet.lock();
    match result {
        Ok(resp) => {
            g.mark_loaded(idx, model, &source, resp.memory_bytes);
            Ok(node_name)
        }
        Err(e) => {
            g.nodes[idx].pending.remove(model);
            tracing::warn!(%model, node = %node_name, "load failed: {}", e.message);
            Err(e)
        }
    }
}

async fn post_load(
    state: &AppState,
    idx: usize,
    model: &str,
    source: &str,
    quant: Option<String>,
) -> Result<LifecycleResponse, ApiError> {
    let endpoint = state.fleet.lock().nodes[idx].endpoint.clone();
    let resp = state
        .neurons
        .control(idx)
        .post(format!("{endpoint}/models/load"))
        .timeout(LOAD_TIMEOUT)
        .json(&LoadRequest {
            model: model.to_string(),
            source: Some(source.to_string()),
            quant,
        })
        .send()
        .await
        .map_err(|e| upstream("load_failed", format!("loading `{model}`: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| upstream("load_failed", format!("loading `{model}`: {e}")))?;
    if !(200..300).contains(&status) {
        let e = from_upstream_body(status, &body);
        let kind = match e.kind {
            ErrorKind::Overloaded => ErrorKind::Overloaded,
            _ => ErrorKind::Upstream,
        };
        return Err(ApiError {
            kind,
            code: "load_failed",
            message: format!("loading `{model}` failed: {}", e.message),
            retry_after_secs: (kind == ErrorKind::Overloaded)
                .then_some(state.cfg.gateway.retry_after_secs),
        });
    }
    serde_json::from_slice(&body)
        .map_err(|e| upstream("load_failed", format!("unreadable load answer: {e}")))
}
