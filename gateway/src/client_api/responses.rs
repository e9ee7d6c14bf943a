//! OpenAI Responses: `POST /v1/responses`, stateless, stream and not.
//! Translated to a chat completion, routed and proxied like one, answered
//! as a response object or its typed events (`response.created`, …,
//! `response.completed` / `response.incomplete`, or `error` +
//! `response.failed`). Keepalives pass as SSE comments.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use cortex_common::error::ApiError;
use cortex_gateway::translate::responses::request::to_chat_request;
use cortex_gateway::translate::responses::response::{ResponsesContext, to_responses_response};
use cortex_gateway::translate::responses::schema::{ResponsesRequest, StreamEvent};
use cortex_gateway::translate::responses::stream::ResponsesStream;
use futures::StreamExt;

use super::upstream;
use crate::error::AppError;
use crate::extract::{json_body, typed};
use crate::proxy::{Answer, Event};
use crate::state::AppState;

pub async fn responses(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = json_body(body)?;
    let req: ResponsesRequest = typed(&body)?;
    let model = upstream::resolve_model(&state, &req.model)?;
    let mut chat = to_chat_request(&req).map_err(ApiError::from)?;
    chat.model = model.clone();
    let chat = upstream::encode_chat(&chat)?;
    let ctx = ResponsesContext::for_request(&req);
    let answer =
        upstream::send(state, "/v1/chat/completions", chat, model, req.is_stream()).await?;
    let (node, mut events) = match answer {
        Answer::Whole { node, reply } => {
            let resp = upstream::chat_reply(reply)?;
            return Ok(upstream::json(
                &to_responses_response(&resp, &ctx),
                Some(&node),
            ));
        }
        Answer::Stream { node, events } => (node, events),
    };
    let mut tr = ResponsesStream::new(ctx);
    let frames = async_stream::stream! {
        let mut out: Vec<StreamEvent> = Vec::new();
        tr.start(&mut out);
        yield Ok::<Bytes, Infallible>(upstream::frames(&mut out));
        while let Some(event) = events.next().await {
            match event {
                Event::Wait(_) => {
                    yield Ok(Bytes::from_static(b": keepalive\n\n"));
                    continue;
                }
                Event::Chunk(chunk) => tr.push(&chunk, &mut out),
                Event::Failed(e) => tr.error(e.code, &e.message, &mut out),
                Event::Done => tr.finish(&mut out),
            }
            if !out.is_empty() {
                yield Ok(upstream::frames(&mut out));
            }
        }
    };
    Ok(upstream::sse(Body::from_stream(frames), node.as_deref()))
}
