//! OpenAI Chat Completions: `POST /v1/chat/completions`, the neurons' own
//! API. The request goes out as the client sent it (model resolved,
//! models.toml's sampling filled in); the proxy's typed answer is rendered
//! back as OpenAI's JSON or SSE: `data:` chunks, comments while the model
//! loads or prefills, an error envelope then `[DONE]` when it fails.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use cortex_common::error::ApiError;
use cortex_common::openai::ChatCompletionRequest;
use futures::StreamExt;
use serde_json::Value;

use super::upstream;
use crate::error::AppError;
use crate::extract::{json_body, typed};
use crate::proxy::{Answer, Event, Reply, Wait};
use crate::state::AppState;

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let mut body = json_body(body)?;
    let req: ChatCompletionRequest = typed(&body)?;
    // An empty model is reported first, by `resolve_model`.
    if req.messages.is_empty() && !req.model.trim().is_empty() {
        return Err(ApiError::invalid("invalid_messages", "`messages` must not be empty").into());
    }
    let model = upstream::resolve_model(&state, &req.model)?;
    body["model"] = Value::String(model.clone());
    let answer =
        upstream::send(state, "/v1/chat/completions", body, model, req.is_stream()).await?;
    Ok(match answer {
        Answer::Whole { node, reply } => match reply {
            Reply::Chat(chat) => upstream::json(&chat, Some(&node)),
            Reply::Document(doc) => upstream::json(&doc, Some(&node)),
        },
        Answer::Stream { node, events } => {
            let frames = events.map(|e| Ok::<Bytes, Infallible>(frame(e)));
            upstream::sse(Body::from_stream(frames), node.as_deref())
        }
    })
}

/// One event as OpenAI's SSE.
pub fn frame(event: Event) -> Bytes {
    match event {
        Event::Wait(Wait::Model) => {
            Bytes::from_static(b": cortex: waiting for the model to load\n\n")
        }
        Event::Wait(Wait::Neuron) => Bytes::from_static(b": cortex: waiting for the neuron\n\n"),
        Event::Wait(Wait::Idle) => Bytes::from_static(b": keepalive\n\n"),
        Event::Chunk(chunk) => Bytes::from(data(&chunk)),
        Event::Failed(e) => Bytes::from(format!("{}data: [DONE]\n\n", data(&e.envelope()))),
        Event::Done => Bytes::from_static(b"data: [DONE]\n\n"),
    }
}

/// `data: JSON` and the blank line that ends the frame.
pub fn data<T: serde::Serialize>(v: &T) -> String {
    format!(
        "data: {}\n\n",
        serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::upstream as upstream_error;

    fn text(event: Event) -> String {
        String::from_utf8(frame(event).to_vec()).unwrap()
    }

    #[test]
    fn a_failure_is_an_envelope_then_done() {
        let t = text(Event::Failed(upstream_error("node_down", "n1 went down")));
        assert_eq!(
            t,
            "data: {\"error\":{\"message\":\"n1 went down\",\"type\":\"upstream_error\",\"code\":\"node_down\"}}\n\ndata: [DONE]\n\n"
        );
    }

    #[test]
    fn a_chunk_renders_as_the_neuron_wrote_it() {
        let raw = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop","stop_reason":"END"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        let chunk = serde_json::from_str(raw).unwrap();
        assert_eq!(
            text(Event::Chunk(Box::new(chunk))),
            format!("data: {raw}\n\n")
        );
        assert_eq!(text(Event::Done), "data: [DONE]\n\n");
        assert!(text(Event::Wait(Wait::Idle)).starts_with(':'));
    }
}
