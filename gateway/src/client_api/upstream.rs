//! The chat completion a translated surface (`/v1/messages`,
//! `/v1/responses`, `/v1/completions`) gets back from [`proxy::forward`]:
//! routing, cold loads, retries, keepalives, metrics and events stay in the
//! proxy, exactly as for `/v1/chat/completions`; this module reads what the
//! proxy answers — a JSON document, an error envelope, or an SSE stream of
//! chat chunks with keepalive comments — so each surface only translates.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use cortex_common::error::{ApiError, ErrorBody, ErrorEnvelope};
use cortex_common::openai::{ChatCompletionChunk, ChatCompletionResponse, ToolCallDelta};
use cortex_common::translate::parse_upstream_chunk;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;

use crate::error::{AppError, upstream};
use crate::proxy::{self, Forward, NODE_HEADER};
use crate::state::AppState;

/// Largest non-streamed answer read from the proxy.
const ANSWER_LIMIT: usize = 64 << 20;

/// The proxy answered with an error status: the envelope as it would have
/// gone to a chat client, for the surface to reshape.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub body: Bytes,
    pub retry_after: Option<HeaderValue>,
}

impl Failure {
    fn internal(e: ApiError) -> Self {
        Failure {
            status: e.status(),
            body: Bytes::from(serde_json::to_vec(&e.envelope()).unwrap_or_default()),
            retry_after: None,
        }
    }

    /// The failure as an OpenAI-shaped answer (what the proxy said).
    pub fn into_openai(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut r = (status, self.body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(v) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// An error on an OpenAI-shaped surface: the gateway's own, or the proxy's
/// envelope passed on as it is.
pub enum OpenAiError {
    Api(ApiError),
    Upstream(Failure),
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        OpenAiError::Api(e)
    }
}

impl From<Failure> for OpenAiError {
    fn from(f: Failure) -> Self {
        OpenAiError::Upstream(f)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        match self {
            OpenAiError::Api(e) => AppError(e).into_response(),
            OpenAiError::Upstream(f) => f.into_openai(),
        }
    }
}

/// A successful answer: its headers (the serving node) and body.
pub struct Answer {
    pub node: Option<HeaderValue>,
    pub body: Body,
}

/// A translated JSON answer, tagged with the serving node.
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
pub fn encode_chat(chat: &cortex_common::openai::ChatCompletionRequest) -> Result<Value, ApiError> {
    serde_json::to_value(chat)
        .map_err(|e| ApiError::internal(format!("encoding the chat request: {e}")))
}

pub fn json<T: serde::Serialize>(value: &T, node: Option<HeaderValue>) -> Response {
    let mut r = axum::Json(value).into_response();
    if let Some(v) = node {
        r.headers_mut().insert(NODE_HEADER, v);
    }
    r
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
) -> Result<Answer, Failure> {
    apply_sampling(&state, &model, &mut chat);
    let resp = proxy::forward(
        state,
        Forward {
            path,
            body: chat,
            model,
            stream,
        },
    )
    .await;
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    if status.is_success() {
        return Ok(Answer {
            node: parts.headers.get(NODE_HEADER).cloned(),
            body,
        });
    }
    let body = axum::body::to_bytes(body, ANSWER_LIMIT)
        .await
        .unwrap_or_default();
    Err(Failure {
        status: status.as_u16(),
        body,
        retry_after: parts.headers.get(header::RETRY_AFTER).cloned(),
    })
}

/// The whole body of a non-streamed answer.
pub async fn bytes(answer: Answer) -> Result<Bytes, Failure> {
    axum::body::to_bytes(answer.body, ANSWER_LIMIT)
        .await
        .map_err(|e| {
            Failure::internal(upstream(
                "upstream_failed",
                format!("reading the answer: {e}"),
            ))
        })
}

/// A non-streamed chat answer, parsed, with the matched stop sequence.
pub async fn chat_response(
    answer: Answer,
) -> Result<(ChatCompletionResponse, Option<String>), Failure> {
    let body = bytes(answer).await?;
    let resp: ChatCompletionResponse = serde_json::from_slice(&body).map_err(|e| {
        Failure::internal(upstream(
            "upstream_invalid",
            format!("the neuron's answer is not a chat completion: {e}"),
        ))
    })?;
    let stop = std::str::from_utf8(&body).ok().and_then(stop_sequence);
    Ok((resp, stop))
}

/// The stop sequence that ended generation, when the upstream says which
/// (vLLM's `choices[0].stop_reason` string). Without it a stop sequence
/// reads as a normal end.
pub fn stop_sequence(json: &str) -> Option<String> {
    if !json.contains("\"stop_reason\"") {
        return None;
    }
    let v: Value = serde_json::from_str(json).ok()?;
    v["choices"][0]["stop_reason"].as_str().map(str::to_string)
}

/// One thing that happened on an upstream chat stream.
#[derive(Debug)]
pub enum Item {
    /// Silence (model loading, prefill): the surface sends its keepalive.
    Keepalive,
    Chunk {
        chunk: Box<ChatCompletionChunk>,
        calls: Vec<ToolCallDelta>,
        stop_sequence: Option<String>,
    },
    /// The stream failed; nothing follows.
    Failed(ErrorBody),
    /// `[DONE]`; nothing follows.
    Done,
}

/// The proxy's SSE body as [`Item`]s, always ending with `Done` or
/// `Failed` (a stream that stops without `[DONE]` failed).
pub fn items(body: Body) -> BoxStream<'static, Item> {
    Box::pin(async_stream::stream! {
        let mut up = body.into_data_stream();
        let mut buf = BytesMut::new();
        loop {
            match up.next().await {
                Some(Ok(b)) => {
                    buf.extend_from_slice(&b);
                    while let Some(frame) = next_frame(&mut buf) {
                        if let Some(item) = parse_frame(&frame) {
                            let end = matches!(item, Item::Done | Item::Failed(_));
                            yield item;
                            if end {
                                // Read the proxy's stream to its end, so it
                                // records the request as finished rather
                                // than abandoned by the client.
                                while let Some(Ok(_)) = up.next().await {}
                                return;
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    yield Item::Failed(failure_body(format!("the upstream stream failed: {e}")));
                    return;
                }
                None => {
                    yield Item::Failed(failure_body("the upstream stream ended before [DONE]".into()));
                    return;
                }
            }
        }
    })
}

fn failure_body(message: String) -> ErrorBody {
    upstream("upstream_failed", message).envelope().error
}

/// Splits one `\n\n`-terminated SSE frame off the front of `buf`.
fn next_frame(buf: &mut BytesMut) -> Option<Bytes> {
    let end = buf.windows(2).position(|w| w == b"\n\n")?;
    let frame = buf.split_to(end + 2).freeze();
    Some(frame.slice(..end))
}

fn parse_frame(frame: &[u8]) -> Option<Item> {
    let text = String::from_utf8_lossy(frame);
    let mut data = String::new();
    let mut comment = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with(':') {
            comment = true;
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    if data.is_empty() {
        return comment.then_some(Item::Keepalive);
    }
    if data == "[DONE]" {
        return Some(Item::Done);
    }
    if data.starts_with("{\"error\"") {
        return Some(Item::Failed(
            match serde_json::from_str::<ErrorEnvelope>(&data) {
                Ok(env) => env.error,
                Err(_) => failure_body(format!("the upstream failed: {data}")),
            },
        ));
    }
    match parse_upstream_chunk(&data) {
        Ok((chunk, calls)) => Some(Item::Chunk {
            chunk: Box::new(chunk),
            calls,
            stop_sequence: stop_sequence(&data),
        }),
        Err(e) => Some(Item::Failed(failure_body(format!(
            "the upstream sent an unreadable chunk ({e}): {data}"
        )))),
    }
}

/// A translated stream as an SSE response, tagged with the serving node.
pub fn sse(body: Body, node: Option<HeaderValue>) -> Response {
    let mut r = Response::new(body);
    let h: &mut HeaderMap = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(v) = node {
        h.insert(NODE_HEADER, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(chunks: &[&'static str]) -> Vec<Item> {
        let parts: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        let body = Body::from_stream(futures::stream::iter(parts));
        items(body).collect().await
    }

    #[tokio::test]
    async fn frames_split_across_reads_comments_and_done() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop","stop_reason":"END"}]}"#;
        let whole = format!(": keepalive\n\ndata: {chunk}\n\ndata: [DONE]\n\n");
        let leaked: &'static str = Box::leak(whole.into_boxed_str());
        let (a, b) = leaked.split_at(30);
        let items = collect(&[a, b]).await;
        assert!(matches!(items[0], Item::Keepalive), "{items:?}");
        match &items[1] {
            Item::Chunk {
                chunk,
                stop_sequence,
                ..
            } => {
                assert_eq!(chunk.choices[0].delta.content.as_deref(), Some("hi"));
                assert_eq!(stop_sequence.as_deref(), Some("END"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(items[2], Item::Done));
        assert_eq!(items.len(), 3);
    }

    #[tokio::test]
    async fn error_frames_and_early_ends_fail() {
        let items = collect(&[
            "data: {\"error\":{\"message\":\"gone\",\"type\":\"upstream_error\",\"code\":\"node_down\"}}\n\ndata: [DONE]\n\n",
        ])
        .await;
        assert_eq!(items.len(), 1);
        assert!(matches!(&items[0], Item::Failed(e) if e.message == "gone"));
        let items = collect(&[": x\n\n"]).await;
        assert!(matches!(items[0], Item::Keepalive));
        assert!(matches!(&items[1], Item::Failed(e) if e.message.contains("before [DONE]")));
    }
}
