//! Serving the API over TCP with limits: a cap on connections served at once
//! (a permit per connection, as mini-redis does; more wait in the kernel's
//! backlog), a timeout on reading a request's headers (a slow-loris client
//! is cut off), and a graceful stop whose drain is bounded, like the
//! gateway's: on [`Shutdown`] the listener closes, idle connections close,
//! open ones get [`DRAIN`] to finish, then the neuron exits regardless.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use crate::shutdown::Shutdown;

/// How long open connections may take to finish once the neuron stops.
pub const DRAIN: Duration = Duration::from_secs(5);

/// The server's limits, from `neuron.toml`.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Bound on the drain at shutdown.
    pub drain: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            drain: DRAIN,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then drains.
pub async fn run(listener: TcpListener, app: Router, limits: ServerLimits, shutdown: Shutdown) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Every connection task holds a clone; when all are dropped, `recv`
    // returns `None`: the drain is complete.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.wait() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pass, retry.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let (stop, open) = (shutdown.clone(), open_tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = stop.wait() => {}
            }
            // Finish the request in progress, then close.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    drop(open_tx);
    match tokio::time::timeout(limits.drain, open_rx.recv()).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            secs = limits.drain.as_secs(),
            "connections still open after the drain; stopping anyway"
        ),
    }
}
