//! Periodic `histograms` events: per model (and per model on each node) TTFT
//! and decode-speed distributions, sent when they have new samples.

use std::sync::Arc;

use cortex_common::event::EventKind;

use crate::state::AppState;

pub async fn histogram_task(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.cfg.gateway.histogram_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut out = Vec::new();
        {
            let mut g = state.fleet.lock();
            for (model, rt) in g.models.iter_mut() {
                if rt.dirty.is_empty() {
                    continue;
                }
                out.push((None, model.clone(), rt.ttft.snapshot(), rt.tok_s.snapshot()));
                for node in std::mem::take(&mut rt.dirty) {
                    if let Some((t, s)) = rt.per_node.get(&node) {
                        out.push((Some(node), model.clone(), t.snapshot(), s.snapshot()));
                    }
                }
            }
        }
        for (node, model, ttft_ms, tok_s) in out {
            state.bus.publish(
                node,
                EventKind::Histograms {
                    model,
                    ttft_ms,
                    tok_s,
                },
            );
        }
    }
}
