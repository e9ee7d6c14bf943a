//! Which replica serves a request: a servable replica with the fewest
//! requests in flight, else a cold load (shared by every request waiting for
//! the same model), waiting while room is being made, up to the queue
//! timeout. The [`Lease`] counts the request in flight until dropped.

use std::sync::Arc;
use std::time::Instant;

use cortex_common::error::ApiError;

use crate::error::{LoadError, unavailable};
use crate::fleet::Route;
use crate::load::{BUSY_PAUSE, ensure_loaded};
use crate::metrics::NodeLabel;
use crate::state::AppState;

/// A request's claim on a replica; released (in-flight count, last use) on drop.
pub struct Lease {
    state: Arc<AppState>,
    pub replica: Route,
    pub model: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let total = self
            .state
            .fleet
            .lock()
            .release(self.replica.idx, &self.model);
        self.state.waitlists.freed(&self.model);
        self.state
            .metrics
            .node_in_flight
            .get_or_create(&NodeLabel {
                node: self.replica.node.clone(),
            })
            .set(i64::from(total));
    }
}

/// A servable replica right now, if there is one.
pub fn try_acquire(state: &Arc<AppState>, model: &str) -> Option<Lease> {
    let (replica, total) = state.fleet.lock().lease(model)?;
    state
        .metrics
        .node_in_flight
        .get_or_create(&NodeLabel {
            node: replica.node.clone(),
        })
        .set(i64::from(total));
    Some(Lease {
        state: state.clone(),
        replica,
        model: model.to_string(),
    })
}

/// A replica for `model`, cold-loading it if needed.
pub async fn acquire(state: Arc<AppState>, model: String) -> Result<Lease, ApiError> {
    let timeout = state.cfg.gateway.queue_timeout();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(lease) = try_acquire(&state, &model) {
            return Ok(lease);
        }
        match ensure_loaded(&state, &model, None).await {
            Ok(_) => {}
            Err(LoadError::Busy { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err(unavailable(
                "queue_timeout",
                format!(
                    "`{model}` could not be served within {} s",
                    timeout.as_secs()
                ),
                state.cfg.gateway.retry_after_secs,
            ));
        }
    }
}

/// The fleet view said `model` was on this replica but the neuron says it
/// is not: stop routing there until its events say otherwise.
pub fn forget(state: &AppState, replica: &Route, model: &str) {
    state.fleet.lock().not_served(replica.idx, model);
}
