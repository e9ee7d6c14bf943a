//! Anthropic Messages: `POST /v1/messages` (stream and not) and
//! `POST /v1/messages/count_tokens`. Requests are translated to chat
//! completions (common's `translate`), routed and proxied like any chat
//! request, and answered in Anthropic's shapes — errors included, before
//! and during a stream. A stream opens with `message_start` at once, then
//! sends a `ping` for every keepalive the proxy emits (about every second
//! while the model loads or prefills).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cortex_common::anthropic::{ErrorResponse, ErrorType, MessagesRequest, StreamEvent};
use cortex_common::error::ApiError;
use cortex_common::translate::anthropic_error::{from_api_error, from_openai_error};
use cortex_common::translate::anthropic_request::to_chat_request;
use cortex_common::translate::anthropic_response::{ResponseContext, to_anthropic_response};
use cortex_common::translate::anthropic_stream::{AnthropicStream, StreamContext};
use futures::StreamExt;
use serde_json::{Value, json};

use super::upstream::{self, Failure, Item};
use crate::error::{unknown_model, upstream as upstream_error};
use crate::extract::{json_body, typed};
use crate::state::AppState;

/// An error on this surface, answered in Anthropic's shape.
pub enum AnthropicError {
    /// The gateway's own verdict.
    Api(ApiError),
    /// What the proxy answered (an OpenAI envelope and its status).
    Upstream(Failure),
}

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError::Api(e)
    }
}

impl From<Failure> for AnthropicError {
    fn from(f: Failure) -> Self {
        AnthropicError::Upstream(f)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let (status, body, retry_after) = match self {
            AnthropicError::Api(e) => {
                let (status, body) = from_api_error(&e);
                (status, body, e.retry_after_secs.map(HeaderValue::from))
            }
            AnthropicError::Upstream(f) => {
                let (status, body) = from_openai_error(f.status, &f.body);
                (status, body, f.retry_after)
            }
        };
        error_response(status, &body, retry_after)
    }
}

fn error_response(status: u16, body: &ErrorResponse, retry_after: Option<HeaderValue>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(v) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The request, checked, and the catalogue id its model resolves to.
fn parse(state: &AppState, body: &Value) -> Result<(MessagesRequest, String), ApiError> {
    let req: MessagesRequest = typed(body)?;
    if req.model.trim().is_empty() {
        return Err(ApiError::invalid(
            "invalid_model",
            "model: must not be empty",
        ));
    }
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "invalid_messages",
            "messages: at least one message is required",
        ));
    }
    let model = state
        .fleet
        .resolve(&req.model)
        .ok_or_else(|| unknown_model(&req.model))?;
    Ok((req, model))
}

pub async fn messages(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let body = json_body(body)?;
    let (req, model) = parse(&state, &body)?;
    if req.max_tokens == 0 {
        return Err(
            ApiError::invalid("invalid_max_tokens", "max_tokens: must be at least 1").into(),
        );
    }
    let mut chat = to_chat_request(&req).map_err(ApiError::from)?;
    chat.model = model.clone();
    let chat = upstream::encode_chat(&chat)?;
    let stream = req.is_stream();
    let answer = upstream::send(state, "/v1/chat/completions", chat, model, stream).await?;
    if !stream {
        let node = answer.node.clone();
        let (resp, stop) = upstream::chat_response(answer).await?;
        let mut ctx = ResponseContext::for_request(&req);
        ctx.stop_sequence = stop;
        return Ok(upstream::json(&to_anthropic_response(&resp, &ctx), node));
    }
    let node = answer.node.clone();
    let mut items = upstream::items(answer.body);
    let mut tr = AnthropicStream::new(StreamContext::for_request(&req));
    let events = async_stream::stream! {
        let mut out: Vec<StreamEvent> = Vec::new();
        tr.start(&mut out);
        yield Ok::<Bytes, Infallible>(frames(&mut out));
        while let Some(item) = items.next().await {
            match item {
                Item::Keepalive => out.push(AnthropicStream::ping()),
                Item::Chunk { chunk, calls, stop_sequence } => {
                    if stop_sequence.is_some() {
                        tr.set_stop_sequence(stop_sequence);
                    }
                    tr.push(&chunk, &mut out);
                    tr.push_tool_calls(&calls, &mut out);
                }
                Item::Failed(e) => tr.error(error_type(&e.kind), e.message, &mut out),
                Item::Done => tr.finish(&mut out),
            }
            if !out.is_empty() {
                yield Ok(frames(&mut out));
            }
        }
    };
    Ok(upstream::sse(Body::from_stream(events), node))
}

fn frames(out: &mut Vec<StreamEvent>) -> Bytes {
    let mut s = String::new();
    for ev in out.drain(..) {
        s.push_str(&ev.to_sse());
    }
    Bytes::from(s)
}

/// Anthropic's type for an OpenAI envelope's `type` (the shared names map
/// one to one; anything else is an `api_error`).
fn error_type(kind: &str) -> ErrorType {
    serde_json::from_value(Value::String(kind.to_string())).unwrap_or(ErrorType::ApiError)
}

/// `POST /v1/messages/count_tokens`: the request as the model would see it
/// (its chat template and tokenizer, on a node that has or can load it).
pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let mut body = json_body(body)?;
    if let Some(obj) = body.as_object_mut() {
        // count_tokens takes no max_tokens (any will do, as long as a
        // thinking budget fits below it) and never streams.
        obj.entry("max_tokens").or_insert(json!(u32::MAX));
        obj.remove("stream");
    }
    let (req, model) = parse(&state, &body)?;
    let mut chat = to_chat_request(&req).map_err(ApiError::from)?;
    chat.model = model.clone();
    chat.max_tokens = None;
    chat.stream = None;
    chat.stream_options = None;
    let chat = upstream::encode_chat(&chat)?;
    let answer = upstream::send(state, "/v1/chat/count_tokens", chat, model, false).await?;
    let bytes = upstream::bytes(answer).await?;
    let counted: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let n = counted["prompt_tokens"].as_u64().ok_or_else(|| {
        upstream_error(
            "upstream_invalid",
            format!(
                "the neuron's token count is unreadable: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        )
    })?;
    Ok(axum::Json(json!({ "input_tokens": n })).into_response())
}

/// A 401 on this surface, in Anthropic's shape.
pub fn unauthorized(e: &ApiError) -> Response {
    AnthropicError::Api(e.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_types_map_to_anthropic_types() {
        assert_eq!(error_type("overloaded_error"), ErrorType::OverloadedError);
        assert_eq!(error_type("not_found_error"), ErrorType::NotFoundError);
        assert_eq!(error_type("upstream_error"), ErrorType::ApiError);
        assert_eq!(error_type("internal_error"), ErrorType::ApiError);
    }

    #[tokio::test]
    async fn upstream_overload_becomes_529_with_retry_after() {
        let f = Failure {
            status: 503,
            body: Bytes::from_static(
                br#"{"error":{"message":"full","type":"overloaded_error","code":"no_capacity"}}"#,
            ),
            retry_after: Some(HeaderValue::from(3)),
        };
        let r = AnthropicError::Upstream(f).into_response();
        assert_eq!(r.status(), 529);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","error":{"type":"overloaded_error","message":"full"}})
        );
    }
}
