//! The `/admin/status` document built from the fleet: health, nodes,
//! every model with its placements, counters and distributions, and the
//! fleet's request and token rates.

use std::time::{Duration, Instant};

use cortex_common::config::models::DEFAULT_RESIDENCY_PRIORITY;
use cortex_common::status::{
    FleetHealth, FleetStatus, ModelStatus, NodeState, NodeStatus, Placement, STATUS_SCHEMA_VERSION,
};

use super::FleetGuard;

/// Window of the requests/s and tokens/s rates.
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl FleetGuard<'_> {
    /// Requests and completion tokens the neurons finished per second,
    /// over the last [`RATE_WINDOW`].
    fn rates(&mut self) -> (f64, f64) {
        let finished = &mut self.inner.finished;
        if let Some(cutoff) = Instant::now().checked_sub(RATE_WINDOW) {
            while finished.front().is_some_and(|(t, _)| *t < cutoff) {
                finished.pop_front();
            }
        }
        let secs = RATE_WINDOW.as_secs_f64();
        let reqs = finished.len() as f64 / secs;
        let toks = finished.iter().map(|(_, n)| *n as f64).sum::<f64>() / secs;
        (reqs, toks)
    }

    /// The `/admin/status` document (the wait lines are the caller's).
    pub fn status(&mut self) -> FleetStatus {
        let (requests_per_s, tokens_per_s) = self.rates();
        let nodes_up = self.inner.nodes.iter().filter(|n| n.up).count() as u32;
        let nodes_total = self.inner.nodes.len() as u32;
        let health = if nodes_total > 0 && nodes_up == nodes_total {
            FleetHealth::Ok
        } else if nodes_up > 0 {
            FleetHealth::Degraded
        } else {
            FleetHealth::Down
        };
        let nodes = self
            .inner
            .nodes
            .iter()
            .map(|n| NodeStatus {
                name: n.name.clone(),
                endpoint: n.endpoint.clone(),
                state: if n.up { NodeState::Up } else { NodeState::Down },
                devices: n.devices.clone(),
                in_flight: n.in_flight_total(),
                reason: n.reason.clone(),
            })
            .collect();
        let models = self
            .ids_with(|_, _| true)
            .iter()
            .map(|id| self.model_status(id))
            .collect();
        FleetStatus {
            schema: STATUS_SCHEMA_VERSION,
            gateway_version: env!("CARGO_PKG_VERSION").to_string(),
            generated_at_ms: cortex_common::now_ms(),
            health,
            nodes_up,
            nodes_total,
            requests_per_s,
            tokens_per_s,
            eviction_strategy: self.fleet.strategy.as_str().to_string(),
            nodes,
            models,
        }
    }

    /// Where model `id` is on up nodes, in what state.
    pub fn placements(&self, id: &str) -> Vec<Placement> {
        self.inner
            .nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| {
                let r = n.replicas.get(id)?;
                let state = r.state().placement()?;
                let reported = r.reported();
                Some(Placement {
                    node: n.name.clone(),
                    state,
                    progress: reported.and_then(|m| m.progress),
                    in_flight: n.in_flight_of(id),
                    queued: reported.map(|m| m.queue_depth).unwrap_or(0),
                    last_used_ms: Some(r.last_used_ms()),
                })
            })
            .collect()
    }

    fn model_status(&self, id: &str) -> ModelStatus {
        let entry = self.fleet.catalogue.get(id);
        let placements = self.placements(id);
        let source = entry.map(|e| e.source().to_string()).unwrap_or_else(|| {
            self.inner
                .nodes
                .iter()
                .find_map(|n| Some(n.replicas.get(id)?.reported()?.source.clone()))
                .unwrap_or_default()
        });
        let rt = self.inner.models.get(id);
        let (requests_total, errors_total) = rt.map(|r| r.counts()).unwrap_or((0, 0));
        let (ttft, tok_s) = rt
            .map(|r| {
                let (t, s) = r.distributions();
                (t.snapshot(), s.snapshot())
            })
            .unwrap_or_default();
        ModelStatus {
            id: id.to_string(),
            aliases: self.fleet.catalogue.aliases_of(id),
            source,
            pinned: self.is_pinned(id),
            residency_priority: entry
                .map(|e| e.residency_priority)
                .unwrap_or(DEFAULT_RESIDENCY_PRIORITY),
            memory_mb: entry
                .and_then(|e| e.memory_mb)
                .or_else(|| {
                    rt.and_then(|r| r.observed_bytes())
                        .map(|b| b.div_ceil(1 << 20))
                })
                .unwrap_or(0),
            in_flight: placements.iter().map(|p| p.in_flight).sum(),
            waiting: 0,
            placements,
            requests_total,
            errors_total,
            ttft_ms: ttft.percentiles,
            tok_s: tok_s.percentiles,
            ttft_histogram: ttft,
            tok_s_histogram: tok_s,
        }
    }
}
