//! Watching the gateway's wait lines: their depth goes out as
//! `model_waiting` events and the `cortex_gateway_waiting` gauge, and a
//! model whose line stays deep gets another replica when its
//! `max_replicas` allows (scale-out), placed by the usual rules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cortex_common::event::EventKind;
use tokio::time::Instant;

use crate::load::add_replica;
use crate::metrics::ModelLabel;
use crate::state::AppState;

/// How often the lines are looked at.
const TICK: Duration = Duration::from_millis(250);
/// A line must hold requests this long before another replica is loaded
/// for it (a burst the replicas absorb within this does not scale out).
pub const SCALE_OUT_AFTER: Duration = Duration::from_secs(1);

pub async fn scale_out_task(state: Arc<AppState>) {
    let mut watcher = Watcher::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        watcher.look(&state, Instant::now());
    }
}

#[derive(Default)]
struct Watcher {
    /// Waiting count last published, per model.
    published: HashMap<String, u32>,
    /// Since when each non-empty line has been waiting without a scale-out.
    deep_since: HashMap<String, Instant>,
}

impl Watcher {
    fn look(&mut self, state: &Arc<AppState>, now: Instant) {
        for (model, waiting) in state.waitlists.counts() {
            if self.published.get(&model).copied().unwrap_or(0) != waiting {
                self.published.insert(model.clone(), waiting);
                state
                    .metrics
                    .gateway_waiting
                    .get_or_create(&ModelLabel {
                        model: model.clone(),
                    })
                    .set(i64::from(waiting));
                state.bus.publish(
                    None,
                    EventKind::ModelWaiting {
                        model: model.clone(),
                        waiting,
                    },
                );
            }
            if waiting == 0 {
                self.deep_since.remove(&model);
                continue;
            }
            let since = *self.deep_since.entry(model.clone()).or_insert(now);
            if now.duration_since(since) >= SCALE_OUT_AFTER {
                // Look again only after another full period.
                self.deep_since.insert(model.clone(), now);
                consider(state, &model, waiting);
            }
        }
    }
}

/// Starts loading another replica of `model` if its `max_replicas` allows.
fn consider(state: &Arc<AppState>, model: &str, waiting: u32) {
    let max = state
        .fleet
        .entry(model)
        .map(|e| e.max_replicas)
        .unwrap_or(1);
    if max <= 1 {
        return;
    }
    let holders = state.fleet.lock().holders(model) as u32;
    if holders >= max {
        return;
    }
    let why = format!(
        "{waiting} requests waiting at the gateway for {}s; replica {} of at most {max}",
        SCALE_OUT_AFTER.as_secs(),
        holders + 1
    );
    let (state, model) = (state.clone(), model.to_string());
    tokio::spawn(async move {
        match add_replica(&state, &model, why).await {
            Ok(node) => tracing::info!(%model, %node, "scale-out: another replica is serving"),
            Err(e) => tracing::info!(%model, "scale-out not possible now: {e}"),
        }
    });
}
