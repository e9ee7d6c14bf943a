//! The state every handler and background task shares: configuration, the
//! fleet view, the event bus, metrics, the HTTP clients toward the neurons,
//! single-flight loads and the gateway's wait lines. One type, given once
//! to the router; modules reach it here, never through `serve`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cortex_common::config::gateway::GatewayConfig;
use cortex_common::config::models::ModelsConfig;

use crate::events::EventBus;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::neuron_clients::NeuronClients;
use crate::single_flight::Loads;

/// Everything the handlers and tasks share.
pub struct AppState {
    pub cfg: GatewayConfig,
    pub fleet: Fleet,
    /// The `/admin/events` bus; the fleet publishes its changes on it too.
    pub bus: Arc<EventBus>,
    pub metrics: Metrics,
    /// The HTTP clients toward each neuron, each with that node's token.
    pub neurons: NeuronClients,
    pub loads: Loads,
    /// Requests waiting at the gateway for room on a replica, per model.
    pub waitlists: crate::waitlist::Waitlists,
    /// Runtime pins kept across restarts; `None` without a state directory.
    pub pins: Option<Arc<crate::pin_store::PinStore>>,
    next_request: AtomicU64,
    boot_id: u64,
}

impl AppState {
    pub fn new(cfg: GatewayConfig, catalogue: ModelsConfig) -> anyhow::Result<Self> {
        let bus = Arc::new(EventBus::new(
            cfg.gateway.event_buffer,
            cfg.gateway.event_buffer_bytes,
        ));
        Ok(AppState {
            fleet: Fleet::new(&cfg, catalogue, bus.clone()),
            bus,
            metrics: Metrics::new(),
            neurons: NeuronClients::new(&cfg)?,
            loads: Loads::default(),
            waitlists: crate::waitlist::Waitlists::new(
                cfg.gateway.max_waiting,
                cfg.gateway.max_waiting_total,
            ),
            pins: None,
            next_request: AtomicU64::new(1),
            boot_id: cortex_common::now_ms() % 1_000_000,
            cfg,
        })
    }

    /// Opens the pin store in the configured (or default) state directory
    /// and applies the pins it holds over models.toml's.
    pub fn restore_pins(&mut self) {
        let dir = self
            .cfg
            .gateway
            .state_dir
            .clone()
            .or_else(crate::pin_store::default_state_dir);
        let Some(dir) = dir else {
            tracing::warn!(
                "no state directory (set [gateway] state_dir or HOME): runtime pins will not survive a restart"
            );
            return;
        };
        let (store, err) = crate::pin_store::PinStore::open(&dir);
        if let Some(e) = err {
            tracing::warn!("{e}");
        }
        let overrides = store.overrides();
        {
            let mut g = self.fleet.lock();
            for (model, pinned) in &overrides {
                g.restore_pin(model, *pinned);
            }
        }
        if !overrides.is_empty() {
            tracing::info!(path = %store.path().display(), pins = overrides.len(), "runtime pins restored");
        }
        self.pins = Some(store);
    }

    pub fn next_request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("gw-{}-{n}", self.boot_id)
    }
}
