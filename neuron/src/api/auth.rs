//! The neuron token: with one configured, every route but `/health` needs
//! `Authorization: Bearer <token>`; anything else is a 401 envelope and
//! nothing happens. The comparison takes the same time whatever the
//! presented value, its length included (both sides are hashed first).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cortex_common::error::{ApiError, ErrorKind};
use sha2::{Digest, Sha256};

use super::error::Failure;
use crate::node::Neuron;

/// Constant-time equality of two secrets of any lengths.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

pub async fn require_token(State(n): State<Arc<Neuron>>, req: Request, next: Next) -> Response {
    let Some(token) = &n.settings.token else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if same_secret(p, token.expose()) => next.run(req).await,
        other => {
            let why = if other.is_some() {
                "the neuron token is wrong"
            } else {
                "this neuron requires `Authorization: Bearer <neuron token>`"
            };
            Failure::from(ApiError::new(
                ErrorKind::Authentication,
                "unauthorized",
                why,
            ))
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cre", "s3cret"));
        assert!(!same_secret("s3cret-and-more", "s3cret"));
        assert!(!same_secret("", "s3cret"));
    }
}
