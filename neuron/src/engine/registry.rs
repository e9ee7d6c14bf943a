//! The models of this neuron: which are loading, loaded, or failed; loads
//! are single-flight per model id and checked against the memory budget;
//! `/models` reads this cached state and never waits for a forward pass.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::Device;
use cortex_common::error::{ApiError, ErrorKind};
use cortex_common::event::EventKind;
use cortex_common::neuron_api::{ModelInfo, ModelState, Progress};
use tokenizers::Tokenizer;
use tokio::sync::watch;

use super::chat_template::ChatTemplate;
use crate::events::EventBus;
use crate::model::resolve::{Resolved, resolve};
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
    pub eos_token_ids: Vec<u32>,
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
            tokenizer: m.tokenizer,
            template: m.template,
            eos_token_ids: m.eos_token_ids,
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
        }
    }
}

type LoadOutcome = Option<Result<Arc<ModelEntry>, ApiError>>;

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
    },
}

pub struct Registry {
    slots: Mutex<HashMap<String, Slot>>,
    device: Device,
    device_id: String,
    /// Memory models may fill, bytes.
    memory_limit: u64,
    bus: Arc<EventBus>,
    options: RuntimeOptions,
}

pub struct LoadResult {
    pub entry: Arc<ModelEntry>,
    /// False when the model was already loaded or another load was joined.
    pub changed: bool,
    pub duration_ms: u64,
}

impl Registry {
    pub fn new(
        device: Device,
        device_id: &str,
        memory_limit: u64,
        bus: Arc<EventBus>,
        options: RuntimeOptions,
    ) -> Self {
        Registry {
            slots: Mutex::new(HashMap::new()),
            device,
            device_id: device_id.to_string(),
            memory_limit,
            bus,
            options,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// Bytes taken by resident models and reserved by loads in progress.
    pub fn memory_used(&self) -> u64 {
        Self::used(&self.slots())
    }

    fn used(slots: &HashMap<String, Slot>) -> u64 {
        slots
            .values()
            .map(|s| match s {
                Slot::Loaded(e) => e.memory_bytes(),
                Slot::Loading { reserved, .. } => *reserved,
                Slot::Failed { .. } => 0,
            })
            .sum()
    }

    pub fn get(&self, id: &str) -> Option<Arc<ModelEntry>> {
        match self.slots().get(id) {
            Some(Slot::Loaded(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Waits for a load in progress, if there is one; `None` when the model
    /// is neither loading nor loaded.
    pub async fn get_or_wait(&self, id: &str) -> Option<Result<Arc<ModelEntry>, ApiError>> {
        let rx = match self.slots().get(id) {
            Some(Slot::Loaded(e)) => return Some(Ok(e.clone())),
            Some(Slot::Loading { done, .. }) => done.clone(),
            _ => return None,
        };
        Some(wait_outcome(rx).await)
    }

    pub fn list(&self) -> Vec<ModelInfo> {
        let mut out: Vec<ModelInfo> = self
            .slots()
            .iter()
            .map(|(id, slot)| match slot {
                Slot::Loaded(e) => e.info(),
                Slot::Loading {
                    source, progress, ..
                } => ModelInfo {
                    id: id.clone(),
                    source: source.clone(),
                    state: ModelState::Loading,
                    architecture: None,
                    device: self.device_id.clone(),
                    memory_bytes: 0,
                    in_flight: 0,
                    queue_depth: 0,
                    decode_tok_s: None,
                    progress: Some(*progress),
                    error: None,
                    context_length: None,
                    quant: None,
                    unquantized_bytes: None,
                    kv_cache_bytes: 0,
                    prompt_cache_entries: 0,
                },
                Slot::Failed { source, error } => ModelInfo {
                    id: id.clone(),
                    source: source.clone(),
                    state: ModelState::Failed,
                    architecture: None,
                    device: self.device_id.clone(),
                    memory_bytes: 0,
                    in_flight: 0,
                    queue_depth: 0,
                    decode_tok_s: None,
                    progress: None,
                    error: Some(error.clone()),
                    context_length: None,
                    quant: None,
                    unquantized_bytes: None,
                    kv_cache_bytes: 0,
                    prompt_cache_entries: 0,
                },
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Loads `id` from `source`, or joins the load already running, or
    /// returns at once when it is resident.
    pub async fn load(
        self: &Arc<Self>,
        id: &str,
        source: &str,
        quant: Option<QuantType>,
    ) -> Result<LoadResult, ApiError> {
        let started = Instant::now();
        enum Next {
            Resident(Arc<ModelEntry>),
            Join(watch::Receiver<LoadOutcome>),
            Start(watch::Sender<LoadOutcome>),
        }
        let next = {
            let mut slots = self.slots();
            match slots.get(id) {
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
                Some(Slot::Loaded(e)) => Next::Resident(e.clone()),
                Some(Slot::Loading { done, .. }) => Next::Join(done.clone()),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    slots.insert(
                        id.to_string(),
                        Slot::Loading {
                            source: source.to_string(),
                            reserved: 0,
                            progress: Progress { done: 0, total: 0 },
                            done: rx,
                        },
                    );
                    Next::Start(tx)
                }
            }
        };
        let tx = match next {
            Next::Resident(entry) => {
                return Ok(LoadResult {
                    entry,
                    changed: false,
                    duration_ms: 0,
                });
            }
            Next::Join(rx) => {
                let entry = wait_outcome(rx).await?;
                return Ok(LoadResult {
                    entry,
                    changed: false,
                    duration_ms: started.elapsed().as_millis() as u64,
                });
            }
            Next::Start(tx) => tx,
        };
        tracing::info!(
            model = id,
            source,
            quant = quant.map(|q| q.name()),
            "load requested"
        );
        self.bus.emit(EventKind::ModelLoadStarted {
            model: id.to_string(),
            source: source.to_string(),
        });
        tracing::info!(model = id, source, "load started");

        // Files are read and weights built on a blocking thread; the async
        // runtime (and /health, /models) carry on meanwhile.
        let this = self.clone();
        let (id_owned, source_owned) = (id.to_string(), source.to_string());
        let result = tokio::task::spawn_blocking(move || {
            this.load_blocking(&id_owned, &source_owned, quant)
        })
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("load task failed: {e}"))));
        let duration_ms = started.elapsed().as_millis() as u64;

        let outcome = {
            let mut slots = self.slots();
            match result {
                Ok(loaded) => {
                    let entry = Arc::new(ModelEntry::from_loaded(
                        id,
                        source,
                        &self.device_id,
                        loaded,
                        self.options,
                    ));
                    slots.insert(id.to_string(), Slot::Loaded(entry.clone()));
                    Ok(entry)
                }
                Err(err) => {
                    slots.insert(
                        id.to_string(),
                        Slot::Failed {
                            source: source.to_string(),
                            error: err.message.clone(),
                        },
                    );
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
        // Joined callers hold receivers; nobody waiting is fine.
        let _ = tx.send(Some(outcome.clone()));
        outcome.map(|entry| LoadResult {
            entry,
            changed: true,
            duration_ms,
        })
    }

    fn load_blocking(
        &self,
        id: &str,
        source: &str,
        quant: Option<QuantType>,
    ) -> Result<LoadedModel, ApiError> {
        let resolved = resolve(source).map_err(load_error)?;
        let needed = match &resolved {
            Resolved::Gguf(p) => gguf::estimate_bytes(p),
            Resolved::HfDir(p) => safetensors::estimate_bytes(p, &self.device),
        }
        .map_err(load_error)?;
        {
            let mut slots = self.slots();
            let used = Self::used(&slots);
            if used + needed > self.memory_limit {
                return Err(load_error(LoadError::InsufficientMemory {
                    model: id.to_string(),
                    needed_mb: needed.div_ceil(1 << 20),
                    free_mb: self.memory_limit.saturating_sub(used) >> 20,
                    total_mb: self.memory_limit >> 20,
                }));
            }
            if let Some(Slot::Loading { reserved, .. }) = slots.get_mut(id) {
                *reserved = needed;
            }
        }
        let last_emit = Mutex::new(Instant::now());
        let progress = |done: u64, total: u64| {
            if let Some(Slot::Loading { progress, .. }) = self.slots().get_mut(id) {
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
                });
            }
        };
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

    /// Removes a resident model. Requests already running on it finish;
    /// its memory is freed when the last one does.
    pub fn unload(&self, id: &str, reason: &str) -> Result<Arc<ModelEntry>, ApiError> {
        let mut slots = self.slots();
        match slots.get(id) {
            Some(Slot::Loaded(_)) => {}
            Some(Slot::Loading { .. }) => {
                return Err(ApiError::new(
                    ErrorKind::InvalidRequest,
                    "model_loading",
                    format!("model `{id}` is still loading; unload it once it is loaded"),
                ));
            }
            Some(Slot::Failed { .. }) => {
                slots.remove(id);
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
        let Some(Slot::Loaded(entry)) = slots.remove(id) else {
            return Err(ApiError::internal("model slot changed during unload"));
        };
        drop(slots);
        tracing::info!(model = id, reason, "unloaded");
        self.bus.emit(EventKind::ModelUnloaded {
            model: id.to_string(),
            reason: reason.to_string(),
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
        LoadError::InsufficientMemory { .. } => "insufficient_memory",
        LoadError::Unsupported { .. } => "model_unsupported",
        LoadError::QuantNotApplicable { .. } => "quant_not_applicable",
        LoadError::Embedded(_) => "embedded_model_unavailable",
        _ => "model_load_failed",
    };
    let kind = match &err {
        LoadError::NotFound { .. } => ErrorKind::NotFound,
        LoadError::InsufficientMemory { .. } => ErrorKind::Overloaded,
        LoadError::Unsupported { .. } | LoadError::QuantNotApplicable { .. } => {
            ErrorKind::InvalidRequest
        }
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
    ApiError::new(kind, code, message)
}
