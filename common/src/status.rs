//! The fleet status snapshot: `GET /admin/status`, `cortex status --json`,
//! `cortex-console --json`, and the `snapshot` event. Versioned with
//! [`STATUS_SCHEMA_VERSION`]; fields are only ever added.

use serde::{Deserialize, Serialize};

use crate::histogram::{HistogramSnapshot, Percentiles};
use crate::neuron_api::{DeviceInfo, Progress};

pub const STATUS_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetHealth {
    /// Every node up.
    Ok,
    /// Some nodes down.
    Degraded,
    /// No node up.
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementState {
    Loading,
    Loaded,
    Unloading,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetStatus {
    pub schema: u32,
    pub gateway_version: String,
    pub generated_at_ms: u64,
    pub health: FleetHealth,
    pub nodes_up: u32,
    pub nodes_total: u32,
    /// Requests finished per second over the last few seconds.
    pub requests_per_s: f64,
    /// Completion tokens per second over the last few seconds.
    pub tokens_per_s: f64,
    pub eviction_strategy: String,
    pub nodes: Vec<NodeStatus>,
    pub models: Vec<ModelStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub endpoint: String,
    pub state: NodeState,
    pub devices: Vec<DeviceInfo>,
    pub in_flight: u32,
    /// Why the node is down, when it is.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStatus {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub source: String,
    pub pinned: bool,
    pub residency_priority: u32,
    pub memory_mb: u64,
    pub placements: Vec<Placement>,
    pub in_flight: u32,
    /// Requests waiting at the gateway because every replica is full.
    #[serde(default)]
    pub waiting: u32,
    pub requests_total: u64,
    pub errors_total: u64,
    pub ttft_ms: Percentiles,
    pub tok_s: Percentiles,
    #[serde(default)]
    pub ttft_histogram: HistogramSnapshot,
    #[serde(default)]
    pub tok_s_histogram: HistogramSnapshot,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub node: String,
    pub state: PlacementState,
    #[serde(default)]
    pub progress: Option<Progress>,
    pub in_flight: u32,
    /// Requests admitted by the neuron that wait for a batch slot there (as
    /// the neuron last reported).
    #[serde(default)]
    pub queued: u32,
    /// Milliseconds since the Unix epoch of the last request served here.
    #[serde(default)]
    pub last_used_ms: Option<u64>,
}
