//! What every client surface shares on its way to a neuron and back: the
//! model a client asked for, resolved; models.toml's sampling settings;
//! the chat request handed to [`proxy::forward`] (routing, cold loads,
//! retries, waits, metrics and events stay in the proxy); and the typed
//! answer it gives back, as a response tagged with the serving node.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cortex_common::error::ApiError;
use cortex_common::openai::{ChatCompletionRequest, ChatCompletionResponse};
use cortex_gateway::translate::SseEvent;
use serde_json::Value;

use crate::error::upstream;
use crate::proxy::{self, Answer, Forward, Reply};
use crate::state::AppState;

/// Header naming the node that served a request.
pub const NODE_HEADER: &str = "x-cortex-node";

/// The model a client asked for, aliases resolved; 400 when empty, 404
/// when the catalogue has no such model.
pub fn resolve_model(state: &AppState, asked: &str) -> Result<String, ApiError> {
    if asked.trim().is_empty() {
        return Err(ApiError::invalid(
            "invalid_model",
            "`model` must not be empty",
        ));
    }
    state
        .fleet
        .resolve(asked)
        .ok_or_else(|| crate::error::unknown_model(asked))
}

/// A translated chat request as the JSON body the neuron receives.
pub fn encode_chat(chat: &ChatCompletionRequest) -> Result<Value, ApiError> {
    serde_json::to_value(chat)
        .map_err(|e| ApiError::internal(format!("encoding the chat request: {e}")))
}

/// models.toml's sampling settings for `model`, written into a chat
/// request where the client left them out (what is still out, the neuron
/// fills from the model's own defaults).
pub fn apply_sampling(state: &AppState, model: &str, chat: &mut Value) {
    let Some(entry) = state.fleet.entry(model) else {
        return;
    };
    let (Ok(Value::Object(set)), Value::Object(body)) =
        (serde_json::to_value(entry.sampling()), chat)
    else {
        return;
    };
    for (key, value) in set {
        if body.get(&key).is_none_or(Value::is_null) {
            body.insert(key, value);
        }
    }
}

/// Sends `chat` (a chat completion request, model already resolved) to
/// `path` on a neuron through the proxy, with models.toml's sampling
/// settings where the client gave none.
pub async fn send(
    state: Arc<AppState>,
    path: &'static str,
    mut chat: Value,
    model: String,
    stream: bool,
) -> Result<Answer, ApiError> {
    apply_sampling(&state, &model, &mut chat);
    proxy::forward(
        state,
        Forward {
            path,
            body: chat,
            model,
            stream,
        },
    )
    .await
}

/// A non-streamed answer as the chat completion it must be.
pub fn chat_reply(reply: Reply) -> Result<ChatCompletionResponse, ApiError> {
    match reply {
        Reply::Chat(c) => Ok(*c),
        Reply::Document(v) => serde_json::from_value(v).map_err(|e| {
            upstream(
                "upstream_invalid",
                format!("the neuron's answer is not a chat completion: {e}"),
            )
        }),
    }
}

/// The translated events so far as SSE frames; `out` is left empty.
pub fn frames<E: SseEvent>(out: &mut Vec<E>) -> Bytes {
    let mut s = String::new();
    for ev in out.drain(..) {
        s.push_str(&ev.to_sse());
    }
    Bytes::from(s)
}

/// A JSON answer, tagged with the serving node.
pub fn json<T: serde::Serialize>(value: &T, node: Option<&str>) -> Response {
    let mut r = axum::Json(value).into_response();
    set_node(r.headers_mut(), node);
    r
}

/// An SSE answer over `body`, tagged with the serving node when known.
pub fn sse(body: Body, node: Option<&str>) -> Response {
    let mut r = Response::new(body);
    let h: &mut HeaderMap = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    set_node(h, node);
    r
}

fn set_node(h: &mut HeaderMap, node: Option<&str>) {
    if let Some(v) = node.and_then(|n| HeaderValue::from_str(n).ok()) {
        h.insert(NODE_HEADER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_that_is_no_chat_completion_is_an_upstream_error() {
        let e = chat_reply(Reply::Document(json!({"prompt_tokens": 3}))).unwrap_err();
        assert_eq!(e.code, "upstream_invalid");
        assert_eq!(e.status(), 502);
    }
}
