//! Retries of requests whose node failed before they had sent their client
//! anything (Envoy's "retry on reset before a response"): the neuron died,
//! reset the connection, went silent, or was marked down while the request
//! waited in its queue or prefilled. Such a request is sent again — to
//! another replica, or after a cold load — within its deadline (the
//! request's `queue_timeout`) and at most [`MAX_RETRIES`] times; a request
//! that already streamed tokens is never retried. Each retry is counted
//! (`cortex_retries_total`) and published (`request_retried`).

use std::time::Duration;

use cortex_common::error::ApiError;
use cortex_common::event::EventKind;
use tokio::time::Instant;

use crate::state::AppState;

/// Retries per request after its first attempt.
pub const MAX_RETRIES: u32 = 3;
/// Longest a retry waits for the fleet view to notice the node failed
/// (its event stream drops at once when the process dies), so the next
/// attempt is not routed to it again.
const SETTLE: Duration = Duration::from_secs(2);

/// Error codes that mean "the node failed", as opposed to an answer.
const NODE_FAILURES: &[&str] = &["upstream_unreachable", "upstream_failed", "node_down"];

/// Whether `e` says the node failed (rather than answered with an error).
pub fn is_node_failure(e: &ApiError) -> bool {
    NODE_FAILURES.contains(&e.code)
}

/// One request's retry budget.
pub struct Retries {
    /// The attempt under way (1 for the first).
    attempt: u32,
    deadline: Instant,
}

/// Which request failed where, for the event and the log.
pub struct Failed<'a> {
    pub request_id: &'a str,
    pub model: &'a str,
    pub node: Option<&'a str>,
}

impl Retries {
    pub fn new(state: &AppState) -> Self {
        Retries {
            attempt: 1,
            deadline: Instant::now() + state.cfg.gateway.queue_timeout(),
        }
    }

    /// After `e` ended an attempt that had sent the client nothing: whether
    /// to try again. If so the retry is counted and published, and the
    /// fleet view has had a moment to mark the node down.
    pub async fn again(&mut self, state: &AppState, at: Failed<'_>, e: &ApiError) -> bool {
        if !is_node_failure(e) || self.attempt > MAX_RETRIES || Instant::now() >= self.deadline {
            return false;
        }
        self.attempt += 1;
        state.metrics.retries.inc();
        tracing::info!(id = %at.request_id, model = %at.model, node = ?at.node, attempt = self.attempt, "node failed before the answer started ({}); retrying", e.message);
        state.bus.publish(
            at.node.map(str::to_string),
            EventKind::RequestRetried {
                request_id: at.request_id.to_string(),
                model: at.model.to_string(),
                attempt: self.attempt,
                reason: e.message.clone(),
            },
        );
        if let Some(node) = at.node {
            let settled = tokio::time::timeout_at(self.deadline, settle(state, node));
            let _ = tokio::time::timeout(SETTLE, settled).await;
        }
        true
    }
}

/// Waits until `node` is marked down (returns at once if it is already).
async fn settle(state: &AppState, node: &str) {
    let Some(mut rx) = state.fleet.lock().down_signal(node) else {
        return;
    };
    let _ = rx.changed().await;
}
