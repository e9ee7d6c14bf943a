//! The HTTP clients toward the neurons. Each node has its own pair, so each
//! carries that node's token (its `[[neurons]] token`/`token_file`, else
//! the fleet's `[auth] neuron_token`): the data path (connect timeout and
//! idle read timeout, never a total one) and the control path (events,
//! state reads, load, unload; per-call timeouts).

use std::time::Duration;

use anyhow::Context;
use cortex_common::config::gateway::GatewayConfig;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

/// One node's clients.
struct Pair {
    upstream: reqwest::Client,
    control: reqwest::Client,
}

pub struct NeuronClients {
    /// By node index (the order of `[[neurons]]`).
    nodes: Vec<Pair>,
    /// For a node index the config did not declare: the fleet's token.
    fleet: Pair,
}

impl NeuronClients {
    pub fn new(cfg: &GatewayConfig) -> anyhow::Result<Self> {
        let idle = cfg.gateway.upstream_idle_timeout();
        let nodes = cfg
            .neurons
            .iter()
            .map(|n| {
                Pair::new(n.effective_token(&cfg.auth), idle)
                    .with_context(|| format!("the clients of neuron `{}`", n.name))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(NeuronClients {
            nodes,
            fleet: Pair::new(cfg.auth.neuron_token.as_deref(), idle)?,
        })
    }

    /// Data path to node `idx` (chat requests).
    pub fn upstream(&self, idx: usize) -> &reqwest::Client {
        &self.nodes.get(idx).unwrap_or(&self.fleet).upstream
    }

    /// Control path to node `idx` (events, state, load, unload).
    pub fn control(&self, idx: usize) -> &reqwest::Client {
        &self.nodes.get(idx).unwrap_or(&self.fleet).control
    }
}

impl Pair {
    fn new(token: Option<&str>, idle: Duration) -> anyhow::Result<Self> {
        // Idle connections are dropped before a neuron's default header
        // timeout (30 s) would close them under a request reusing one.
        const POOL_IDLE: Duration = Duration::from_secs(20);
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .context("the neuron token has characters a header cannot carry")?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let upstream = reqwest::Client::builder()
            .default_headers(headers.clone())
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(idle)
            .tcp_nodelay(true)
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .context("building the upstream HTTP client")?;
        let control = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(POOL_IDLE)
            .tcp_nodelay(true)
            .build()
            .context("building the control HTTP client")?;
        Ok(Pair { upstream, control })
    }
}
