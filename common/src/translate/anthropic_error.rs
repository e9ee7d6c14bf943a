//! Errors on the Anthropic surface: cortex's own [`ApiError`]s and the
//! OpenAI-shaped error bodies neurons answer with, both turned into
//! Anthropic's `{"type":"error","error":{"type","message"}}` and status.

use crate::anthropic::{ErrorResponse, ErrorType};
use crate::error::{ApiError, ErrorEnvelope, ErrorKind};

/// The Anthropic type for one of cortex's error kinds.
pub fn error_type(kind: ErrorKind) -> ErrorType {
    match kind {
        ErrorKind::InvalidRequest => ErrorType::InvalidRequestError,
        ErrorKind::Authentication => ErrorType::AuthenticationError,
        ErrorKind::Forbidden => ErrorType::PermissionError,
        ErrorKind::NotFound => ErrorType::NotFoundError,
        ErrorKind::PayloadTooLarge => ErrorType::RequestTooLarge,
        ErrorKind::Overloaded => ErrorType::OverloadedError,
        ErrorKind::Upstream | ErrorKind::Internal => ErrorType::ApiError,
    }
}

/// Status and body for an [`ApiError`] on `/v1/messages`. Overloaded is
/// answered 529 as Anthropic does (the SDKs retry it; keep `Retry-After`
/// from `err.retry_after_secs`); an upstream failure keeps its 502.
pub fn from_api_error(err: &ApiError) -> (u16, ErrorResponse) {
    let kind = error_type(err.kind);
    let status = match err.kind {
        ErrorKind::Upstream => err.status(),
        _ => kind.status(),
    };
    (status, ErrorResponse::new(kind, err.message.clone()))
}

/// Status and body for an upstream (neuron) error answer: its status and
/// body bytes. An OpenAI envelope keeps its message; any other body is
/// quoted as the message, so nothing the upstream said is lost.
pub fn from_openai_error(status: u16, body: &[u8]) -> (u16, ErrorResponse) {
    let kind = ErrorType::from_status(status);
    let message = match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(env) => env.error.message,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("upstream answered HTTP {status}")
            } else {
                text.to_string()
            }
        }
    };
    let out_status = if kind == ErrorType::OverloadedError {
        529
    } else {
        status
    };
    (out_status, ErrorResponse::new(kind, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_errors_take_anthropic_types_and_statuses() {
        let cases = [
            (
                ApiError::invalid("bad_json", "m"),
                400,
                "invalid_request_error",
            ),
            (
                ApiError::new(ErrorKind::Authentication, "x", "m"),
                401,
                "authentication_error",
            ),
            (
                ApiError::not_found("model_not_found", "m"),
                404,
                "not_found_error",
            ),
            (
                ApiError::new(ErrorKind::PayloadTooLarge, "x", "m"),
                413,
                "request_too_large",
            ),
            (ApiError::overloaded("m", 2), 529, "overloaded_error"),
            (
                ApiError::new(ErrorKind::Upstream, "x", "m"),
                502,
                "api_error",
            ),
            (ApiError::internal("m"), 500, "api_error"),
        ];
        for (err, status, kind) in cases {
            let (s, body) = from_api_error(&err);
            assert_eq!(s, status);
            assert_eq!(
                serde_json::to_value(body).unwrap(),
                json!({"type":"error","error":{"type":kind,"message":"m"}})
            );
        }
    }

    #[test]
    fn neuron_envelopes_translate() {
        let body = br#"{"error":{"message":"model 'x' is not loaded","type":"not_found_error","code":"model_not_found"}}"#;
        let (s, e) = from_openai_error(404, body);
        assert_eq!(s, 404);
        assert_eq!(e.error.kind, ErrorType::NotFoundError);
        assert_eq!(e.error.message, "model 'x' is not loaded");
        let (s, e) = from_openai_error(
            503,
            br#"{"error":{"message":"queue full","type":"overloaded_error","code":"queue_full"}}"#,
        );
        assert_eq!((s, e.error.kind), (529, ErrorType::OverloadedError));
        let (s, e) = from_openai_error(500, b"boom\n");
        assert_eq!((s, e.error.message.as_str()), (500, "boom"));
        let (_, e) = from_openai_error(429, b"");
        assert_eq!(e.error.kind, ErrorType::RateLimitError);
        assert_eq!(e.error.message, "upstream answered HTTP 429");
    }
}
