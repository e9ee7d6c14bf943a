//! `GET /events`: the neuron's event stream as Server-Sent Events
//! (`id:` = sequence number, `data:` = the event as JSON). The stream ends
//! when the neuron stops, so a follower never holds up its shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::node::Neuron;

pub async fn events(
    State(n): State<Arc<Neuron>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut rx = n.bus.subscribe();
    let shutdown = n.shutdown.clone();
    // A fresh subscriber gets the current state at once.
    n.emit_stats();
    let stream = async_stream::stream! {
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                () = shutdown.wait() => {
                    tracing::debug!("neuron stopping; /events stream ends");
                    break;
                }
            };
            match next {
                Ok(event) => {
                    match serde_json::to_string(&event) {
                        Ok(json) => yield Ok(SseEvent::default().id(event.seq.to_string()).data(json)),
                        Err(e) => tracing::error!(error = %e, "event not serialisable"),
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "an /events subscriber fell behind; events skipped");
                    yield Ok(SseEvent::default().comment(format!("lagged {missed}")));
                }
                Err(RecvError::Closed) => {
                    tracing::info!("event bus closed; /events stream ends");
                    break;
                }
            }
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
}
