//! Periodic `histograms` events: per model (and per model on each node) TTFT
//! and decode-speed distributions, sent when they have new samples.

use std::sync::Arc;

use crate::state::AppState;

pub async fn histogram_task(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.cfg.gateway.histogram_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.fleet.lock().publish_histograms();
    }
}
