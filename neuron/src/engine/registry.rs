//! The models of this neuron: which are loading, loaded, or failed; loads
//! are single-flight per model id and checked against the memory budget;
//! `/models` reads this cached state and never waits for a forward pass.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use candle_core::Device;
use cortex_common::error::{ApiError, ErrorKind};
use cortex_common::event::{EventKind, LoadPhase};
use cortex_common::neuron_api::{ModelInfo, ModelState, Progress, SamplingDefaults, UnloadReason};
use tokenizers::Tokenizer;
use tokio::sync::watch;

use super::chat_template::ChatTemplate;
use super::detokenize::KeptTokens;
use super::output::{ModelFormat, THINK_CLOSE};
use super::prompt::PromptEncoder;
use super::sampling;
use crate::events::EventBus;
use crate::model::resolve::{Resolved, Sources, resolve};
use crate::model::{LoadError, LoadedModel, gguf, safetensors};
use crate::runtime::{PromptCache, QuantType, Transformer};

/// Entries the prompt cache keeps per model at most.
const PROMPT_CACHE_ENTRIES: usize = 32;

/// How models are run: settings every load applies.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeOptions {
    /// Prompt-cache budget per model, bytes (0: off).
    pub prompt_cache_bytes: u64,
    /// Prompt tokens per forward pass.
    pub prefill_chunk: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            prompt_cache_bytes: 512 << 20,
            prefill_chunk: crate::runtime::transformer::DEFAULT_PREFILL_CHUNK,
        }
    }
}

/// A resident model.
pub struct ModelEntry {
    pub id: String,
    pub source: String,
    pub architecture: String,
    pub device_id: String,
    pub device: Device,
    /// Bytes of the weights.
    pub weight_bytes: u64,
    pub quant: Option<QuantType>,
    pub unquantized_bytes: Option<u64>,
    pub context_length: usize,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Arc<ChatTemplate>,
    /// Turns conversations into prompt ids; client text never becomes a
    /// special token.
    pub prompt: PromptEncoder,
    pub eos_token_ids: Vec<u32>,
    /// What its output may hold (reasoning, tool calls), from its vocabulary
    /// and template.
    pub format: ModelFormat,
    /// The format's markers that are special tokens: the detokenizer
    /// writes them for the output parser.
    pub kept_tokens: KeptTokens,
    /// The tokens of `</think>`, forced when a thought spends its budget.
    pub think_close: Vec<u32>,
    /// The sampling defaults it publishes; a request's own values win.
    pub sampling: SamplingDefaults,
    /// The weights; shared, immutable. Each sequence has its own KV cache.
    pub model: Arc<Transformer>,
    /// KV caches of recent sequences, reused by prefix.
    pub prompt_cache: Mutex<PromptCache>,
    /// Admitted requests (running + waiting).
    pub in_flight: AtomicU32,
    /// Requests generating right now.
    pub active: AtomicU32,
    pub last_decode_tok_s: Mutex<Option<f64>>,
}

impl ModelEntry {
    fn from_loaded(
        id: &str,
        source: &str,
        device_id: &str,
        m: LoadedModel,
        options: RuntimeOptions,
    ) -> Self {
        let format = ModelFormat::detect(&m.tokenizer, &m.template.source);
        ModelEntry {
            id: id.to_string(),
            source: source.to_string(),
            architecture: m.architecture,
            device_id: device_id.to_string(),
            device: m.device,
            weight_bytes: m.memory_bytes,
            quant: m.quant,
            unquantized_bytes: m.unquantized_bytes,
            context_length: m.context_length,
            prompt: PromptEncoder::new(m.tokenizer.clone()),
            format,
            kept_tokens: kept_tokens(&m.tokenizer, &format),
            think_close: m
                .tokenizer
                .encode(THINK_CLOSE, false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default(),
            tokenizer: m.tokenizer,
            template: m.template,
            eos_token_ids: m.eos_token_ids,
            sampling: m.sampling,
            model: m.model,
            prompt_cache: Mutex::new(PromptCache::new(
                options.prompt_cache_bytes,
                PROMPT_CACHE_ENTRIES,
            )),
            in_flight: AtomicU32::new(0),
            active: AtomicU32::new(0),
            last_decode_tok_s: Mutex::new(None),
        }
    }

    /// Weights plus every live KV cache (running sequences, prompt cache).
    pub fn memory_bytes(&self) -> u64 {
        self.weight_bytes + self.model.kv_bytes()
    }

    pub fn prompt_cache(&self) -> std::sync::MutexGuard<'_, PromptCache> {
        self.prompt_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn info(&self) -> ModelInfo {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        let active = self.active.load(Ordering::Acquire);
        ModelInfo {
            id: self.id.clone(),
            source: self.source.clone(),
            state: ModelState::Loaded,
            architecture: Some(self.architecture.clone()),
            device: self.device_id.clone(),
            memory_bytes: self.memory_bytes(),
            in_flight,
            queue_depth: in_flight.saturating_sub(active),
            decode_tok_s: *self
                .last_decode_tok_s
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            progress: None,
            error: None,
            context_length: Some(self.context_length as u32),
            quant: self.quant.map(|q| q.name().to_string()),
            unquantized_bytes: self.unquantized_bytes,
            kv_cache_bytes: self.model.kv_bytes(),
            prompt_cache_entries: self.prompt_cache().len() as u32,
            sampling: Some(sampling::in_force(&self.sampling)),
        }
    }
}

/// The special tokens among `format`'s markers, with their text.
fn kept_tokens(tokenizer: &Tokenizer, format: &ModelFormat) -> KeptTokens {
    let markers = format.markers();
    let kept = tokenizer
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, t)| t.special && markers.contains(&t.content.as_str()))
        .map(|(id, t)| (id, t.content))
        .collect();
    Arc::new(kept)
}

type LoadOutcome = Option<Result<Arc<ModelEntry>, ApiError>>;

/// How long a failed load stays listed (in `/models` and every
/// `device_stats` event) before it is forgotten.
const FAILED_TTL: Duration = Duration::from_secs(600);
/// Failed loads listed at most; the oldest is forgotten first.
const MAX_FAILED: usize = 32;
/// Longest a load waits for unloaded models still in use to let their
/// memory go, when that is what it lacks.
const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// Longest error message kept for a failed load, bytes.
const MAX_ERROR_BYTES: usize = 1024;

enum Slot {
    Loading {
        source: String,
        /// Bytes set aside for this load once its size is known.
        reserved: u64,
        progress: Progress,
        done: watch::Receiver<LoadOutcome>,
    },
    Loaded(Arc<ModelEntry>),
    Failed {
        source: String,
        error: String,
        /// When it failed: failed loads expire after [`FAILED_TTL`].
        at: Instant,
    },
}

/// Everything behind the registry's lock. A std `Mutex`: it is never held
/// across an `.await`, only for map lookups and arithmetic.
#[derive(Default)]
struct State {
    slots: HashMap<String, Slot>,
    /// Models unloaded while requests still held their weights: their
    /// memory stays counted until the last holder lets go.
    draining: Vec<Weak<ModelEntry>>,
}

impl State {
    /// Bytes taken by resident models, unloaded ones still in use, and
    /// loads in progress.
    fn used(&self) -> u64 {
        let slots: u64 = self
            .slots
            .values()
            .map(|s| match s {
                Slot::Loaded(e) => e.memory_bytes(),
                Slot::Loading { reserved, .. } => *reserved,
                Slot::Failed { .. } => 0,
            })
            .sum();
        let draining: u64 = self
            .draining
            .iter()
            .filter_map(Weak::upgrade)
            .map(|e| e.memory_bytes())
            .sum();
        slots + draining
    }

    /// Bytes of unloaded models that requests still hold.
    fn draining_bytes(&self) -> u64 {
        self.draining
            .iter()
            .filter_map(Weak::upgrade)
            .map(|e| e.memory_bytes())
            .sum()
    }

    /// Forgets expired failures (the oldest beyond [`MAX_FAILED`] too) and
    /// unloaded models nobody holds any more.
    fn prune(&mut self, now: Instant) {
        self.draining.retain(|w| w.strong_count() > 0);
        self.slots.retain(|_, s| match s {
            Slot::Failed { at, .. } => now.duration_since(*at) < FAILED_TTL,
            _ => true,
        });
        let mut failed: Vec<(Instant, String)> = self
            .slots
            .iter()
            .filter_map(|(id, s)| match s {
                Slot::Failed { at, .. } => Some((*at, id.clone())),
                _ => None,
            })
            .collect();
        if failed.len() > MAX_FAILED {
            failed.sort();
            let excess = failed.len() - MAX_FAILED;
            for (_, id) in failed.into_iter().take(excess) {
                self.slots.remove(&id);
            }
        }
    }
}

pub struct Registry {
    state: Mutex<State>,
    device: Device,
    device_id: String,
    /// Memory models may fill, bytes.
    memory_limit: u64,
    bus: Arc<EventBus>,
    options: RuntimeOptions,
    /// The directories loads may read, and the Hub.
    sources: Sources,
}

pub struct LoadResult {
    pub entry: Arc<ModelEntry>,
    /// False when the model was already loaded or another load was joined.
    pub changed: bool,
    pub duration_ms: u64,
}

/// What a load request does: nothing (resident), wait for a load already
/// running, or wait for the one it just started.
enum Begin {
    Resident(Arc<ModelEntry>),
    Join(watch::Receiver<LoadOutcome>),
    Started(watch::Receiver<LoadOutcome>),
}

impl Registry {
    pub fn new(
        device: Device,
        device_id: &str,
        memory_limit: u64,
        bus: Arc<EventBus>,
        options: RuntimeOptions,
        sources: Sources,
    ) -> Self {
        Registry {
            state: Mutex::new(State::default()),
            device,
            device_id: device_id.to_string(),
            memory_limit,
            bus,
            options,
            sources,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// Bytes taken by resident models (and unloaded ones requests still
    /// use) and reserved by loads in progress.
    pub fn memory_used(&self) -> u64 {
        self.state().used()
    }

    pub fn get(&self, id: &str) -> Option<Arc<ModelEntry>> {
        match self.state().slots.get(id) {
            Some(Slot::Loaded(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Waits for a load in progress, if there is one; `None` when the model
    /// is neither loading nor loaded.
    pub async fn get_or_wait(&self, id: &str) -> Option<Result<Arc<ModelEntry>, ApiError>> {
        let rx = match self.state().slots.get(id) {
            Some(Slot::Loaded(e)) => return Some(Ok(e.clone())),
            Some(Slot::Loading { done, .. }) => done.clone(),
            _ => return None,
        };
        Some(wait_outcome(rx).await)
    }

    pub fn list(&self) -> Vec<ModelInfo> {
        let mut state = self.state();
        state.prune(Instant::now());
        let mut out: Vec<ModelInfo> = state
            .slots
            .iter()
            .map(|(id, slot)| match slot {
                Slot::Loaded(e) => e.info(),
                Slot::Loading {
                    source, progress, ..
                } => ModelInfo {
                    progress: Some(*progress),
                    ..self.bare_info(id, source, ModelState::Loading)
                },
                Slot::Failed { source, error, .. } => ModelInfo {
                    error: Some(error.clone()),
                    ..self.bare_info(id, source, ModelState::Failed)
                },
            })
            .collect();
        drop(state);
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The listing of a model that is not resident.
    fn bare_info(&self, id: &str, source: &str, state: ModelState) -> ModelInfo {
        ModelInfo::bare(id, source, state, &self.device_id)
    }

    /// Loads `id` from `source`, or joins the load already running, or
    /// returns at once when it is resident. The load itself runs on its own
    /// thread and records its outcome whatever happens to this future: a
    /// caller that goes away (a client timeout) leaves the load to finish,
    /// and later callers see its result.
    pub async fn load(
        self: &Arc<Self>,
        id: &str,
        source: &str,
        quant: Option<QuantType>,
    ) -> Result<LoadResult, ApiError> {
        let started = Instant::now();
        let (rx, changed) = match self.begin(id, source, quant)? {
            Begin::Resident(entry) => {
                return Ok(LoadResult {
                    entry,
                    changed: false,
                    duration_ms: 0,
                });
            }
            Begin::Join(rx) => (rx, false),
            Begin::Started(rx) => (rx, true),
        };
        let entry = wait_outcome(rx).await?;
        Ok(LoadResult {
            entry,
            changed,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Decides, under the lock, what a load request does; starts the load
    /// thread when it is the first.
    fn begin(
        self: &Arc<Self>,
        id: &str,
        source: &str,
        quant: Option<QuantType>,
    ) -> Result<Begin, ApiError> {
        let tx = {
            let mut state = self.state();
            match state.slots.get(id) {
                Some(Slot::Loaded(e)) if e.quant != quant && e.source == source => {
                    return Err(ApiError::invalid(
                        "model_id_in_use",
                        format!(
                            "model id `{id}` is already loaded with quant {}; unload it first to load it with quant {}",
                            e.quant.map(|q| q.name()).unwrap_or("none"),
                            quant.map(|q| q.name()).unwrap_or("none"),
                        ),
                    ));
                }
                Some(Slot::Loaded(e)) if e.source != source => {
                    return Err(ApiError::invalid(
                        "model_id_in_use",
                        format!(
                            "model id `{id}` is already loaded from `{}`; unload it first to load `{source}`",
                            e.source
                        ),
                    ));
                }
                Some(Slot::Loaded(e)) => return Ok(Begin::Resident(e.clone())),
                Some(Slot::Loading { done, .. }) => return Ok(Begin::Join(done.clone())),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    state.slots.insert(
                        id.to_string(),
                        Slot::Loading {
                            source: source.to_string(),
                            reserved: 0,
                            progress: Progress { done: 0, total: 0 },
                            done: rx,
                        },
                    );
                    tx
                }
            }
        };
        let rx = tx.subscribe();
        tracing::info!(
            model = id,
            source,
            quant = quant.map(|q| q.name()),
            "load started"
        );
        self.bus.emit(EventKind::ModelLoadStarted {
            model: id.to_string(),
            source: source.to_string(),
        });
        // Files are read and weights built on a thread of the load's own,
        // which outlives the request: the async runtime (and /health,
        // /models) carry on meanwhile.
        let this = self.clone();
        let (id_owned, source_owned) = (id.to_string(), source.to_string());
        let spawned = std::thread::Builder::new()
            .name("neuron-load".into())
            .spawn(move || this.run_load(&id_owned, &source_owned, quant, tx));
        if let Err(e) = spawned {
            // The sender went down with the closure; record the failure here.
            let err = ApiError::internal(format!("cannot start the load thread: {e}"));
            let _failed = self.record(id, source, Err(err.clone()), Instant::now());
            return Err(err);
        }
        Ok(Begin::Started(rx))
    }

    /// The load thread: builds the model, records the outcome, tells every
    /// waiter. A panic in the loader is a failed load, never a stuck one.
    fn run_load(
        &self,
        id: &str,
        source: &str,
        quant: Option<QuantType>,
        tx: watch::Sender<LoadOutcome>,
    ) {
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.load_blocking(id, source, quant)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ApiError::internal(format!("the loader panicked: {what}")))
        });
        let outcome = self.record(id, source, result, started);
        // Nobody waiting (every caller went away) is fine: the slot has it.
        let _ = tx.send(Some(outcome));
    }

    /// Stores a load's outcome in its slot and announces it.
    fn record(
        &self,
        id: &str,
        source: &str,
        result: Result<LoadedModel, ApiError>,
        started: Instant,
    ) -> Result<Arc<ModelEntry>, ApiError> {
        let duration_ms = started.elapsed().as_millis() as u64;
        let outcome = {
            let mut state = self.state();
            match result {
                Ok(loaded) => {
                    let entry = Arc::new(ModelEntry::from_loaded(
                        id,
                        source,
                        &self.device_id,
                        loaded,
                        self.options,
                    ));
                    state
                        .slots
                        .insert(id.to_string(), Slot::Loaded(entry.clone()));
                    Ok(entry)
                }
                Err(err) => {
                    let now = Instant::now();
                    state.slots.insert(
                        id.to_string(),
                        Slot::Failed {
                            source: source.to_string(),
                            error: err.message.clone(),
                            at: now,
                        },
                    );
                    state.prune(now);
                    Err(err)
                }
            }
        };
        match &outcome {
            Ok(entry) => {
                tracing::info!(
                    model = id,
                    duration_ms,
                    memory_bytes = entry.weight_bytes,
                    quant = entry.quant.map(|q| q.name()),
                    unquantized_bytes = entry.unquantized_bytes,
                    "loaded"
                );
                self.bus.emit(EventKind::ModelLoaded {
                    model: id.to_string(),
                    duration_ms,
                    memory_bytes: entry.weight_bytes,
                    quant: entry.quant.map(|q| q.name().to_string()),
                    unquantized_bytes: entry.unquantized_bytes,
                });
            }
            Err(err) => {
                tracing::warn!(model = id, error = %err.message, "load failed");
                self.bus.emit(EventKind::ModelLoadFailed {
                    model: id.to_string(),
                    reason: err.message.clone(),
                });
            }
        }
        outcome
    }

    fn load_blocking(
        &self,
        id: &str,
        source: &str,
        quant: Option<QuantType>,
    ) -> Result<LoadedModel, ApiError> {
        // Progress events, at most every 100 ms, and the slot's progress:
        // first a Hub download's bytes (if any), then the bytes read.
        let last_emit = Mutex::new(Instant::now());
        let report = |phase: LoadPhase, done: u64, total: u64| {
            if let Some(Slot::Loading { progress, .. }) = self.state().slots.get_mut(id) {
                *progress = Progress { done, total };
            }
            let mut last = last_emit.lock().unwrap_or_else(|p| p.into_inner());
            if done == total || last.elapsed().as_millis() >= 100 {
                *last = Instant::now();
                self.bus.emit(EventKind::ModelLoadProgress {
                    model: id.to_string(),
                    done,
                    total,
                    unit: "bytes".into(),
                    phase,
                });
            }
        };
        let resolved = resolve(source, &self.sources, &|done, total| {
            report(LoadPhase::Download, done, total)
        })
        .map_err(load_error)?;
        let needed = match &resolved {
            Resolved::Gguf(p) => gguf::estimate_bytes(p),
            Resolved::HfDir(p) => safetensors::estimate_bytes(p, &self.device),
        }
        .map_err(load_error)?;
        // An unload just before (an eviction making room) frees its memory
        // when its last request lets go: wait for that, not for anything else.
        let deadline = Instant::now() + DRAIN_WAIT;
        loop {
            let mut state = self.state();
            state.prune(Instant::now());
            let used = state.used();
            if used + needed <= self.memory_limit {
                if let Some(Slot::Loading { reserved, .. }) = state.slots.get_mut(id) {
                    *reserved = needed;
                }
                break;
            }
            let draining = state.draining_bytes();
            let would_fit = used.saturating_sub(draining) + needed <= self.memory_limit;
            if !would_fit || Instant::now() >= deadline {
                return Err(load_error(LoadError::InsufficientMemory {
                    model: id.to_string(),
                    needed_mb: needed.div_ceil(1 << 20),
                    free_mb: self.memory_limit.saturating_sub(used) >> 20,
                    total_mb: self.memory_limit >> 20,
                }));
            }
            drop(state);
            // This is the load's own thread: sleeping blocks nobody.
            std::thread::sleep(Duration::from_millis(20));
        }
        let progress = |done: u64, total: u64| report(LoadPhase::Read, done, total);
        let mut loaded = match &resolved {
            Resolved::Gguf(p) => gguf::load(p, &self.device, quant, &progress),
            Resolved::HfDir(p) => safetensors::load(p, &self.device, quant, &progress),
        }
        .map_err(load_error)?;
        if let Some(m) = Arc::get_mut(&mut loaded.model) {
            m.set_prefill_chunk(self.options.prefill_chunk);
        }
        Ok(loaded)
    }

    /// Removes a resident model. Requests already running on it finish; its
    /// memory stays counted until the last of them lets go of the weights,
    /// so no load can be placed in memory that is still in use.
    pub fn unload(&self, id: &str, reason: UnloadReason) -> Result<Arc<ModelEntry>, ApiError> {
        let mut state = self.state();
        match state.slots.get(id) {
            Some(Slot::Loaded(_)) => {}
            Some(Slot::Loading { .. }) => {
                return Err(ApiError::new(
                    ErrorKind::InvalidRequest,
                    "model_loading",
                    format!("model `{id}` is still loading; unload it once it is loaded"),
                ));
            }
            Some(Slot::Failed { .. }) => {
                state.slots.remove(id);
                return Err(ApiError::not_found(
                    "model_not_loaded",
                    format!("model `{id}` is not loaded (its last load failed)"),
                ));
            }
            None => {
                return Err(ApiError::not_found(
                    "model_not_loaded",
                    format!("model `{id}` is not loaded on this neuron"),
                ));
            }
        }
        let Some(Slot::Loaded(entry)) = state.slots.remove(id) else {
            return Err(ApiError::internal("model slot changed during unload"));
        };
        state.draining.push(Arc::downgrade(&entry));
        drop(state);
        tracing::info!(model = id, reason = reason.as_str(), "unloaded");
        self.bus.emit(EventKind::ModelUnloaded {
            model: id.to_string(),
            reason,
        });
        Ok(entry)
    }
}

async fn wait_outcome(mut rx: watch::Receiver<LoadOutcome>) -> Result<Arc<ModelEntry>, ApiError> {
    match rx.wait_for(|o| o.is_some()).await {
        Ok(outcome) => outcome
            .clone()
            .unwrap_or_else(|| Err(ApiError::internal("load ended without an outcome"))),
        Err(_) => Err(ApiError::internal("the load was abandoned")),
    }
}

fn load_error(err: LoadError) -> ApiError {
    let code = match &err {
        LoadError::NotFound { .. } => "model_source_not_found",
        LoadError::Forbidden { .. } => "model_source_forbidden",
        LoadError::InsufficientMemory { .. } => "insufficient_memory",
        LoadError::Unsupported { .. } => "model_unsupported",
        LoadError::QuantNotApplicable { .. } => "quant_not_applicable",
        LoadError::Embedded(_) => "embedded_model_unavailable",
        LoadError::Hub(e) => e.code(),
        _ => "model_load_failed",
    };
    let kind = match &err {
        LoadError::NotFound { .. } => ErrorKind::NotFound,
        LoadError::Forbidden { .. } => ErrorKind::Forbidden,
        LoadError::InsufficientMemory { .. } => ErrorKind::Overloaded,
        LoadError::Unsupported { .. } | LoadError::QuantNotApplicable { .. } => {
            ErrorKind::InvalidRequest
        }
        LoadError::Hub(e) => e.kind(),
        _ => ErrorKind::Internal,
    };
    // The whole chain, so the operator sees the root cause.
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    ApiError::new(kind, code, truncate(message, MAX_ERROR_BYTES))
}

/// `text` cut to at most `max` bytes on a character boundary, marked when
/// cut: error messages can quote what a client sent.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
