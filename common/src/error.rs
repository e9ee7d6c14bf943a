//! The JSON error envelope every cortex HTTP surface answers with:
//! `{"error":{"message","type","code"}}` (OpenAI shape), and the HTTP
//! answer around it (status, `Retry-After`).

use serde::{Deserialize, Serialize};

/// What went wrong, as a closed set. Each kind has one HTTP status and one
/// `type` string, so the neuron and the gateway answer the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed JSON, wrong types, values out of range.
    InvalidRequest,
    /// Missing or wrong API key / admin token.
    Authentication,
    /// Authenticated, but not allowed (e.g. a model path outside the
    /// directories a neuron may read).
    Forbidden,
    /// Unknown model or route.
    NotFound,
    /// Request body larger than the limit.
    PayloadTooLarge,
    /// Nothing can serve this right now (queue full, no node up); retry later.
    Overloaded,
    /// An upstream (a neuron) failed while serving the request.
    Upstream,
    /// A bug or device fault on our side.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Overloaded => 503,
            ErrorKind::Upstream => 502,
            ErrorKind::Internal => 500,
        }
    }

    /// The `error.type` string (OpenAI's vocabulary).
    pub fn type_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::PayloadTooLarge => "invalid_request_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::Internal => "internal_error",
        }
    }

    pub fn from_status(status: u16) -> Self {
        match status {
            401 => ErrorKind::Authentication,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::PayloadTooLarge,
            429 | 503 => ErrorKind::Overloaded,
            400..=499 => ErrorKind::InvalidRequest,
            502 | 504 => ErrorKind::Upstream,
            _ => ErrorKind::Internal,
        }
    }
}

/// `{"error": {...}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// A short machine-readable code, e.g. `model_not_found`, `queue_full`.
    pub code: Option<String>,
}

/// An error on its way to becoming a response: kind, code, message, and for
/// `Overloaded` how long the client should wait.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u32>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn overloaded(message: impl Into<String>, retry_after_secs: u32) -> Self {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(ErrorKind::Overloaded, "overloaded", message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal_error", message)
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                message: self.message.clone(),
                kind: self.kind.type_str().to_string(),
                code: Some(self.code.to_string()),
            },
        }
    }

    /// The whole HTTP answer: the status, the JSON envelope, and
    /// `Retry-After` when the client should wait. The neuron and the
    /// gateway each hand it to their framework.
    pub fn to_http(&self) -> http::Response<String> {
        // Only strings go in: serializing cannot fail.
        let mut resp =
            http::Response::new(serde_json::to_string(&self.envelope()).unwrap_or_default());
        *resp.status_mut() = http::StatusCode::from_u16(self.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_secs {
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_openai_shape() {
        let err = ApiError::not_found("model_not_found", "model 'x' is not loaded");
        let json = serde_json::to_value(err.envelope()).unwrap();
        assert_eq!(json["error"]["message"], "model 'x' is not loaded");
        assert_eq!(json["error"]["type"], "not_found_error");
        assert_eq!(json["error"]["code"], "model_not_found");
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn the_http_answer_has_the_status_the_envelope_and_retry_after() {
        let busy = ApiError::overloaded("queue full; retry shortly", 3).to_http();
        assert_eq!(busy.status(), 503);
        assert_eq!(busy.headers()["retry-after"], "3");
        assert_eq!(busy.headers()["content-type"], "application/json");
        let body: ErrorEnvelope = serde_json::from_str(busy.body()).unwrap();
        assert_eq!(body.error.kind, "overloaded_error");
        assert_eq!(body.error.message, "queue full; retry shortly");
        let missing = ApiError::not_found("model_not_found", "no").to_http();
        assert_eq!(missing.status(), 404);
        assert!(missing.headers().get("retry-after").is_none());
    }

    #[test]
    fn statuses_round_trip_through_kinds() {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::Authentication,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::PayloadTooLarge,
            ErrorKind::Overloaded,
            ErrorKind::Upstream,
            ErrorKind::Internal,
        ] {
            assert_eq!(ErrorKind::from_status(kind.status()), kind);
        }
    }
}
