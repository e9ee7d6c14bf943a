//! Errors on their way out: every failure the gateway answers becomes the
//! JSON envelope `{"error":{"message","type","code"}}` with its status, and
//! `Retry-After` on 503.

use axum::response::{IntoResponse, Response};
use cortex_common::error::{ApiError, ErrorKind};

/// Code of a transient "no room right now" answer from placement, when it
/// reaches a client (the router retries [`LoadError::Busy`] until the
/// request's deadline first).
const CAPACITY_BUSY: &str = "capacity_busy";

/// [`ApiError`] as an axum response.
#[derive(Debug)]
pub struct AppError(pub ApiError);

impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        AppError(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.0.to_http().into_response()
    }
}

/// Why a load did not happen.
#[derive(Debug, Clone)]
pub enum LoadError {
    /// No room for the model yet, but room is being made (a victim still
    /// serves, another load is under way): the same load can succeed soon,
    /// so a request waits and asks again.
    Busy {
        model: String,
        reason: String,
        retry_after_secs: u32,
    },
    /// Anything else, as the client is told.
    Failed(ApiError),
}

impl From<ApiError> for LoadError {
    fn from(e: ApiError) -> Self {
        LoadError::Failed(e)
    }
}

impl From<LoadError> for ApiError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Busy {
                retry_after_secs, ..
            } => unavailable(CAPACITY_BUSY, e.to_string(), retry_after_secs),
            LoadError::Failed(e) => e,
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Busy { model, reason, .. } => {
                write!(f, "no room for `{model}` yet: {reason}")
            }
            LoadError::Failed(e) => f.write_str(&e.message),
        }
    }
}

pub fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Authentication, "invalid_api_key", message)
}

pub fn upstream(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Upstream, code, message)
}

pub fn unknown_model(name: &str) -> ApiError {
    ApiError::not_found(
        "model_not_found",
        format!("model `{name}` is not in the catalogue and not loaded on any node"),
    )
}

/// 503 with Retry-After and a specific code.
pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u32) -> ApiError {
    ApiError {
        code,
        ..ApiError::overloaded(message, retry_after)
    }
}

/// What a neuron's refusal means to the gateway.
#[derive(Debug)]
pub enum Refusal {
    /// Its batch and queue are full: the gateway waits for room (see
    /// `waitlist`) rather than passing this on.
    QueueFull(ApiError),
    /// Anything else, answered as it is.
    Failed(ApiError),
}

impl Refusal {
    pub fn into_error(self) -> ApiError {
        match self {
            Refusal::QueueFull(e) | Refusal::Failed(e) => e,
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Failed(e)
    }
}

/// The error a neuron answered with (its envelope when it sent one).
pub fn from_upstream_body(status: u16, body: &[u8]) -> ApiError {
    refusal(status, body).into_error()
}

/// A neuron's error answer, read once: its envelope's message (or the
/// start of the body), and whether it was a full queue.
pub fn refusal(status: u16, body: &[u8]) -> Refusal {
    // A neuron's own fault is, seen from the client, an upstream failure.
    let kind = match status {
        500..=599 if status != 503 => ErrorKind::Upstream,
        _ => ErrorKind::from_status(status),
    };
    let parsed: Option<cortex_common::error::ErrorEnvelope> = serde_json::from_slice(body).ok();
    let full = status == 503
        && parsed
            .as_ref()
            .is_some_and(|e| e.error.code.as_deref() == Some("queue_full"));
    let mut message = match parsed {
        Some(env) => env.error.message,
        None => format!(
            "neuron answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ),
    };
    crate::echo::cap(&mut message);
    if full {
        Refusal::QueueFull(ApiError::new(kind, "upstream_queue_full", message))
    } else {
        Refusal::Failed(ApiError::new(kind, upstream_code(status), message))
    }
}

fn upstream_code(status: u16) -> &'static str {
    match status {
        404 => "model_not_found",
        413 => "payload_too_large",
        429 | 503 => "upstream_overloaded",
        400..=499 => "invalid_request",
        _ => "upstream_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overloaded_carries_retry_after_and_envelope() {
        let resp = AppError(unavailable("no_capacity", "full", 3)).into_response();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[axum::http::header::RETRY_AFTER], "3");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "no_capacity");
        assert_eq!(v["error"]["type"], "overloaded_error");
    }

    #[test]
    fn upstream_envelopes_keep_their_message() {
        let e = from_upstream_body(
            404,
            br#"{"error":{"message":"nope","type":"x","code":"y"}}"#,
        );
        assert_eq!(e.status(), 404);
        assert_eq!(e.message, "nope");
        let e = from_upstream_body(500, b"boom");
        assert!(e.message.contains("boom"));
        assert_eq!(e.status(), 502);
        let huge = format!(
            r#"{{"error":{{"message":"{}","type":"x","code":"y"}}}}"#,
            "m".repeat(1 << 20)
        );
        let e = from_upstream_body(500, huge.as_bytes());
        assert!(e.message.len() <= crate::echo::MAX_ECHO + 3);
    }

    #[test]
    fn only_a_503_queue_full_is_a_full_queue() {
        let full =
            br#"{"error":{"message":"batch full","type":"overloaded_error","code":"queue_full"}}"#;
        assert!(matches!(refusal(503, full), Refusal::QueueFull(e) if e.message == "batch full"));
        assert!(matches!(refusal(500, full), Refusal::Failed(_)));
        let other = br#"{"error":{"message":"x","type":"overloaded_error","code":"loading"}}"#;
        assert!(matches!(refusal(503, other), Refusal::Failed(e) if e.status() == 503));
    }
}
