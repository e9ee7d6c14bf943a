//! One generation, on the device worker: start from the longest cached
//! prefix, prefill the rest, then decode token by token with sampling,
//! incremental detokenization and stop sequences, streaming text deltas to
//! the request's handler and measuring itself; the sequence's KV cache goes
//! back to the prompt cache at the end.

use std::sync::atomic::Ordering;
use std::time::Instant;

use cortex_common::event::{EventKind, RequestEnd};
use cortex_common::openai::FinishReason;

use super::detokenize::IncrementalDecoder;
use super::sampling::{Sampler, SamplingParams};
use super::stop::{StopMatcher, StopOutcome};
use super::worker::Job;
use crate::events::EventBus;

/// What the worker needs to know about a request.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub id: String,
    pub prompt_ids: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
}

/// Measurements of a finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenSummary {
    pub finish_reason: FinishReason,
    pub prompt_tokens: u32,
    /// Prompt tokens taken from the prompt cache instead of prefilled.
    pub cached_tokens: u32,
    pub completion_tokens: u32,
    pub ttft_ms: Option<f64>,
    pub prefill_tok_s: Option<f64>,
    pub decode_tok_s: Option<f64>,
    /// The stop sequence that ended generation, when one did.
    pub stop_sequence: Option<String>,
}

/// What the worker sends back to the request's handler.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    Delta(String),
    Done(GenSummary),
    Error(String),
}

/// Decrements `active` however the generation ends.
struct ActiveGuard<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Outcome {
    end: RequestEnd,
    summary: GenSummary,
    error: Option<String>,
}

pub fn run(job: Job, bus: &EventBus) {
    let Job {
        entry,
        request,
        tx,
        received,
        permit,
    } = job;
    let prompt_tokens = request.prompt_ids.len() as u32;
    if tx.is_closed() {
        // The client left while the request waited in the queue.
        tracing::info!(request_id = %request.id, model = %entry.id, ended = "client_gone", "request dropped before it started");
        bus.emit(EventKind::RequestFinished {
            request_id: request.id.clone(),
            model: entry.id.clone(),
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens: 0,
            ttft_ms: None,
            prefill_tok_s: None,
            decode_tok_s: None,
            duration_ms: received.elapsed().as_secs_f64() * 1000.0,
            finish_reason: None,
            ended: RequestEnd::ClientGone,
            error: None,
        });
        drop(permit);
        return;
    }
    entry.active.fetch_add(1, Ordering::AcqRel);
    let _active = ActiveGuard(&entry.active);
    let start = entry
        .prompt_cache()
        .start(&request.prompt_ids, || entry.model.new_cache());
    let (cache, cached) = match start {
        Ok(s) => (s.cache, s.reused),
        Err(e) => {
            tracing::warn!(request_id = %request.id, error = %e, "prompt cache unusable; starting fresh");
            (entry.model.new_cache(), 0)
        }
    };
    bus.emit(EventKind::RequestStarted {
        request_id: request.id.clone(),
        model: entry.id.clone(),
        prompt_tokens,
        cached_tokens: cached as u32,
    });
    let mut first_token_emitted = false;
    let mut on_first_token = |ttft_ms: f64| {
        if !first_token_emitted {
            first_token_emitted = true;
            bus.emit(EventKind::RequestFirstToken {
                request_id: request.id.clone(),
                model: entry.id.clone(),
                ttft_ms,
            });
        }
    };
    let outcome = generate(
        &entry,
        &request,
        cache,
        cached,
        &tx,
        received,
        &mut on_first_token,
    );
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => Outcome {
            end: RequestEnd::Error,
            summary: GenSummary {
                finish_reason: FinishReason::Stop,
                prompt_tokens,
                cached_tokens: cached as u32,
                completion_tokens: 0,
                ttft_ms: None,
                prefill_tok_s: None,
                decode_tok_s: None,
                stop_sequence: None,
            },
            error: Some(client_message(&e.to_string(), &request.id)),
        },
    };
    match (&outcome.end, &outcome.error) {
        (_, Some(err)) => {
            tracing::error!(request_id = %request.id, model = %entry.id, error = %err, ended = "error", "generation failed");
            let _ = tx.send(GenEvent::Error(err.clone()));
        }
        (RequestEnd::ClientGone, None) => {
            tracing::info!(request_id = %request.id, model = %entry.id, ended = "client_gone", completion_tokens = outcome.summary.completion_tokens, "client went away; generation stopped");
        }
        _ => {
            tracing::info!(request_id = %request.id, model = %entry.id, ended = "done",
                completion_tokens = outcome.summary.completion_tokens,
                decode_tok_s = outcome.summary.decode_tok_s.unwrap_or(0.0), "request finished");
            let _ = tx.send(GenEvent::Done(outcome.summary.clone()));
        }
    }
    if let Some(tok_s) = outcome.summary.decode_tok_s {
        *entry
            .last_decode_tok_s
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tok_s);
    }
    let s = &outcome.summary;
    bus.emit(EventKind::RequestFinished {
        request_id: request.id.clone(),
        model: entry.id.clone(),
        prompt_tokens: s.prompt_tokens,
        cached_tokens: s.cached_tokens,
        completion_tokens: s.completion_tokens,
        ttft_ms: s.ttft_ms,
        prefill_tok_s: s.prefill_tok_s,
        decode_tok_s: s.decode_tok_s,
        duration_ms: received.elapsed().as_secs_f64() * 1000.0,
        finish_reason: (outcome.end == RequestEnd::Done).then(|| finish_name(s.finish_reason)),
        ended: outcome.end,
        error: outcome.error.clone(),
    });
    drop(permit);
}

fn finish_name(r: FinishReason) -> String {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
    }
    .to_string()
}

/// Runs one request on `cache`, which already holds the first `cached`
/// prompt tokens; hands the cache to the prompt cache when it ends.
fn generate(
    entry: &super::registry::ModelEntry,
    request: &GenRequest,
    mut cache: crate::runtime::KvCache,
    cached: usize,
    tx: &tokio::sync::mpsc::UnboundedSender<GenEvent>,
    received: Instant,
    on_first_token: &mut dyn FnMut(f64),
) -> Result<Outcome, Box<dyn std::error::Error + Send + Sync>> {
    let model = &entry.model;
    let prompt_tokens = request.prompt_ids.len();
    let mut summary = GenSummary {
        finish_reason: FinishReason::Length,
        prompt_tokens: prompt_tokens as u32,
        cached_tokens: cached as u32,
        completion_tokens: 0,
        ttft_ms: None,
        prefill_tok_s: None,
        decode_tok_s: None,
        stop_sequence: None,
    };
    let mut sampler = Sampler::new(&request.sampling);
    let mut decoder = IncrementalDecoder::new(&entry.tokenizer);
    let mut stop = StopMatcher::new(request.stop.clone());
    let mut context = request.prompt_ids.clone();

    let prefill_start = Instant::now();
    let logits = model.forward(&request.prompt_ids[cached..], &mut cache)?;
    let mut next = sampler.next(&logits, &context)?;
    let first_token_at = Instant::now();
    let ttft_ms = first_token_at.duration_since(received).as_secs_f64() * 1000.0;
    summary.ttft_ms = Some(ttft_ms);
    let prefill_secs = first_token_at.duration_since(prefill_start).as_secs_f64();
    summary.prefill_tok_s =
        (prefill_secs > 0.0).then(|| (prompt_tokens - cached) as f64 / prefill_secs);
    on_first_token(ttft_ms);
    let mut last_token_at = first_token_at;
    let mut end = RequestEnd::Done;
    let mut stopped_by_sequence = false;

    loop {
        if entry.eos_token_ids.contains(&next) {
            summary.finish_reason = FinishReason::Stop;
            break;
        }
        summary.completion_tokens += 1;
        last_token_at = Instant::now();
        context.push(next);
        if let Some(text) = decoder.push(next)? {
            match stop.push(&text) {
                StopOutcome::Continue(out) => send_delta(tx, out),
                StopOutcome::Stopped(out) => {
                    send_delta(tx, out);
                    stopped_by_sequence = true;
                }
            }
        }
        if stopped_by_sequence {
            summary.finish_reason = FinishReason::Stop;
            break;
        }
        if tx.is_closed() {
            end = RequestEnd::ClientGone;
            break;
        }
        if summary.completion_tokens as usize >= request.max_new_tokens
            || context.len() >= entry.context_length
        {
            summary.finish_reason = FinishReason::Length;
            break;
        }
        let logits = model.forward(&[next], &mut cache)?;
        next = sampler.next(&logits, &context)?;
    }
    // The cache holds exactly the tokens that ran: keep it for the next
    // request that shares their prefix.
    let ran = cache.len().min(context.len());
    entry.prompt_cache().insert(context[..ran].to_vec(), cache);
    if end == RequestEnd::Done && !stopped_by_sequence {
        // Release whatever the decoder and the stop matcher still hold.
        if let Some(rest) = decoder.flush()? {
            match stop.push(&rest) {
                StopOutcome::Continue(out) => send_delta(tx, out + &stop.flush()),
                StopOutcome::Stopped(out) => {
                    send_delta(tx, out);
                    summary.finish_reason = FinishReason::Stop;
                }
            }
        } else {
            send_delta(tx, stop.flush());
        }
    }
    summary.stop_sequence = stop.matched().map(str::to_string);
    let decode_secs = last_token_at.duration_since(first_token_at).as_secs_f64();
    if summary.completion_tokens > 1 && decode_secs > 0.0 {
        summary.decode_tok_s = Some((summary.completion_tokens - 1) as f64 / decode_secs);
    }
    Ok(Outcome {
        end,
        summary,
        error: None,
    })
}

fn send_delta(tx: &tokio::sync::mpsc::UnboundedSender<GenEvent>, text: String) {
    if !text.is_empty() {
        let _ = tx.send(GenEvent::Delta(text));
    }
}

/// What a client is told of a failed generation: the first line of the
/// error (a candle error can carry a backtrace after it), with the full
/// text in the log.
fn client_message(full: &str, request_id: &str) -> String {
    let first = full.lines().next().unwrap_or("").trim();
    if first.len() != full.trim().len() {
        tracing::error!(request_id, error = %full, "generation failed (full error)");
    }
    first.to_string()
}
