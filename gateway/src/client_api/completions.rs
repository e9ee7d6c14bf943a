//! Legacy text completions: `POST /v1/completions`, stream and not, served
//! for real (the prompt goes to the model as one user turn; see common's
//! `translate::completions`). Streams keep OpenAI's framing: `data:` chunks,
//! keepalive comments, an error envelope then `[DONE]` on failure.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use cortex_common::completions::CompletionRequest;
use cortex_common::error::{ApiError, ErrorEnvelope};
use cortex_common::translate::completions::{
    CompletionContext, CompletionStream, to_chat_request, to_completion_response,
};
use futures::StreamExt;

use super::upstream::{self, Item, OpenAiError};
use crate::extract::{json_body, typed};
use crate::state::AppState;

pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let body = json_body(body)?;
    let req: CompletionRequest = typed(&body)?;
    let model = upstream::resolve_model(&state, &req.model)?;
    let mut chat = to_chat_request(&req).map_err(ApiError::from)?;
    chat.model = model.clone();
    let chat = upstream::encode_chat(&chat)?;
    let stream = req.is_stream();
    let ctx = CompletionContext::for_request(&req);
    let answer = upstream::send(state, "/v1/chat/completions", chat, model, stream).await?;
    let node = answer.node.clone();
    if !stream {
        let (resp, _) = upstream::chat_response(answer).await?;
        return Ok(upstream::json(&to_completion_response(&resp, &ctx), node));
    }
    let mut items = upstream::items(answer.body);
    let mut tr = CompletionStream::new(ctx);
    let events = async_stream::stream! {
        while let Some(item) = items.next().await {
            let frame = match item {
                Item::Keepalive => ": keepalive\n\n".to_string(),
                Item::Chunk { chunk, .. } => match tr.push(&chunk) {
                    Some(c) => data(&c),
                    None => continue,
                },
                Item::Failed(error) => format!("{}data: [DONE]\n\n", data(&ErrorEnvelope { error })),
                Item::Done => "data: [DONE]\n\n".to_string(),
            };
            yield Ok::<Bytes, Infallible>(Bytes::from(frame));
        }
    };
    Ok(upstream::sse(Body::from_stream(events), node))
}

fn data<T: serde::Serialize>(v: &T) -> String {
    format!(
        "data: {}\n\n",
        serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
    )
}
