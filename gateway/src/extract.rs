//! Reading requests, shared by the client and admin APIs: the bearer token
//! and its constant-time check, the JSON body with its size and syntax
//! errors in the envelope, and a typed view of it that names the offending
//! field.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use cortex_common::error::{ApiError, ErrorKind};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Equal secrets, compared in time independent of where they differ and
/// of their lengths: both are hashed (SHA-256) first, and the digests —
/// always 32 bytes — compared without an early exit.
pub fn same(a: &str, b: &str) -> bool {
    let a = Sha256::digest(a.as_bytes());
    let b = Sha256::digest(b.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The body as JSON, with body-limit and syntax errors in the envelope.
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                "body_too_large",
                "the request body is larger than the gateway accepts",
            )
        } else {
            ApiError::invalid("invalid_body", rej.body_text())
        }
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "invalid_json",
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

/// Typed view of a request body, the offending field named in the message.
pub fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    serde::Deserialize::deserialize(v)
        .map_err(|e| ApiError::invalid("invalid_request", format!("invalid request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole_whatever_their_lengths() {
        assert!(same("key-1", "key-1"));
        assert!(!same("key-1", "key-2"));
        assert!(!same("key", "key-1"), "a prefix is not the key");
        assert!(!same("key-1", "key"));
        assert!(!same("", "key"));
    }
}
