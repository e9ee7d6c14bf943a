//! One request being generated, as a state machine the scheduler steps:
//! it starts from the longest cached prefix, hands out prompt chunks to
//! prefill, then one token at a time; it takes each pass's logits, samples,
//! detokenizes incrementally, applies stop sequences, splits the text into
//! reasoning, answer and tool calls, streams those to the request's handler
//! and measures itself. When it ends, its KV cache goes back to the prompt
//! cache and its events are emitted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::engine::tool_calls::ParsedToolCall;
use candle_core::Tensor;
use cortex_common::event::{EventKind, RequestEnd};
use cortex_common::openai::FinishReason;
use tokio::sync::mpsc::UnboundedSender;

use super::admission::Permit;
use super::detokenize::IncrementalDecoder;
use super::output::{Output, OutputFormat, OutputParser};
use super::registry::ModelEntry;
use super::sampling::{Sampler, SamplingParams};
use super::stop::{StopMatcher, StopOutcome};
use crate::events::EventBus;
use crate::runtime::{KvCache, StepKind};

/// What the scheduler needs to know about a request.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub id: String,
    pub prompt_ids: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// How to read the model's output (reasoning, tool calls).
    pub output: OutputFormat,
    /// At most one tool call: generation ends after the first.
    pub single_call: bool,
    /// Reasoning tokens the model may spend before its thought is closed
    /// (its `</think>` forced) and it answers.
    pub reasoning_budget: Option<u32>,
}

/// Measurements of a finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenSummary {
    pub finish_reason: FinishReason,
    pub prompt_tokens: u32,
    /// Prompt tokens taken from the prompt cache instead of prefilled.
    pub cached_tokens: u32,
    pub completion_tokens: u32,
    /// Completion tokens spent thinking (the thought, not its markers).
    pub reasoning_tokens: u32,
    pub ttft_ms: Option<f64>,
    pub prefill_tok_s: Option<f64>,
    pub decode_tok_s: Option<f64>,
    /// The stop sequence that ended generation, when one did.
    pub stop_sequence: Option<String>,
}

/// What the scheduler sends back to the request's handler.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// Answer text.
    Delta(String),
    /// Reasoning text.
    Reasoning(String),
    ToolCall(ParsedToolCall),
    Done(GenSummary),
    Error(String),
}

/// One admitted request on its way to the device.
pub struct Job {
    pub entry: Arc<ModelEntry>,
    pub request: GenRequest,
    pub tx: UnboundedSender<GenEvent>,
    pub received: Instant,
    /// Frees the request's queue place when the job is done or dropped.
    pub permit: Permit,
}

/// Decrements the model's `active` count however the sequence ends.
struct ActiveGuard(Arc<ModelEntry>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a sequence stands after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Finished,
}

pub struct Sequence {
    entry: Arc<ModelEntry>,
    request: GenRequest,
    tx: UnboundedSender<GenEvent>,
    received: Instant,
    _permit: Permit,
    _active: ActiveGuard,
    cache: KvCache,
    /// Prompt tokens fed so far (cached ones included).
    fed: usize,
    /// Prompt plus generated tokens.
    context: Vec<u32>,
    /// The token sampled last, to be fed next.
    next: Option<u32>,
    sampler: Sampler,
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    output: OutputParser,
    /// A tool call was emitted: a normal end is `tool_calls`.
    called_tools: bool,
    /// Tool-call markup the parser could not read, returned as text.
    unparsed_calls: u32,
    /// Tokens to feed next instead of sampling (a thought's forced close).
    forced: VecDeque<u32>,
    /// The thought was closed for its budget (once is enough).
    closed_for_budget: bool,
    summary: GenSummary,
    prefill_started: Option<Instant>,
    first_token_at: Option<Instant>,
    last_token_at: Option<Instant>,
}

impl Sequence {
    /// Starts a job: takes its best prompt-cache prefix and announces it.
    /// `None` when its client has already gone (it is accounted for here).
    pub fn start(job: Job, bus: &EventBus) -> Option<Sequence> {
        let Job {
            entry,
            request,
            tx,
            received,
            permit,
        } = job;
        let prompt_tokens = request.prompt_ids.len() as u32;
        if request.prompt_ids.is_empty() {
            // Nothing to run: it would never be scheduled.
            let _ = tx.send(GenEvent::Error("the prompt has no tokens".into()));
            return None;
        }
        if tx.is_closed() {
            tracing::info!(request_id = %request.id, model = %entry.id, ended = "client_gone", "request dropped before it started");
            bus.emit(EventKind::RequestFinished {
                request_id: request.id.clone(),
                model: entry.id.clone(),
                prompt_tokens,
                cached_tokens: 0,
                completion_tokens: 0,
                reasoning_tokens: 0,
                ttft_ms: None,
                prefill_tok_s: None,
                decode_tok_s: None,
                duration_ms: received.elapsed().as_secs_f64() * 1000.0,
                finish_reason: None,
                ended: RequestEnd::ClientGone,
                error: None,
            });
            return None;
        }
        entry.active.fetch_add(1, Ordering::AcqRel);
        let active = ActiveGuard(entry.clone());
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
        Some(Sequence {
            sampler: Sampler::new(&request.sampling),
            decoder: IncrementalDecoder::keeping(
                entry.tokenizer.clone(),
                entry.kept_tokens.clone(),
            ),
            stop: StopMatcher::new(request.stop.clone()),
            output: OutputParser::new(&request.output),
            called_tools: false,
            unparsed_calls: 0,
            forced: VecDeque::new(),
            closed_for_budget: false,
            context: request.prompt_ids.clone(),
            summary: GenSummary {
                finish_reason: FinishReason::Length,
                prompt_tokens,
                cached_tokens: cached as u32,
                completion_tokens: 0,
                reasoning_tokens: 0,
                ttft_ms: None,
                prefill_tok_s: None,
                decode_tok_s: None,
                stop_sequence: None,
            },
            entry,
            request,
            tx,
            received,
            _permit: permit,
            _active: active,
            cache,
            fed: cached,
            next: None,
            prefill_started: None,
            first_token_at: None,
            last_token_at: None,
        })
    }

    pub fn entry(&self) -> &Arc<ModelEntry> {
        &self.entry
    }

    pub fn id(&self) -> &str {
        &self.request.id
    }

    /// Still prefilling its prompt.
    pub fn prefilling(&self) -> bool {
        self.fed < self.request.prompt_ids.len()
    }

    /// Prompt tokens left to prefill.
    pub fn prompt_left(&self) -> usize {
        self.request.prompt_ids.len() - self.fed
    }

    pub fn client_gone(&self) -> bool {
        self.tx.is_closed()
    }

    /// The tokens to run in the next pass and their kind: up to `budget`
    /// prompt tokens while prefilling (the prompt's last token always in a
    /// pass of its own, as a decode step), else the token sampled last.
    pub fn input(&mut self, budget: usize) -> (Vec<u32>, StepKind) {
        let n = self.request.prompt_ids.len();
        if self.fed + 1 < n {
            self.prefill_started.get_or_insert_with(Instant::now);
            let end = (self.fed + budget.max(1)).min(n - 1);
            (
                self.request.prompt_ids[self.fed..end].to_vec(),
                StepKind::Prefill,
            )
        } else if self.fed + 1 == n {
            self.prefill_started.get_or_insert_with(Instant::now);
            (vec![self.request.prompt_ids[n - 1]], StepKind::Decode)
        } else {
            (self.next.into_iter().collect(), StepKind::Decode)
        }
    }

    pub fn cache_mut(&mut self) -> &mut KvCache {
        &mut self.cache
    }

    /// Takes the logits of a pass that ran `ran` tokens of this sequence.
    pub fn accept(&mut self, ran: usize, logits: &Tensor, bus: &EventBus) -> Status {
        match self.accept_inner(ran, logits, bus) {
            Ok(status) => status,
            Err(e) => {
                self.fail(&e.to_string(), bus);
                Status::Finished
            }
        }
    }

    fn accept_inner(
        &mut self,
        ran: usize,
        logits: &Tensor,
        bus: &EventBus,
    ) -> Result<Status, Box<dyn std::error::Error + Send + Sync>> {
        if self.prefilling() {
            self.fed += ran;
            if self.prefilling() {
                return Ok(Status::Running);
            }
            // The prompt is in: these logits give the first token.
            let now = Instant::now();
            let ttft_ms = now.duration_since(self.received).as_secs_f64() * 1000.0;
            self.summary.ttft_ms = Some(ttft_ms);
            let prefill_secs = self
                .prefill_started
                .map(|t| now.duration_since(t).as_secs_f64())
                .unwrap_or(0.0);
            let prefilled = self.request.prompt_ids.len() - self.summary.cached_tokens as usize;
            self.summary.prefill_tok_s =
                (prefill_secs > 0.0).then(|| prefilled as f64 / prefill_secs);
            self.first_token_at = Some(now);
            bus.emit(EventKind::RequestFirstToken {
                request_id: self.request.id.clone(),
                model: self.entry.id.clone(),
                ttft_ms,
            });
        } else if let Some(t) = self.next.take() {
            self.context.push(t);
        }
        self.close_a_spent_thought();
        let next = match self.forced.pop_front() {
            Some(forced) => forced,
            None => self.sampler.next(logits, &self.context)?,
        };
        if self.entry.eos_token_ids.contains(&next) {
            self.summary.finish_reason = FinishReason::Stop;
            self.finish(RequestEnd::Done, bus);
            return Ok(Status::Finished);
        }
        self.summary.completion_tokens += 1;
        self.last_token_at = Some(Instant::now());
        self.next = Some(next);
        let mut stopped = false;
        let was_reasoning = self.output.in_reasoning();
        if let Some(text) = self.decoder.push(next)? {
            match self.stop.push(&text) {
                StopOutcome::Continue(out) => self.send_delta(out),
                StopOutcome::Stopped(out) => {
                    self.send_delta(out);
                    stopped = true;
                }
            }
        }
        // A token is reasoning when the thought was open before it and
        // still is after it: the markers that open and close it are not.
        if was_reasoning && self.output.in_reasoning() {
            self.summary.reasoning_tokens += 1;
        }
        if stopped || (self.request.single_call && self.called_tools) {
            // After the one call allowed, the answer is over.
            self.summary.finish_reason = FinishReason::Stop;
            self.finish(RequestEnd::Done, bus);
            return Ok(Status::Finished);
        }
        if self.tx.is_closed() {
            self.finish(RequestEnd::ClientGone, bus);
            return Ok(Status::Finished);
        }
        if self.summary.completion_tokens as usize >= self.request.max_new_tokens
            || self.context.len() + 1 >= self.entry.context_length
        {
            self.summary.finish_reason = FinishReason::Length;
            self.finish(RequestEnd::Done, bus);
            return Ok(Status::Finished);
        }
        Ok(Status::Running)
    }

    /// Once the thought has spent its budget, its closing marker is what
    /// the model writes next; the answer follows.
    fn close_a_spent_thought(&mut self) {
        let Some(budget) = self.request.reasoning_budget else {
            return;
        };
        if !self.closed_for_budget
            && self.output.in_reasoning()
            && self.summary.reasoning_tokens >= budget
        {
            self.closed_for_budget = true;
            self.forced.extend(&self.entry.think_close);
            tracing::debug!(request_id = %self.request.id, budget, "reasoning budget spent; closing the thought");
        }
    }

    /// Sends released text on, as reasoning, answer or tool calls.
    fn send_delta(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        let mut out = Vec::new();
        self.output.push(&text, &mut out);
        self.send_outputs(out);
    }

    fn send_outputs(&mut self, out: Vec<Output>) {
        for o in out {
            let event = match o {
                Output::Content(t) => {
                    if self
                        .request
                        .output
                        .tools
                        .is_some_and(|f| f.looks_like_a_call(&t))
                    {
                        // The parser keeps a call it cannot read as text;
                        // `finish` says so on the event stream.
                        self.unparsed_calls += 1;
                        tracing::warn!(request_id = %self.request.id, model = %self.entry.id,
                            "the model wrote a tool call that does not parse; it is returned as text");
                    }
                    GenEvent::Delta(t)
                }
                Output::Reasoning(t) => GenEvent::Reasoning(t),
                Output::ToolCall(c) => {
                    if self.request.single_call && self.called_tools {
                        tracing::debug!(request_id = %self.request.id, name = %c.name,
                            "a second tool call dropped (parallel_tool_calls: false)");
                        continue;
                    }
                    self.called_tools = true;
                    GenEvent::ToolCall(c)
                }
            };
            let _ = self.tx.send(event);
        }
    }

    /// Ends the sequence because its client left.
    pub fn cancel(&mut self, bus: &EventBus) {
        self.finish(RequestEnd::ClientGone, bus);
    }

    /// Ends the sequence with an error (a failed pass).
    pub fn fail(&mut self, error: &str, bus: &EventBus) {
        let message = client_message(error, &self.request.id);
        tracing::error!(request_id = %self.request.id, model = %self.entry.id, error = %message, ended = "error", "generation failed");
        let _ = self.tx.send(GenEvent::Error(message.clone()));
        self.emit_finished(RequestEnd::Error, Some(message), bus);
    }

    fn finish(&mut self, end: RequestEnd, bus: &EventBus) {
        if end == RequestEnd::Done {
            if self.stop.matched().is_none() {
                self.release_held_text();
            }
            let mut out = Vec::new();
            self.output.finish(&mut out);
            self.send_outputs(out);
            if self.called_tools && self.summary.finish_reason == FinishReason::Stop {
                self.summary.finish_reason = FinishReason::ToolCalls;
            }
            self.summary.stop_sequence = self.stop.matched().map(str::to_string);
        }
        if let (Some(first), Some(last)) = (self.first_token_at, self.last_token_at) {
            let secs = last.duration_since(first).as_secs_f64();
            if self.summary.completion_tokens > 1 && secs > 0.0 {
                self.summary.decode_tok_s =
                    Some((self.summary.completion_tokens - 1) as f64 / secs);
            }
        }
        match end {
            RequestEnd::Done => {
                tracing::info!(request_id = %self.request.id, model = %self.entry.id, ended = "done",
                    completion_tokens = self.summary.completion_tokens,
                    cached_tokens = self.summary.cached_tokens,
                    decode_tok_s = self.summary.decode_tok_s.unwrap_or(0.0), "request finished");
                let _ = self.tx.send(GenEvent::Done(self.summary.clone()));
            }
            _ => {
                tracing::info!(request_id = %self.request.id, model = %self.entry.id, ended = "client_gone",
                    completion_tokens = self.summary.completion_tokens, "client went away; generation stopped");
            }
        }
        if let Some(tok_s) = self.summary.decode_tok_s {
            *self
                .entry
                .last_decode_tok_s
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(tok_s);
        }
        if self.unparsed_calls > 0 {
            bus.emit(EventKind::ToolCallUnparsed {
                request_id: self.request.id.clone(),
                model: self.entry.id.clone(),
                count: self.unparsed_calls,
            });
        }
        self.emit_finished(end, None, bus);
    }

    /// Whatever the decoder and the stop matcher still hold, at a normal end.
    fn release_held_text(&mut self) {
        let rest = match self.decoder.flush() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(request_id = %self.request.id, error = %e, "detokenizer flush failed");
                None
            }
        };
        match rest {
            Some(rest) => match self.stop.push(&rest) {
                StopOutcome::Continue(out) => {
                    let tail = self.stop.flush();
                    self.send_delta(out + &tail);
                }
                StopOutcome::Stopped(out) => {
                    self.send_delta(out);
                    self.summary.finish_reason = FinishReason::Stop;
                }
            },
            None => {
                let tail = self.stop.flush();
                self.send_delta(tail);
            }
        }
    }

    fn emit_finished(&mut self, end: RequestEnd, error: Option<String>, bus: &EventBus) {
        let s = &self.summary;
        bus.emit(EventKind::RequestFinished {
            request_id: self.request.id.clone(),
            model: self.entry.id.clone(),
            prompt_tokens: s.prompt_tokens,
            cached_tokens: s.cached_tokens,
            completion_tokens: s.completion_tokens,
            reasoning_tokens: s.reasoning_tokens,
            ttft_ms: s.ttft_ms,
            prefill_tok_s: s.prefill_tok_s,
            decode_tok_s: s.decode_tok_s,
            duration_ms: self.received.elapsed().as_secs_f64() * 1000.0,
            finish_reason: (end == RequestEnd::Done).then(|| s.finish_reason.into()),
            ended: end,
            error,
        });
    }

    /// Hands the KV cache to the prompt cache, up to the prefill boundary:
    /// the prompt tokens that ran as prompt rows (all but the last). Those
    /// positions are what a later request would compute itself, bit for bit,
    /// so reusing them never changes an answer; the last prompt token and
    /// the generated ones ran as decode rows and are recomputed.
    pub fn retire(self) {
        let Sequence {
            entry,
            mut context,
            cache,
            request,
            ..
        } = self;
        let boundary = request.prompt_ids.len().saturating_sub(1);
        let ran = cache.len().min(boundary);
        context.truncate(ran);
        entry.prompt_cache().insert(context, cache);
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
