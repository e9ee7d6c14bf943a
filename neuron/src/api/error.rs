//! Errors as HTTP responses (status, `Retry-After`, JSON envelope), and the
//! JSON body extractor that turns every malformed body into a 4xx saying
//! what to fix.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cortex_common::error::{ApiError, ErrorKind};
use serde::de::DeserializeOwned;

/// An [`ApiError`] on its way out.
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        self.0.to_http().into_response()
    }
}

/// Like `axum::Json`, but its rejections are our envelope and name the
/// offending field.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                Failure(ApiError::new(
                    ErrorKind::PayloadTooLarge,
                    "body_too_large",
                    "request body is too large; send a smaller request",
                ))
            } else {
                Failure(ApiError::new(
                    ErrorKind::from_status(status.as_u16()),
                    "bad_body",
                    rejection.body_text(),
                ))
            }
        })?;
        parse_json(&bytes).map(JsonBody).map_err(Failure)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "invalid_json",
            "request body is empty; send a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::invalid(
                "invalid_json",
                format!("request body is not valid JSON: {inner}"),
            ),
            Category::Data if path == "." || path.is_empty() => ApiError::invalid(
                "invalid_request",
                format!("request body does not match the expected shape: {inner}"),
            ),
            Category::Data => {
                ApiError::invalid("invalid_value", format!("field `{path}`: {inner}"))
            }
        }
    })
}

pub async fn not_found() -> Failure {
    Failure(ApiError::not_found(
        "unknown_route",
        "no such endpoint; see GET /health, /discovery, /models, /events, POST /models/load, /models/unload, /v1/chat/completions",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cortex_common::openai::ChatCompletionRequest;

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse_json::<ChatCompletionRequest>(
            br#"{"model":"m","messages":[],"temperature":"hot"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_value");
        assert!(err.message.contains("temperature"), "{}", err.message);
    }

    #[test]
    fn broken_json_is_invalid_json() {
        let err = parse_json::<ChatCompletionRequest>(br#"{"model": "#).unwrap_err();
        assert_eq!(err.code, "invalid_json");
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn missing_field_is_reported() {
        let err = parse_json::<ChatCompletionRequest>(br#"{"messages":[]}"#).unwrap_err();
        assert!(err.message.contains("model"), "{}", err.message);
    }
}
