//! Prometheus metrics, exported as text on `metrics_listen`: counters of
//! requests, errors, cold starts, evictions and tokens; histograms (explicit
//! buckets) of TTFT, decode speed and request duration by model and node;
//! gauges per node and device.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use cortex_common::config::gateway::EvictionStrategy;
use cortex_common::histogram::{TOK_S_BUCKETS, TTFT_MS_BUCKETS};

/// Content type of [`Metrics::render`]'s output (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Content type of [`Metrics::render_openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request duration bounds, seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelNode {
    pub model: String,
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub model: String,
    pub node: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabels {
    pub model: String,
    pub node: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub node: String,
    pub device: String,
}

type HistFamily = Family<ModelNode, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<ModelNode, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub cold_starts: Family<ModelNode, Counter>,
    /// Requests sent again after their node failed before they had sent
    /// anything to their client; one series, there from the start.
    pub retries: Counter,
    pub evictions: Family<EvictionLabels, Counter>,
    pub prompt_tokens: Family<ModelNode, Counter>,
    pub completion_tokens: Family<ModelNode, Counter>,
    pub ttft_seconds: HistFamily,
    pub tokens_per_second: HistFamily,
    pub request_duration_seconds: HistFamily,
    pub node_up: Family<NodeLabel, Gauge>,
    pub node_in_flight: Family<NodeLabel, Gauge>,
    pub model_in_flight: Family<ModelNode, Gauge>,
    pub model_queue_depth: Family<ModelNode, Gauge>,
    pub gateway_waiting: Family<ModelLabel, Gauge>,
    pub device_memory_total: Family<DeviceLabels, Gauge>,
    pub device_memory_used: Family<DeviceLabels, Gauge>,
}

fn ttft_hist() -> Histogram {
    Histogram::new(TTFT_MS_BUCKETS.iter().map(|ms| ms / 1000.0))
}
fn tok_s_hist() -> Histogram {
    Histogram::new(TOK_S_BUCKETS.iter().copied())
}
fn duration_hist() -> Histogram {
    Histogram::new(DURATION_BUCKETS.iter().copied())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        // The encoder appends `_total` to counter names.
        let requests = Family::default();
        registry.register(
            "cortex_requests",
            "Client requests answered, by model and node",
            Clone::clone(&requests),
        );
        let errors = Family::default();
        registry.register(
            "cortex_request_errors",
            "Client requests that failed, by model, node and error code",
            Clone::clone(&errors),
        );
        let cold_starts = Family::default();
        registry.register(
            "cortex_cold_starts",
            "Model loads the gateway started to serve a request or an admin call",
            Clone::clone(&cold_starts),
        );
        let retries = Counter::default();
        registry.register(
            "cortex_retries",
            "Requests retried on another replica (or after a cold load) because their node failed before they had sent anything to their client",
            retries.clone(),
        );
        let evictions = Family::default();
        registry.register(
            "cortex_evictions",
            "Replicas unloaded by the gateway to make room or because they idled past their ttl",
            Clone::clone(&evictions),
        );
        let prompt_tokens = Family::default();
        registry.register(
            "cortex_prompt_tokens",
            "Prompt tokens processed",
            Clone::clone(&prompt_tokens),
        );
        let completion_tokens = Family::default();
        registry.register(
            "cortex_completion_tokens",
            "Completion tokens generated",
            Clone::clone(&completion_tokens),
        );
        let ttft_seconds: HistFamily = Family::new_with_constructor(ttft_hist);
        registry.register(
            "cortex_time_to_first_token_seconds",
            "Time to first token as measured by the neuron",
            ttft_seconds.clone(),
        );
        let tokens_per_second: HistFamily = Family::new_with_constructor(tok_s_hist);
        registry.register(
            "cortex_tokens_per_second",
            "Decode speed of finished requests",
            tokens_per_second.clone(),
        );
        let request_duration_seconds: HistFamily = Family::new_with_constructor(duration_hist);
        registry.register(
            "cortex_request_duration_seconds",
            "Wall time of client requests through the gateway, queueing and loading included",
            request_duration_seconds.clone(),
        );
        let node_up = Family::default();
        registry.register(
            "cortex_node_up",
            "1 when the neuron's event stream is connected",
            Clone::clone(&node_up),
        );
        let node_in_flight = Family::default();
        registry.register(
            "cortex_node_in_flight",
            "Requests the gateway is proxying to the node",
            Clone::clone(&node_in_flight),
        );
        let model_in_flight = Family::default();
        registry.register(
            "cortex_model_in_flight",
            "Requests admitted by the neuron for the model, running and waiting",
            Clone::clone(&model_in_flight),
        );
        let model_queue_depth = Family::default();
        registry.register(
            "cortex_model_queue_depth",
            "Requests waiting for the device, per model replica",
            Clone::clone(&model_queue_depth),
        );
        let gateway_waiting = Family::default();
        registry.register(
            "cortex_gateway_waiting",
            "Requests waiting at the gateway because every replica of the model is full",
            Clone::clone(&gateway_waiting),
        );
        let device_memory_total = Family::default();
        registry.register(
            "cortex_device_memory_total_bytes",
            "Memory the neuron may fill on the device",
            Clone::clone(&device_memory_total),
        );
        let device_memory_used = Family::default();
        registry.register(
            "cortex_device_memory_used_bytes",
            "Memory taken by resident models on the device",
            Clone::clone(&device_memory_used),
        );
        Metrics {
            registry,
            requests,
            errors,
            cold_starts,
            retries,
            evictions,
            prompt_tokens,
            completion_tokens,
            ttft_seconds,
            tokens_per_second,
            request_duration_seconds,
            node_up,
            node_in_flight,
            model_in_flight,
            model_queue_depth,
            gateway_waiting,
            device_memory_total,
            device_memory_used,
        }
    }

    /// Creates every series of the known models and nodes at zero, so
    /// `rate()`, `increase()` and alerts see them before the first event.
    /// Error series are per code and appear with their first error;
    /// eviction series under the configured `strategy` (ttl and operator
    /// evictions appear with their first).
    pub fn prime(&self, models: &[String], nodes: &[String], strategy: EvictionStrategy) {
        for node in nodes {
            let n = NodeLabel { node: node.clone() };
            self.node_up.get_or_create(&n).set(0);
            self.node_in_flight.get_or_create(&n).set(0);
        }
        for model in models {
            drop(self.gateway_waiting.get_or_create(&ModelLabel {
                model: model.clone(),
            }));
            for node in nodes {
                let l = model_node(model, node);
                drop(self.requests.get_or_create(&l));
                drop(self.cold_starts.get_or_create(&l));
                drop(self.prompt_tokens.get_or_create(&l));
                drop(self.completion_tokens.get_or_create(&l));
                drop(self.ttft_seconds.get_or_create(&l));
                drop(self.tokens_per_second.get_or_create(&l));
                drop(self.request_duration_seconds.get_or_create(&l));
                drop(self.model_in_flight.get_or_create(&l));
                drop(self.model_queue_depth.get_or_create(&l));
                drop(self.evictions.get_or_create(&EvictionLabels {
                    model: model.clone(),
                    node: node.clone(),
                    reason: strategy.as_str().to_string(),
                }));
            }
        }
    }

    /// The exposition in the Prometheus text format (what `promtool check
    /// metrics` and every Prometheus version read).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!("encoding metrics failed: {e}");
        }
        out
    }

    /// The exposition in OpenMetrics text, for scrapers that ask for it.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics failed: {e}");
        }
        out
    }
}

pub fn model_node(model: &str, node: &str) -> ModelNode {
    ModelNode {
        model: model.to_string(),
        node: node.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metrics {
        let m = Metrics::new();
        let l = model_node("smol", "a");
        m.requests.get_or_create(&l).inc();
        m.errors
            .get_or_create(&ErrorLabels {
                model: "smol".into(),
                node: "a".into(),
                code: "upstream_error".into(),
            })
            .inc();
        m.cold_starts.get_or_create(&l).inc();
        m.evictions
            .get_or_create(&EvictionLabels {
                model: "smol".into(),
                node: "a".into(),
                reason: "lru".into(),
            })
            .inc();
        m.prompt_tokens.get_or_create(&l).inc_by(12);
        m.completion_tokens.get_or_create(&l).inc_by(8);
        m.ttft_seconds.get_or_create(&l).observe(0.042);
        m.tokens_per_second.get_or_create(&l).observe(41.0);
        m.request_duration_seconds.get_or_create(&l).observe(0.3);
        m.node_up
            .get_or_create(&NodeLabel { node: "a".into() })
            .set(1);
        m.device_memory_total
            .get_or_create(&DeviceLabels {
                node: "a".into(),
                device: "cpu".into(),
            })
            .set(250 << 20);
        m
    }

    #[test]
    fn primed_series_are_exported_at_zero() {
        let m = Metrics::new();
        m.prime(
            &["smol".into()],
            &["a".into(), "b".into()],
            EvictionStrategy::Lru,
        );
        let text = m.render();
        for line in [
            "cortex_requests_total{model=\"smol\",node=\"b\"} 0",
            "cortex_cold_starts_total{model=\"smol\",node=\"a\"} 0",
            "cortex_evictions_total{model=\"smol\",node=\"a\",reason=\"lru\"} 0",
            "cortex_completion_tokens_total{model=\"smol\",node=\"a\"} 0",
            "cortex_time_to_first_token_seconds_count{model=\"smol\",node=\"a\"} 0",
            "cortex_gateway_waiting{model=\"smol\"} 0",
            "cortex_node_up{node=\"b\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn text_has_the_named_series_with_explicit_buckets() {
        let text = sample().render();
        for name in [
            "cortex_requests_total{",
            "cortex_request_errors_total{",
            "cortex_cold_starts_total{",
            "cortex_evictions_total{",
            "cortex_prompt_tokens_total{",
            "cortex_completion_tokens_total{",
            "# TYPE cortex_time_to_first_token_seconds histogram",
            "# TYPE cortex_tokens_per_second histogram",
            "# TYPE cortex_request_duration_seconds histogram",
            "cortex_node_up{node=\"a\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        // 42 ms lands in the 50 ms bucket, not before it.
        assert!(text.contains(
            "cortex_time_to_first_token_seconds_bucket{le=\"0.025\",model=\"smol\",node=\"a\"} 0"
        ) || text.contains(
            "cortex_time_to_first_token_seconds_bucket{model=\"smol\",node=\"a\",le=\"0.025\"} 0"
        ), "{text}");
        assert!(
            text.contains("le=\"0.05\"} 1")
                || text.contains("le=\"0.05\",model=\"smol\",node=\"a\"} 1"),
            "{text}"
        );
        assert!(text.contains("le=\"+Inf\""), "{text}");
    }

    /// `promtool check metrics` must accept the exposition. promtool comes
    /// with the Debian package `prometheus`; CI installs it.
    #[test]
    fn promtool_accepts_the_exposition() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let text = sample().render();
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => panic!(
                "promtool is not available ({e}); install it with `apt-get install prometheus` \
                 (it provides /usr/bin/promtool)"
            ),
        };
        child
            .stdin
            .take()
            .expect("stdin was piped")
            .write_all(text.as_bytes())
            .expect("promtool reads its stdin");
        let out = child.wait_with_output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool check metrics failed:\nstdout: {}\nstderr: {}\ntext:\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
