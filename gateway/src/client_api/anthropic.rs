//! Anthropic Messages: `POST /v1/messages` (stream and not) and
//! `POST /v1/messages/count_tokens`. Requests are translated to chat
//! completions (`translate::anthropic`), routed and proxied like any chat
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
use cortex_common::error::ApiError;
use cortex_gateway::translate::anthropic::error::{error_type, from_api_error};
use cortex_gateway::translate::anthropic::request::to_chat_request;
use cortex_gateway::translate::anthropic::response::to_anthropic_response;
use cortex_gateway::translate::anthropic::schema::{MessagesRequest, StreamEvent};
use cortex_gateway::translate::anthropic::stream::{AnthropicStream, StreamContext};
use futures::StreamExt;
use serde_json::{Value, json};

use super::upstream;
use crate::error::{unknown_model, upstream as upstream_error};
use crate::extract::{json_body, typed};
use crate::proxy::{Answer, Event, Reply};
use crate::state::AppState;

/// An error on this surface, answered in Anthropic's shape (the status
/// and `Retry-After` it implies).
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError(e)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let (status, body) = from_api_error(&self.0);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.0.retry_after_secs {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
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
    let answer =
        upstream::send(state, "/v1/chat/completions", chat, model, req.is_stream()).await?;
    let (node, mut events) = match answer {
        Answer::Whole { node, reply } => {
            let resp = upstream::chat_reply(reply)?;
            return Ok(upstream::json(&to_anthropic_response(&resp), Some(&node)));
        }
        Answer::Stream { node, events } => (node, events),
    };
    let mut tr = AnthropicStream::new(StreamContext::for_request(&req));
    let frames = async_stream::stream! {
        let mut out: Vec<StreamEvent> = Vec::new();
        tr.start(&mut out);
        yield Ok::<Bytes, Infallible>(upstream::frames(&mut out));
        while let Some(event) = events.next().await {
            match event {
                Event::Wait(_) => out.push(AnthropicStream::ping()),
                Event::Chunk(chunk) => tr.push(&chunk, &mut out),
                Event::Failed(e) => tr.error(error_type(e.kind), e.message, &mut out),
                Event::Done => tr.finish(&mut out),
            }
            if !out.is_empty() {
                yield Ok(upstream::frames(&mut out));
            }
        }
    };
    Ok(upstream::sse(Body::from_stream(frames), node.as_deref()))
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
    let counted = match answer {
        Answer::Whole {
            reply: Reply::Document(v),
            ..
        } => v,
        _ => Value::Null,
    };
    let n = counted["prompt_tokens"].as_u64().ok_or_else(|| {
        let mut shown = counted.to_string();
        shown.truncate(shown.floor_char_boundary(200));
        upstream_error(
            "upstream_invalid",
            format!("the neuron's token count is unreadable: {shown}"),
        )
    })?;
    Ok(axum::Json(json!({ "input_tokens": n })).into_response())
}

/// A 401 on this surface, in Anthropic's shape.
pub fn unauthorized(e: &ApiError) -> Response {
    AnthropicError(e.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::unavailable;

    #[tokio::test]
    async fn overload_becomes_529_with_retry_after() {
        let r = AnthropicError(unavailable("no_capacity", "full", 3)).into_response();
        assert_eq!(r.status(), 529);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","error":{"type":"overloaded_error","message":"full"}})
        );
    }

    #[tokio::test]
    async fn an_upstream_failure_keeps_its_502() {
        let r = AnthropicError(upstream_error("node_down", "gone")).into_response();
        assert_eq!(r.status(), 502);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
    }
}
