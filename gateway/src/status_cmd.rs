//! `cortex status`: the fleet status from a running gateway, as a table or
//! as the `/admin/status` JSON document.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use cortex_common::status::{FleetStatus, NodeState};

pub async fn run(gateway: &str, token: Option<&str>, json: bool) -> anyhow::Result<()> {
    let url = format!("{}/admin/status", gateway.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let mut req = client.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {gateway}"))?;
    let status = resp.status();
    let body = resp.text().await.context("reading the status")?;
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    let doc: FleetStatus =
        serde_json::from_str(&body).with_context(|| format!("{url} sent an unreadable status"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(&doc));
    }
    Ok(())
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into())
}

/// The human table.
pub fn table(s: &FleetStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet {:?}: {}/{} nodes up, {:.1} req/s, {:.1} tok/s, eviction {}",
        s.health, s.nodes_up, s.nodes_total, s.requests_per_s, s.tokens_per_s, s.eviction_strategy
    );
    let _ = writeln!(
        out,
        "\n{:<16} {:<6} {:>8} {:>12}  endpoint",
        "NODE", "STATE", "IN-FLT", "MEM MiB"
    );
    for n in &s.nodes {
        let total: u64 = n.devices.iter().map(|d| d.memory_total_bytes).sum();
        let used: u64 = n.devices.iter().map(|d| d.memory_used_bytes).sum();
        let state = match n.state {
            NodeState::Up => "up",
            NodeState::Down => "down",
        };
        let _ = writeln!(
            out,
            "{:<16} {:<6} {:>8} {:>12}  {}{}",
            n.name,
            state,
            n.in_flight,
            format!("{}/{}", mib(used), mib(total)),
            n.endpoint,
            n.reason
                .as_ref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:<4} {:>5} {:>8} {:>8} {:>9} {:>14} {:>14}  placements",
        "MODEL", "PIN", "PRIO", "REQS", "ERRS", "RUN/Q/W", "TTFT p50/p99", "TOK/S p50"
    );
    for m in &s.models {
        let placements: Vec<String> = m
            .placements
            .iter()
            .map(|p| format!("{}:{:?}", p.node, p.state).to_lowercase())
            .collect();
        // Running on a neuron / queued at a neuron / waiting at the gateway.
        let queued: u32 = m.placements.iter().map(|p| p.queued).sum();
        let _ = writeln!(
            out,
            "{:<24} {:<4} {:>5} {:>8} {:>8} {:>9} {:>14} {:>14}  {}",
            m.id,
            if m.pinned { "yes" } else { "" },
            m.residency_priority,
            m.requests_total,
            m.errors_total,
            format!(
                "{}/{}/{}",
                m.in_flight.saturating_sub(queued),
                queued,
                m.waiting
            ),
            format!("{}/{} ms", pct(m.ttft_ms.p50), pct(m.ttft_ms.p99)),
            pct(m.tok_s.p50),
            if placements.is_empty() {
                "-".to_string()
            } else {
                placements.join(", ")
            }
        );
    }
    out
}
