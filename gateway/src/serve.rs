//! `cortex serve`: loads the config, starts one watcher per neuron and the
//! background tasks, and serves the client + admin API on `listen` and the
//! metrics on `metrics_listen`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use cortex_common::config::gateway::GatewayConfig;
use cortex_common::config::models::ModelsConfig;
use cortex_common::error::ApiError;
use tokio::net::TcpListener;

use crate::error::AppError;
use crate::metrics;
use crate::server::{self, Limits};
use crate::state::AppState;

/// How long open connections may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Connections served at once on `metrics_listen` (scrapers, a few).
const METRICS_CONNECTIONS: usize = 64;

/// Loads `cortex.toml` (+ environment) and the models file it names.
pub fn load_config(path: &Path) -> anyhow::Result<(GatewayConfig, ModelsConfig)> {
    let mut cfg = GatewayConfig::load(path)?;
    cfg.apply_env(|k| std::env::var(k).ok())?;
    let models_path = cfg.models_path();
    let catalogue = ModelsConfig::load(&models_path, Some(&cfg.neuron_names()))?;
    Ok((cfg, catalogue))
}

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(crate::client_api::routes(state.clone()))
        .merge(crate::admin::routes(state.clone()))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.cfg.gateway.max_body_bytes))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> AppError {
    AppError(ApiError::not_found(
        "route_not_found",
        format!("no route for {}", uri.path()),
    ))
}

async fn metrics_handler(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(header::CONTENT_TYPE, metrics::OPENMETRICS_CONTENT_TYPE)],
            state.metrics.render_openmetrics(),
        )
    } else {
        (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            state.metrics.render(),
        )
    }
}

pub async fn run(config: &Path) -> anyhow::Result<()> {
    let (cfg, catalogue) =
        load_config(config).with_context(|| format!("loading {}", config.display()))?;
    if cfg.auth.admin_token.is_none() {
        tracing::warn!("no admin token configured: the admin API will refuse every call");
    }
    for warning in cfg.warnings() {
        tracing::warn!("{}: {warning}", config.display());
    }
    if cfg.neurons.is_empty() {
        tracing::warn!("no [[neurons]] configured: every request will be answered 503");
    }
    let metrics_listener = TcpListener::bind(&cfg.gateway.metrics_listen)
        .await
        .with_context(|| format!("binding metrics_listen {}", cfg.gateway.metrics_listen))?;
    let listener = TcpListener::bind(&cfg.gateway.listen)
        .await
        .with_context(|| format!("binding listen {}", cfg.gateway.listen))?;
    let mut state = AppState::new(cfg, catalogue)?;
    state.restore_pins();
    let state = Arc::new(state);

    let models = state.fleet.catalogue_ids();
    let nodes: Vec<String> = state.cfg.neurons.iter().map(|n| n.name.clone()).collect();
    state.metrics.prime(&models, &nodes, state.fleet.strategy);
    for idx in 0..state.fleet.node_count() {
        tokio::spawn(crate::watch::watch_node(state.clone(), idx));
    }
    tokio::spawn(crate::evict::ttl_task(state.clone()));
    tokio::spawn(crate::histograms::histogram_task(state.clone()));
    tokio::spawn(crate::scale_out::scale_out_task(state.clone()));

    let metrics_app = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(state.clone());
    let metrics_addr = metrics_listener.local_addr()?;
    let addr = listener.local_addr()?;
    // Announced in this order: launchers wait for the `listening on` line.
    cortex_process::announce::metrics(metrics_addr);
    cortex_process::announce::listening(addr);
    tracing::info!(%addr, %metrics_addr, strategy = state.fleet.strategy.as_str(), "gateway up");

    // One signal stops both listeners; open streams (the fleet event stream
    // never ends by itself) get a short grace period, then the process exits.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        cortex_process::shutdown::signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let limits = Limits {
        header_read_timeout: state.cfg.gateway.header_read_timeout(),
        max_connections: state.cfg.gateway.max_connections as usize,
    };
    let metrics_limits = Limits {
        max_connections: METRICS_CONNECTIONS,
        ..limits
    };
    let metrics_server = tokio::spawn(server::serve(
        metrics_listener,
        metrics_app,
        metrics_limits,
        stopped(stop_rx.clone()),
    ));
    let server = server::serve(listener, app(state), limits, stopped(stop_rx.clone()));
    let grace = async {
        stopped(stop_rx).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => {}
        _ = grace => tracing::warn!("connections still open after {} s; exiting", SHUTDOWN_GRACE.as_secs()),
    }
    metrics_server.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped examples must stay valid (and consistent with each other).
    #[test]
    fn example_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cfg = GatewayConfig::load(&root.join("cortex.example.toml")).unwrap();
        assert_eq!(cfg.neurons.len(), 2);
        let models =
            ModelsConfig::load(&root.join("models.example.toml"), Some(&cfg.neuron_names()))
                .unwrap();
        assert_eq!(models.resolve("gpt-4o-mini"), "smollm2-135m");
        assert!(models.models.iter().all(|m| m.memory_mb.is_some()));
    }
}
