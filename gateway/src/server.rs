//! Serving a router on a listener with limits that `axum::serve` does not
//! offer: a client must send its request headers within
//! `header_read_timeout` (slow-loris connections are closed), and at most
//! `max_connections` are served at once — each connection holds a permit
//! from accept to close, and the accept loop waits for one (mini-redis's
//! listener). Stopping: no new connections once `shutdown` fires; open
//! ones are asked to finish, and [`serve`] returns when they have (the
//! caller bounds that wait).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long to wait after a failed accept (out of file descriptors...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves and the open
/// connections have finished.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // closed: never, the semaphore lives here
            },
            _ = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%remote, "TCP_NODELAY not set: {e}");
        }
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%remote, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// A connection that never finishes its headers is closed after the
    /// header timeout; while it is open, the capped server serves no one
    /// else — afterwards it does.
    #[tokio::test]
    async fn slow_headers_are_cut_and_connections_are_capped() {
        let (addr, _stop) = start(Limits {
            header_read_timeout: Duration::from_millis(500),
            max_connections: 1,
        })
        .await;
        let mut loris = tokio::net::TcpStream::connect(&addr).await.unwrap();
        loris
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let opened = Instant::now();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let asked = Instant::now();
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            client.get(format!("http://{addr}/health")).send(),
        )
        .await
        .expect("served once the slow connection is cut")
        .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            asked.elapsed() >= Duration::from_millis(400),
            "served while the only connection slot was held: {:?}",
            asked.elapsed()
        );
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), loris.read(&mut buf))
            .await
            .expect("the slow connection is closed")
            .unwrap_or(0);
        assert!(
            n == 0 || buf.starts_with(b"HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        assert!(opened.elapsed() >= Duration::from_millis(400));
    }
}
