//! The state every handler and background task shares: configuration, the
//! fleet view, the event bus, metrics, the HTTP clients toward the neurons,
//! single-flight loads and the gateway's wait lines. One type, given once
//! to the router; modules reach it here, never through `serve`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use cortex_common::config::gateway::GatewayConfig;
use cortex_common::config::models::ModelsConfig;

use crate::events::EventBus;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::single_flight::Loads;

/// Everything the handlers and tasks share.
pub struct AppState {
    pub cfg: GatewayConfig,
    pub fleet: Fleet,
    pub bus: EventBus,
    pub metrics: Metrics,
    /// Data path to neurons: connect timeout and idle read timeout, no total.
    pub upstream: reqwest::Client,
    /// Control path (events, state reads, load, unload): per-call timeouts.
    pub control: reqwest::Client,
    pub loads: Loads,
    /// Requests waiting at the gateway for room on a replica, per model.
    pub waitlists: crate::waitlist::Waitlists,
    next_request: AtomicU64,
    boot_id: u64,
}

impl AppState {
    pub fn new(cfg: GatewayConfig, catalogue: ModelsConfig) -> anyhow::Result<Self> {
        // The fleet's neuron token goes with every request to a neuron.
        let mut neuron_headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &cfg.auth.neuron_token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .context("the neuron token has characters a header cannot carry")?;
            v.set_sensitive(true);
            neuron_headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let upstream = reqwest::Client::builder()
            .default_headers(neuron_headers.clone())
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(cfg.gateway.upstream_idle_timeout())
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .context("building the upstream HTTP client")?;
        let control = reqwest::Client::builder()
            .default_headers(neuron_headers)
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .build()
            .context("building the control HTTP client")?;
        Ok(AppState {
            fleet: Fleet::new(&cfg, catalogue),
            bus: EventBus::new(cfg.gateway.event_buffer),
            metrics: Metrics::new(),
            upstream,
            control,
            loads: Loads::default(),
            waitlists: crate::waitlist::Waitlists::new(cfg.gateway.max_waiting),
            next_request: AtomicU64::new(1),
            boot_id: cortex_common::now_ms() % 1_000_000,
            cfg,
        })
    }

    pub fn next_request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("gw-{}-{n}", self.boot_id)
    }
}
