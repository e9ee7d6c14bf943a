//! Cold loads: deciding where a model goes (placement), making room
//! (eviction), and asking the neuron to load it — once per model however
//! many requests are waiting for it (single-flight). "Already loaded" is
//! success.

use std::sync::Arc;
use std::time::Duration;

use cortex_common::config::models::ModelEntry;
use cortex_common::error::{ApiError, ErrorKind};
use cortex_common::event::EventKind;
use cortex_common::neuron_api::LoadRequest;
use futures::FutureExt;

use crate::error::{LoadError, from_upstream_body, unavailable, upstream};
use crate::evict::{self, Eviction};
use crate::fleet::{ReplicaState, Seen};
use crate::metrics::model_node;
use crate::placement::{self, Decision, Victim};
use crate::state::AppState;

/// Longest a neuron may take to load a model.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest a load the neuron answered as done may take to show in its
/// event stream (a stream silent for this long is dropped as hung).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

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
) -> Result<String, LoadError> {
    let (key, target) = match node {
        Some(n) => (format!("{model}@{n}"), Target::Node(n.to_string())),
        None => (model.to_string(), Target::Any),
    };
    single_flight(state, key, model, target).await
}

/// [`ensure_loaded`] for an operator: while the answer is
/// [`LoadError::Busy`] (room is being made — a victim still serves, an
/// unload is under way) it asks again, until the gateway's queue timeout,
/// so an explicit load waits for room as a request does.
pub async fn load_when_room(
    state: &Arc<AppState>,
    model: &str,
    node: Option<&str>,
) -> Result<String, ApiError> {
    let deadline = tokio::time::Instant::now() + state.cfg.gateway.queue_timeout();
    loop {
        match ensure_loaded(state, model, node).await {
            Err(LoadError::Busy { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            done => return done.map_err(ApiError::from),
        }
    }
}

/// How long a load that found no room yet waits before it asks again.
pub const BUSY_PAUSE: Duration = Duration::from_millis(200);

/// Loads one more replica of `model` on a node that does not hold it yet,
/// placed by the usual rules; `why` goes into the placement event. Returns
/// the node's name.
pub async fn add_replica(
    state: &Arc<AppState>,
    model: &str,
    why: String,
) -> Result<String, LoadError> {
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
) -> Result<String, LoadError> {
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
                        Err(ApiError::internal(format!("load task failed: {e}")).into())
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

/// What `load_once` decided under the fleet's lock.
enum Decided {
    /// A replica serves the model already, on this node.
    Serving(String),
    /// Load it there.
    Load(Placed),
}

/// Where a load goes, and what it does first.
struct Placed {
    idx: usize,
    node: String,
    evict: Vec<Victim>,
    /// This load reserved the room (rather than joining one under way).
    reserved: bool,
}

async fn load_once(
    state: &Arc<AppState>,
    model: &str,
    target: Target,
) -> Result<String, LoadError> {
    let entry = state.fleet.entry(model).cloned();
    let strategy = state.fleet.strategy;
    // Only what models.toml declares is loaded from a source; a source
    // a neuron reports for itself is never sent to another node (it
    // names a path there). Anything else is asked for by its id, which
    // the neuron resolves within its own model roots.
    let source = entry
        .as_ref()
        .map(|e| e.source().to_string())
        .unwrap_or_else(|| model.to_string());
    let Placed {
        idx,
        node: node_name,
        evict,
        reserved,
    } = match decide(state, model, entry.as_ref(), &target)? {
        Decided::Serving(node) => return Ok(node),
        Decided::Load(at) => at,
    };
    let mut victims = evict.into_iter();
    while let Some(v) = victims.next() {
        let why = Eviction {
            for_model: model,
            cause: strategy.into(),
            reason: v.reason.clone(),
        };
        if let Err(e) = evict::unload(state, idx, &v.model, Some(why)).await {
            let mut g = state.fleet.lock();
            g.abandon_load(idx, model);
            for rest in victims {
                g.unload_failed(idx, &rest.model);
            }
            return Err(upstream(
                "eviction_failed",
                format!(
                    "could not evict `{}` from {node_name} to make room: {}",
                    v.model, e.message
                ),
            )
            .into());
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
    let result = match post_load(state, idx, model, &source, quant).await {
        Ok(()) => confirmed(state, idx, model, &node_name).await,
        Err(e) => Err(LoadError::Failed(e)),
    };
    if let Err(e) = &result {
        if reserved {
            state.fleet.lock().abandon_load(idx, model);
        }
        tracing::warn!(%model, node = %node_name, "load failed: {e}");
    }
    result.map(|()| node_name)
}

/// Under the fleet's lock: a node already serving `model`, or where to load
/// it, with the room reserved and the victims marked; so concurrent loads
/// of other models see this one's memory and victims.
fn decide(
    state: &AppState,
    model: &str,
    entry: Option<&ModelEntry>,
    target: &Target,
) -> Result<Decided, LoadError> {
    let retry = state.cfg.gateway.retry_after_secs;
    let mut g = state.fleet.lock();
    let named = match target {
        Target::Node(n) => Some(g.node_index(n).ok_or_else(|| {
            ApiError::not_found("node_not_found", format!("no neuron is named `{n}`"))
        })?),
        Target::Any | Target::NewReplica(_) => None,
    };
    let servable = match (target, named) {
        (_, Some(i)) => g.servable_on(i, model).then_some(i),
        (Target::Any, None) => g.replicas(model).first().copied(),
        _ => None,
    };
    if let Some(i) = servable {
        return Ok(Decided::Serving(g.node_name(i)));
    }
    let joining = match (target, named) {
        (_, Some(i)) => g.loading_on(model).filter(|l| *l == i),
        (Target::Any, None) => g.loading_on(model),
        _ => None,
    };
    if let Some(i) = joining {
        // A load is already under way there (the neuron joins it).
        return Ok(Decided::Load(Placed {
            idx: i,
            node: g.node_name(i),
            evict: Vec::new(),
            reserved: false,
        }));
    }
    let only_on = match target {
        Target::Any => None,
        Target::Node(n) => Some(vec![n.clone()]),
        Target::NewReplica(_) => {
            let free = g.nodes_without(model, entry);
            if free.is_empty() {
                return Err(unavailable(
                    "no_capacity",
                    format!("every node that may run `{model}` already holds it"),
                    retry,
                )
                .into());
            }
            Some(free)
        }
    };
    let want = g.want(entry, model, only_on);
    let busy = |reason: String| LoadError::Busy {
        model: model.to_string(),
        reason,
        retry_after_secs: retry,
    };
    match placement::plan(&g.candidates(), &want, state.fleet.strategy) {
        Decision::Place(mut plan) => {
            let Some(i) = g.node_index(&plan.node) else {
                return Err(ApiError::internal("placement chose an unknown node").into());
            };
            if let Target::NewReplica(why) = target {
                plan.reason = format!("scale-out ({why}): {}", plan.reason);
            }
            let victims: Vec<String> = plan.evict.iter().map(|v| v.model.clone()).collect();
            tracing::info!(%model, node = %plan.node, "placement: {}", plan.reason);
            g.reserve(i, model, want.bytes, &victims, plan.reason)
                .map_err(|refused| busy(refused.to_string()))?;
            Ok(Decided::Load(Placed {
                idx: i,
                node: plan.node,
                evict: plan.evict,
                reserved: true,
            }))
        }
        Decision::Wait(reason) => Err(busy(reason)),
        Decision::Impossible(reason) => Err(unavailable(
            "no_capacity",
            format!("no node can load `{model}` now: {reason}"),
            retry,
        )
        .into()),
    }
}

/// After the neuron answered a load as done: waits for its event stream to
/// say so (the fleet records a load by the neuron's word alone).
async fn confirmed(state: &AppState, idx: usize, model: &str, node: &str) -> Result<(), LoadError> {
    let (seen, settled) = state
        .fleet
        .wait_replica(idx, model, CONFIRM_TIMEOUT, |s| {
            !s.up
                || !matches!(
                    s.state,
                    Some(ReplicaState::Reserved | ReplicaState::Loading)
                )
        })
        .await;
    let failed = |why: String| Err(LoadError::Failed(upstream("load_failed", why)));
    match seen {
        Seen { up: false, .. } => failed(format!("{node} went down while loading `{model}`")),
        _ if !settled => failed(format!(
            "{node} answered that `{model}` is loaded, but its event stream has not said so within {} s",
            CONFIRM_TIMEOUT.as_secs()
        )),
        Seen {
            state: Some(ReplicaState::Loaded),
            ..
        } => Ok(()),
        Seen {
            state: Some(ReplicaState::Unloading),
            ..
        } => Err(LoadError::Busy {
            model: model.to_string(),
            reason: format!("it is being unloaded from {node} again"),
            retry_after_secs: state.cfg.gateway.retry_after_secs,
        }),
        Seen { state, .. } => failed(format!(
            "{node} answered that `{model}` is loaded, then reported it {}",
            state.map(|s| s.as_str()).unwrap_or("gone")
        )),
    }
}

async fn post_load(
    state: &AppState,
    idx: usize,
    model: &str,
    source: &str,
    quant: Option<String>,
) -> Result<(), ApiError> {
    let (_, endpoint) = state.fleet.lock().node_addr(idx);
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
    if !(200..300).contains(&status) {
        let body = resp.bytes().await.unwrap_or_default();
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
    Ok(())
}
