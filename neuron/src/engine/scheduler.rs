//! Continuous batching on one device: every step runs all admitted
//! sequences of a model in one forward pass — each running sequence's next
//! token, plus chunks of the prompts still prefilling — so new requests join
//! at the next step, finished or cancelled ones leave at once, and a long
//! prompt is prefilled in chunks between the running streams' tokens.
//!
//! Budget per step: at most `max_batch` sequences and `max_batched_tokens`
//! tokens; decoding sequences are served first (one token each), prefill
//! chunks take what is left, sized by time while streams decode (`pacing`).
//! A sequence waits (is not failed) while the device's memory cannot hold
//! its prompt's KV.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use candle_core::Tensor;

use super::pacing::PrefillPacer;
use super::registry::Registry;
use super::sequence::{Job, Sequence, Status};
use crate::events::EventBus;
use crate::runtime::{Step, StepKind};

/// How much one step may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Sequences per step.
    pub max_batch: usize,
    /// Tokens per step (decode tokens plus prefill chunks).
    pub max_batched_tokens: usize,
    /// Prompt tokens one sequence prefills per step at most.
    pub prefill_chunk: usize,
    /// While streams decode, prompt chunks are sized so a step takes about
    /// this long (zero: whole `prefill_chunk`s always).
    pub decode_stall: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_batch: 8,
            max_batched_tokens: 256,
            prefill_chunk: 256,
            decode_stall: Duration::from_millis(250),
        }
    }
}

pub struct Scheduler {
    jobs: Receiver<Job>,
    bus: Arc<EventBus>,
    registry: Arc<Registry>,
    limits: BatchLimits,
    waiting: VecDeque<Job>,
    running: Vec<Sequence>,
    pacer: PrefillPacer,
}

impl Scheduler {
    pub fn new(
        jobs: Receiver<Job>,
        bus: Arc<EventBus>,
        registry: Arc<Registry>,
        limits: BatchLimits,
    ) -> Self {
        Scheduler {
            jobs,
            bus,
            registry,
            limits,
            waiting: VecDeque::new(),
            running: Vec::new(),
            pacer: PrefillPacer::new(limits.decode_stall),
        }
    }

    /// Runs until every sender of jobs is gone and the work is done. A
    /// panic anywhere in a step (outside the forward pass, which has its own
    /// guard) fails the sequences that were running — their clients get an
    /// error — and the loop goes on: the device keeps serving.
    pub fn run(mut self) {
        loop {
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.turn())) {
                Ok(true) => {}
                Ok(false) => break,
                Err(panic) => {
                    let why = format!("the device worker panicked: {}", panic_detail(&panic));
                    tracing::error!(
                        running = self.running.len(),
                        "{why}; failing the running requests and carrying on"
                    );
                    // Their state cannot be trusted: fail them, keep no KV.
                    for mut seq in self.running.drain(..) {
                        seq.fail(&why, &self.bus);
                    }
                }
            }
        }
        tracing::info!("device scheduler stopped");
    }

    /// One turn of the loop; false when there is nothing left to do ever.
    fn turn(&mut self) -> bool {
        if !self.intake() {
            return false;
        }
        self.drop_cancelled();
        self.admit();
        if !self.running.is_empty() {
            self.step();
            failpoint::after_step();
        }
        true
    }

    /// Takes new jobs; blocks when there is nothing to do. False when the
    /// job channel is closed and nothing is left.
    fn intake(&mut self) -> bool {
        if self.running.is_empty() && self.waiting.is_empty() {
            match self.jobs.recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(_) => return false,
            }
        }
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => {
                    return !(self.running.is_empty() && self.waiting.is_empty());
                }
            }
        }
    }

    /// Sequences whose client left stop now and free their KV.
    fn drop_cancelled(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].client_gone() {
                let mut seq = self.running.swap_remove(i);
                seq.cancel(&self.bus);
                seq.retire();
            } else {
                i += 1;
            }
        }
    }

    /// Moves waiting jobs into the batch while there is room, in arrival
    /// order.
    fn admit(&mut self) {
        while self.running.len() < self.limits.max_batch {
            let Some(job) = self.waiting.front() else {
                break;
            };
            let kv =
                job.request.prompt_ids.len() as u64 * job.entry.model.config().kv_bytes_per_token();
            if self.registry.memory_used() + kv > self.registry.memory_limit() {
                // Cached prefixes give way to live requests first.
                job.entry.prompt_cache().clear();
                if !self.running.is_empty()
                    && self.registry.memory_used() + kv > self.registry.memory_limit()
                {
                    // Wait for a running sequence to finish.
                    break;
                }
            }
            let Some(job) = self.waiting.pop_front() else {
                break;
            };
            if let Some(seq) = Sequence::start(job, &self.bus) {
                self.running.push(seq);
            }
        }
    }

    /// One forward pass per model with sequences in the batch.
    fn step(&mut self) {
        let mut budget = self.limits.max_batched_tokens.max(self.running.len());
        // Decode tokens first, so running streams keep flowing; prefill
        // chunks share what is left, oldest sequence first.
        let mut inputs: Vec<Vec<u32>> = vec![Vec::new(); self.running.len()];
        let mut kinds = vec![StepKind::Decode; self.running.len()];
        for (i, seq) in self.running.iter_mut().enumerate() {
            if !seq.prefilling() {
                (inputs[i], kinds[i]) = seq.input(1);
                budget = budget.saturating_sub(inputs[i].len());
            }
        }
        let decoding = inputs.iter().any(|input| !input.is_empty());
        for (i, seq) in self.running.iter_mut().enumerate() {
            if seq.prefilling() && budget > 0 {
                let chunk = self
                    .pacer
                    .cap(&seq.entry().id, decoding, self.limits.prefill_chunk);
                let take = seq.prompt_left().min(chunk).min(budget);
                (inputs[i], kinds[i]) = seq.input(take);
                budget = budget.saturating_sub(inputs[i].len());
            }
        }
        // Group by model: one pass each.
        let mut models: Vec<Arc<super::registry::ModelEntry>> = Vec::new();
        for (i, seq) in self.running.iter().enumerate() {
            if !inputs[i].is_empty() && !models.iter().any(|m| Arc::ptr_eq(m, seq.entry())) {
                models.push(seq.entry().clone());
            }
        }
        let mut finished = Vec::new();
        for model in models {
            let members: Vec<usize> = (0..self.running.len())
                .filter(|&i| !inputs[i].is_empty() && Arc::ptr_eq(self.running[i].entry(), &model))
                .collect();
            let result = {
                let mut steps: Vec<Step<'_>> = Vec::with_capacity(members.len());
                for (i, seq) in self.running.iter_mut().enumerate() {
                    if members.contains(&i) {
                        steps.push(Step {
                            tokens: &inputs[i],
                            cache: seq.cache_mut(),
                            kind: kinds[i],
                        });
                    }
                }
                let started = Instant::now();
                // A panic in a pass fails its sequences, never the device.
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    model.model.forward_batch(&mut steps)
                }));
                let prompt_tokens = members
                    .iter()
                    .filter(|&&i| kinds[i] == StepKind::Prefill)
                    .map(|&i| inputs[i].len())
                    .sum();
                self.pacer
                    .observe(&model.id, prompt_tokens, started.elapsed());
                result
            };
            let logits: Result<Vec<Tensor>, String> = match result {
                Ok(Ok(l)) => Ok(l),
                Ok(Err(e)) => Err(e.to_string()),
                Err(panic) => Err(panic_message(&panic)),
            };
            match logits {
                Ok(logits) => {
                    for (&i, l) in members.iter().zip(&logits) {
                        if self.running[i].accept(inputs[i].len(), l, &self.bus) == Status::Finished
                        {
                            finished.push(i);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(model = %model.id, error = %e, "forward pass failed");
                    for &i in &members {
                        self.running[i].fail(&e, &self.bus);
                        finished.push(i);
                    }
                }
            }
        }
        finished.sort_unstable();
        for i in finished.into_iter().rev() {
            self.running.swap_remove(i).retire();
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    format!("the forward pass panicked: {}", panic_detail(panic))
}

fn panic_detail(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Fault injection for the tests, in debug builds only: with
/// `CORTEX_NEURON_FAILPOINT=panic-after-step` the scheduler panics once,
/// after the first step, outside the forward pass's own guard.
mod failpoint {
    #[cfg(debug_assertions)]
    pub fn after_step() {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicBool, Ordering};
        static ARMED: OnceLock<bool> = OnceLock::new();
        static FIRED: AtomicBool = AtomicBool::new(false);
        let armed = *ARMED.get_or_init(|| {
            std::env::var("CORTEX_NEURON_FAILPOINT").is_ok_and(|v| v == "panic-after-step")
        });
        if armed && !FIRED.swap(true, Ordering::SeqCst) {
            panic!("failpoint panic-after-step");
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn after_step() {}
}
