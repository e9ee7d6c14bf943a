//! `POST /v1/chat/completions`: validate, render the chat template,
//! tokenize, admit into the model's queue, hand the job to the device
//! worker, and answer as one JSON document or as an SSE stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cortex_common::error::ApiError;
use cortex_common::openai::{
    ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    ChunkChoice, ChunkDelta, FinishReason, FunctionCallDelta, MessageContent, ToolCallDelta, Usage,
};
use tokio::sync::mpsc;

use super::error::{Failure, JsonBody};
use super::limits::{MAX_MODEL_ID_BYTES, check_len};
use super::steer::{Steering, steer};
use crate::engine::admission::admit;
use crate::engine::output::OutputFormat;
use crate::engine::prompt::PromptError;
use crate::engine::registry::ModelEntry;
use crate::engine::sampling::SamplingParams;
use crate::engine::sequence::{GenEvent, GenRequest, GenSummary, Job};
use crate::node::Neuron;

/// OpenAI allows at most four stop sequences.
const MAX_STOP_SEQUENCES: usize = 4;

pub async fn chat_completions(
    State(n): State<Arc<Neuron>>,
    headers: axum::http::HeaderMap,
    JsonBody(req): JsonBody<ChatCompletionRequest>,
) -> Result<Response, Failure> {
    let received = Instant::now();
    validate(&req)?;
    let entry = match n.registry.get_or_wait(&req.model).await {
        Some(result) => result?,
        None => {
            return Err(ApiError::not_found(
                "model_not_found",
                format!(
                    "model `{}` is not loaded on this neuron; load it with POST /models/load",
                    req.model
                ),
            )
            .into());
        }
    };
    let sampling = SamplingParams::resolve(
        req.temperature,
        req.top_p,
        req.top_k,
        req.repetition_penalty,
        req.seed.unwrap_or_else(rand_seed),
        &entry.sampling,
    );
    let steering = steer(&req, &entry.id, &entry.format)?;
    let (prompt_ids, output) = tokenize_prompt(&entry, &req, &steering).await?;
    let max_new_tokens =
        max_new_tokens(&req, &entry, prompt_ids.len(), n.settings.max_tokens_limit)?;
    let permit = admit(&entry, n.settings.max_queue, n.settings.batch.max_batch)?;

    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    // Events and logs carry the caller's request id when it sends one (the
    // gateway does), so one request reads as one across the fleet.
    let event_id = caller_request_id(&headers).unwrap_or_else(|| id.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    n.worker.submit(Job {
        entry: entry.clone(),
        request: GenRequest {
            id: event_id,
            prompt_ids,
            max_new_tokens,
            sampling,
            stop: req.stop_sequences(),
            output,
            single_call: steering.single_call,
            reasoning_budget: steering.reasoning_budget.filter(|_| entry.format.reasoning),
        },
        tx,
        received,
        permit,
    })?;
    let created = cortex_common::now_ms() / 1000;
    if req.is_stream() {
        Ok(
            stream_response(id, created, req.model.clone(), req.include_usage(), rx)
                .into_response(),
        )
    } else {
        Ok(collect_response(id, created, req.model.clone(), rx)
            .await?
            .into_response())
    }
}

/// A usable `x-request-id`: 1 to 128 characters of `[A-Za-z0-9._:-]`;
/// anything else is ignored (it would land in events and logs).
/// A fresh tool call id (`call_…`).
fn call_id() -> String {
    format!("call_{}", uuid::Uuid::new_v4().simple())
}

fn caller_request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    let v = headers.get("x-request-id")?.to_str().ok()?;
    let ok = (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    ok.then(|| v.to_string())
}

/// `POST /v1/chat/count_tokens`: how many prompt tokens a chat request
/// would take, with the model's real chat template and tokenizer.
pub async fn count_tokens(
    State(n): State<Arc<Neuron>>,
    JsonBody(req): JsonBody<ChatCompletionRequest>,
) -> Result<Json<serde_json::Value>, Failure> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "invalid_value",
            "field `messages`: must contain at least one message",
        )
        .into());
    }
    check_len("model", &req.model, MAX_MODEL_ID_BYTES)?;
    let entry = match n.registry.get_or_wait(&req.model).await {
        Some(result) => result?,
        None => {
            return Err(ApiError::not_found(
                "model_not_found",
                format!(
                    "model `{}` is not loaded on this neuron; load it with POST /models/load",
                    req.model
                ),
            )
            .into());
        }
    };
    let steering = steer(&req, &entry.id, &entry.format)?;
    let (ids, _) = tokenize_prompt(&entry, &req, &steering).await?;
    Ok(Json(
        serde_json::json!({ "model": req.model, "prompt_tokens": ids.len() }),
    ))
}

fn validate(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    let bad = |field: &str, why: &str| {
        ApiError::invalid("invalid_value", format!("field `{field}`: {why}"))
    };
    if req.model.trim().is_empty() {
        return Err(bad("model", "must name a model"));
    }
    check_len("model", &req.model, MAX_MODEL_ID_BYTES)?;
    if req.messages.is_empty() {
        return Err(bad("messages", "must contain at least one message"));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant" | "tool"
        ) {
            return Err(bad(
                &format!("messages[{i}].role"),
                "must be one of system, developer, user, assistant, tool",
            ));
        }
    }
    if let Some(n) = req.n
        && n != 1
    {
        return Err(bad("n", "only n = 1 is supported"));
    }
    if let Some(t) = req.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(bad("temperature", "must be between 0 and 2"));
    }
    if let Some(p) = req.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(bad("top_p", "must be greater than 0 and at most 1"));
    }
    if req.top_k == Some(0) {
        return Err(bad(
            "top_k",
            "must be at least 1 (omit it to disable top-k)",
        ));
    }
    if let Some(r) = req.repetition_penalty
        && !(r > 0.0 && r <= 10.0)
    {
        return Err(bad(
            "repetition_penalty",
            "must be greater than 0 and at most 10 (1 = off)",
        ));
    }
    for (field, v) in [
        ("frequency_penalty", req.frequency_penalty),
        ("presence_penalty", req.presence_penalty),
    ] {
        if let Some(v) = v
            && v != 0.0
        {
            return Err(bad(
                field,
                "is not supported; use `repetition_penalty` instead",
            ));
        }
    }
    let stops = req.stop_sequences();
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(bad("stop", "at most 4 stop sequences"));
    }
    if stops.iter().any(String::is_empty) {
        return Err(bad("stop", "stop sequences must not be empty"));
    }
    if req.max_new_tokens() == Some(0) {
        let field = if req.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(bad(field, "must be at least 1"));
    }
    Ok(())
}

fn rand_seed() -> u64 {
    let id = uuid::Uuid::new_v4();
    let (hi, lo) = id.as_u64_pair();
    hi ^ lo
}

/// Renders the chat template and tokenizes, off the async runtime; with it,
/// how the output is to be read (a thought the template opened, the tool
/// calls to parse, the start of a required call written after the prompt).
async fn tokenize_prompt(
    entry: &Arc<ModelEntry>,
    req: &ChatCompletionRequest,
    steering: &Steering,
) -> Result<(Vec<u32>, OutputFormat), ApiError> {
    let entry = entry.clone();
    let mut messages: Vec<ChatMessage> = req.messages.clone();
    if let Some(tools) = entry.format.tools {
        tools.template_call_ids(&mut messages);
    }
    let tools = req.tools.clone();
    let steering = steering.clone();
    tokio::task::spawn_blocking(move || {
        for (i, m) in messages.iter().enumerate() {
            if let Some(MessageContent::Parts(_)) = &m.content
                && m.content
                    .as_ref()
                    .and_then(MessageContent::as_text)
                    .is_none()
            {
                return Err(ApiError::invalid(
                    "unsupported_content",
                    format!("field `messages[{i}].content`: only text parts are supported"),
                ));
            }
        }
        let mut primed = String::new();
        let encoded = entry
            .prompt
            .encode_with(
                &entry.template,
                &messages,
                tools.as_deref(),
                steering.kwargs.as_ref(),
                |tail| {
                    primed = entry.format.primed(tail, &steering.prime);
                    primed.clone()
                },
            )
            .map_err(|e| match e {
                PromptError::Template(e) => ApiError::invalid("invalid_messages", e.to_string()),
                PromptError::Tokenizer(e) => ApiError::internal(format!("tokenizer failed: {e}")),
            })?;
        let output = entry
            .format
            .for_request(&encoded.tail, steering.parse_tools, primed);
        Ok((encoded.ids, output))
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))?
}

fn max_new_tokens(
    req: &ChatCompletionRequest,
    entry: &ModelEntry,
    prompt_len: usize,
    limit: Option<u32>,
) -> Result<usize, ApiError> {
    let context = entry.context_length;
    if prompt_len >= context {
        return Err(ApiError::invalid(
            "context_length_exceeded",
            format!(
                "the prompt is {prompt_len} tokens; model `{}` has a context of {context} tokens",
                entry.id
            ),
        ));
    }
    let room = context - prompt_len;
    let cap = limit.map(|l| l as usize).unwrap_or(context);
    let field = if req.max_completion_tokens.is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    match req.max_new_tokens() {
        None => Ok(room.min(cap)),
        Some(asked) if asked as usize > cap => Err(ApiError::invalid(
            "invalid_value",
            format!("field `{field}`: {asked} is more than this model allows ({cap})"),
        )),
        Some(asked) if asked as usize > room => Err(ApiError::invalid(
            "context_length_exceeded",
            format!(
                "model `{}` has a context of {context} tokens: the prompt is {prompt_len} tokens \
                 and `{field}` asks for {asked} more; shorten the prompt or lower `{field}` \
                 to at most {room}",
                entry.id
            ),
        )),
        Some(asked) => Ok(asked as usize),
    }
}

async fn collect_response(
    id: String,
    created: u64,
    model: String,
    mut rx: mpsc::UnboundedReceiver<GenEvent>,
) -> Result<Json<ChatCompletionResponse>, ApiError> {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            GenEvent::Delta(d) => text.push_str(&d),
            GenEvent::Reasoning(r) => reasoning.push_str(&r),
            GenEvent::ToolCall(c) => calls.push(c.to_openai(call_id())),
            GenEvent::Done(summary) => {
                // OpenAI's shape: a turn of only tool calls has `content: null`.
                let content =
                    (!text.is_empty() || calls.is_empty()).then_some(MessageContent::Text(text));
                let message = ChatMessage {
                    role: "assistant".into(),
                    content,
                    tool_calls: (!calls.is_empty()).then_some(calls),
                    reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                    ..Default::default()
                };
                return Ok(Json(ChatCompletionResponse {
                    id,
                    object: "chat.completion".into(),
                    created,
                    model,
                    choices: vec![ChatChoice {
                        index: 0,
                        message,
                        finish_reason: Some(summary.finish_reason),
                        stop_reason: summary.stop_sequence.clone(),
                    }],
                    usage: usage(&summary),
                }));
            }
            GenEvent::Error(e) => {
                return Err(ApiError::internal(format!("generation failed: {e}")));
            }
        }
    }
    Err(ApiError::internal("generation ended without a result"))
}

fn usage(s: &GenSummary) -> Usage {
    Usage::new(s.prompt_tokens, s.completion_tokens)
        .with_cached(s.cached_tokens)
        .with_reasoning(s.reasoning_tokens)
}

fn stream_response(
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    mut rx: mpsc::UnboundedReceiver<GenEvent>,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let chunk = move |delta: ChunkDelta,
                      finish: Option<FinishReason>,
                      stop_reason: Option<String>,
                      usage: Option<Usage>| {
        ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.clone(),
            choices: if usage.is_some() {
                vec![]
            } else {
                vec![ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason: finish,
                    stop_reason,
                }]
            },
            usage,
        }
    };
    let data = |c: &ChatCompletionChunk| {
        SseEvent::default().data(serde_json::to_string(c).unwrap_or_else(|_| "{}".into()))
    };
    let stream = async_stream::stream! {
        yield Ok(data(&chunk(ChunkDelta { role: Some("assistant".into()), content: Some(String::new()), ..Default::default() }, None, None, None)));
        let mut ended = false;
        let mut calls = 0u32;
        while let Some(event) = rx.recv().await {
            match event {
                GenEvent::Delta(text) => {
                    yield Ok(data(&chunk(ChunkDelta { content: Some(text), ..Default::default() }, None, None, None)));
                }
                GenEvent::Reasoning(text) => {
                    yield Ok(data(&chunk(ChunkDelta { reasoning_content: Some(text), ..Default::default() }, None, None, None)));
                }
                GenEvent::ToolCall(call) => {
                    // OpenAI's order: id and name first, then the arguments.
                    let index = calls;
                    calls += 1;
                    let head = ToolCallDelta {
                        index,
                        id: Some(call_id()),
                        kind: Some("function".into()),
                        function: Some(FunctionCallDelta { name: Some(call.name.clone()), arguments: Some(String::new()) }),
                    };
                    let args = ToolCallDelta {
                        index,
                        function: Some(FunctionCallDelta { name: None, arguments: Some(call.arguments_json()) }),
                        ..Default::default()
                    };
                    for delta in [head, args] {
                        yield Ok(data(&chunk(ChunkDelta { tool_calls: Some(vec![delta]), ..Default::default() }, None, None, None)));
                    }
                }
                GenEvent::Done(summary) => {
                    yield Ok(data(&chunk(ChunkDelta::default(), Some(summary.finish_reason), summary.stop_sequence.clone(), None)));
                    if include_usage {
                        yield Ok(data(&chunk(ChunkDelta::default(), None, None, Some(usage(&summary)))));
                    }
                    ended = true;
                    break;
                }
                GenEvent::Error(e) => {
                    let err = ApiError::internal(format!("generation failed: {e}"));
                    yield Ok(SseEvent::default().data(serde_json::to_string(&err.envelope()).unwrap_or_default()));
                    ended = true;
                    break;
                }
            }
        }
        if !ended {
            let err = ApiError::internal("generation ended without a result");
            yield Ok(SseEvent::default().data(serde_json::to_string(&err.envelope()).unwrap_or_default()));
        }
        yield Ok(SseEvent::default().data("[DONE]"));
    };
    // Comments keep the connection visibly alive during a long prefill.
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::caller_request_id;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn only_sane_request_ids_are_adopted() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-request-id", HeaderValue::from_str(v).unwrap());
            caller_request_id(&h)
        };
        assert_eq!(with("gw-12-3").as_deref(), Some("gw-12-3"));
        assert_eq!(with("a b"), None);
        assert_eq!(with("x;rm"), None);
        assert_eq!(with(&"a".repeat(129)), None);
        assert_eq!(caller_request_id(&HeaderMap::new()), None);
    }
}
