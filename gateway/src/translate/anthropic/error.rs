//! Errors on the Anthropic surface: cortex's [`ApiError`]s (its own and
//! the neurons', as the proxy hands them on) turned into Anthropic's
//! `{"type":"error","error":{"type","message"}}` and status.

use crate::translate::anthropic::schema::{ErrorResponse, ErrorType};
use cortex_common::error::{ApiError, ErrorKind};

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
}
