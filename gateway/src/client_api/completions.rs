//! Legacy text completions: `POST /v1/completions`, stream and not, served
//! for real (the prompt goes to the model as one user turn; see
//! `translate::completions`). Streams keep OpenAI's framing: `data:` chunks,
//! keepalive comments, an error envelope then `[DONE]` on failure.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use cortex_common::error::ApiError;
use cortex_gateway::translate::completions::schema::CompletionRequest;
use cortex_gateway::translate::completions::{
    CompletionContext, CompletionStream, to_chat_request, to_completion_response,
};
use futures::StreamExt;

use super::{chat, upstream};
use crate::error::AppError;
use crate::extract::{json_body, typed};
use crate::proxy::{Answer, Event};
use crate::state::AppState;

pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = json_body(body)?;
    let req: CompletionRequest = typed(&body)?;
    let model = upstream::resolve_model(&state, &req.model)?;
    let mut chat = to_chat_request(&req).map_err(ApiError::from)?;
    chat.model = model.clone();
    let chat = upstream::encode_chat(&chat)?;
    let ctx = CompletionContext::for_request(&req);
    let answer =
        upstream::send(state, "/v1/chat/completions", chat, model, req.is_stream()).await?;
    let (node, events) = match answer {
        Answer::Whole { node, reply } => {
            let resp = upstream::chat_reply(reply)?;
            return Ok(upstream::json(
                &to_completion_response(&resp, &ctx),
                Some(&node),
            ));
        }
        Answer::Stream { node, events } => (node, events),
    };
    let mut tr = CompletionStream::new(ctx);
    let frames = events.filter_map(move |event| {
        // Chunks in this surface's shape; the rest framed as on chat.
        let frame = match event {
            Event::Chunk(chunk) => tr.push(&chunk).map(|c| Bytes::from(chat::data(&c))),
            other => Some(chat::frame(other)),
        };
        std::future::ready(frame.map(Ok::<Bytes, Infallible>))
    });
    Ok(upstream::sse(Body::from_stream(frames), node.as_deref()))
}
