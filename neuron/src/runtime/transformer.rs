//! The decoder-only transformer every supported family runs on: token
//! embedding, blocks of (RMSNorm → attention → residual, RMSNorm → MLP →
//! residual), final norm, lm_head. Weights are shared and immutable; each
//! sequence brings its own [`KvCache`], so one model serves any number of
//! sequences, one at a time or stacked in one batch.

use std::sync::Arc;

use candle_core::{Device, Result, Tensor};

use super::attention::{Attention, SeqRows};
use super::config::ModelConfig;
use super::embedding::Embedding;
use super::kv_cache::{KvCache, KvLayout, KvMeter};
use super::linear::Linear;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::Rope;

/// Prompt tokens run per forward pass by default: big enough to run like a
/// GEMM, small enough that attention scores stay modest in memory.
pub const DEFAULT_PREFILL_CHUNK: usize = 256;

#[derive(Clone)]
pub struct Block {
    pub attn_norm: RmsNorm,
    pub attn: Attention,
    pub mlp_norm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    fn bytes(&self) -> u64 {
        self.attn_norm.bytes() + self.attn.bytes() + self.mlp_norm.bytes() + self.mlp.bytes()
    }
}

pub struct Transformer {
    config: ModelConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    kv_layout: Arc<KvLayout>,
    kv_meter: Arc<KvMeter>,
    device: Device,
    prefill_chunk: usize,
    weight_bytes: u64,
}

/// One sequence's part of a batched step: the tokens to run and its cache.
pub struct Step<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub kind: StepKind,
}

/// What a step's tokens are. Each kind always runs the same kernels (on the
/// CPU: row-wise GEMV for `Decode`, tiled GEMM for `Prefill`), so a
/// sequence's numbers never depend on what else shares its pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Prompt tokens before the last one.
    Prefill,
    /// One token whose logits are sampled: the prompt's last, or the token
    /// generated last.
    Decode,
}

impl Transformer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ModelConfig,
        embed: Embedding,
        blocks: Vec<Block>,
        norm: RmsNorm,
        lm_head: Linear,
        rope: Rope,
        device: Device,
    ) -> Self {
        let tied_shares_storage = config.tie_word_embeddings
            && matches!(
                (&embed, lm_head.weight()),
                (Embedding::Quant(..), super::linear::Weight::QuantCpu(_))
                    | (Embedding::Dense(_), super::linear::Weight::Dense(_))
            );
        let weight_bytes = embed.bytes()
            + blocks.iter().map(Block::bytes).sum::<u64>()
            + norm.bytes()
            + if tied_shares_storage {
                0
            } else {
                lm_head.bytes()
            };
        let kv_layout = Arc::new(KvLayout {
            layers: config.num_layers,
            kv_heads: config.num_kv_heads,
            head_dim: config.head_dim,
            max_tokens: config.context_length,
            device: device.clone(),
        });
        Transformer {
            config,
            embed,
            blocks,
            norm,
            lm_head,
            rope,
            kv_layout,
            kv_meter: Arc::new(KvMeter::default()),
            device,
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
            weight_bytes,
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes of the weights (a tied lm_head counted once).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Bytes of every live KV cache of this model.
    pub fn kv_bytes(&self) -> u64 {
        self.kv_meter.bytes()
    }

    pub fn lm_head_quant(&self) -> Option<neuron_kernels::QuantType> {
        self.lm_head.quant()
    }

    pub fn set_prefill_chunk(&mut self, tokens: usize) {
        self.prefill_chunk = tokens.max(1);
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.kv_layout.clone(), self.kv_meter.clone())
    }

    /// Runs `tokens` after what `cache` holds and returns the next-token
    /// logits, `(vocab,)` f32. A prompt runs in chunks of at most the
    /// prefill size, and its last token alone — the same passes the
    /// scheduler makes, so the numbers match it exactly.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let Some((last, prompt)) = tokens.split_last() else {
            candle_core::bail!("forward needs at least one token");
        };
        cache.reserve(cache.len() + tokens.len())?;
        for chunk in prompt.chunks(self.prefill_chunk) {
            let mut steps = [Step {
                tokens: chunk,
                cache: &mut *cache,
                kind: StepKind::Prefill,
            }];
            self.forward_batch(&mut steps)?;
        }
        let mut steps = [Step {
            tokens: std::slice::from_ref(last),
            cache,
            kind: StepKind::Decode,
        }];
        self.forward_batch(&mut steps)?
            .pop()
            .ok_or_else(|| candle_core::Error::Msg("no logits".into()))
    }

    /// One pass over several sequences at once: their rows are stacked for
    /// every matmul, attention runs per sequence. Returns each sequence's
    /// last-position logits, `(vocab,)` f32, in order.
    ///
    /// Decode rows and prefill rows each always run the same kernels, so a
    /// sequence gets the same numbers whatever else is in the batch.
    pub fn forward_batch(&self, steps: &mut [Step<'_>]) -> Result<Vec<Tensor>> {
        // Decode rows first: the matmuls split the stacked rows there.
        let mut order: Vec<usize> = (0..steps.len()).collect();
        order.sort_by_key(|&i| steps[i].kind == StepKind::Prefill);
        let mut decode_rows = 0;
        for s in steps.iter() {
            if s.kind == StepKind::Decode {
                if s.tokens.len() != 1 {
                    candle_core::bail!("a decode step runs exactly one token");
                }
                decode_rows += 1;
            }
        }
        let mut sorted: Vec<Step<'_>> = Vec::with_capacity(steps.len());
        let mut slots: Vec<Option<&mut Step<'_>>> = steps.iter_mut().map(Some).collect();
        for &i in &order {
            if let Some(s) = slots[i].take() {
                sorted.push(Step {
                    tokens: s.tokens,
                    cache: &mut *s.cache,
                    kind: s.kind,
                });
            }
        }
        let logits = self.forward_sorted(&mut sorted, decode_rows)?;
        let mut out: Vec<Option<Tensor>> = vec![None; logits.len()];
        for (l, &i) in logits.into_iter().zip(&order) {
            out[i] = Some(l);
        }
        out.into_iter()
            .map(|l| l.ok_or_else(|| candle_core::Error::Msg("a sequence got no logits".into())))
            .collect()
    }

    fn forward_sorted(&self, steps: &mut [Step<'_>], decode_rows: usize) -> Result<Vec<Tensor>> {
        let ctx = self.config.context_length;
        let mut ids = Vec::new();
        for s in steps.iter() {
            if s.tokens.is_empty() {
                candle_core::bail!("a sequence in the batch has no tokens");
            }
            if s.cache.len() + s.tokens.len() > ctx {
                candle_core::bail!(
                    "{} tokens do not fit the model's context of {ctx}",
                    s.cache.len() + s.tokens.len()
                );
            }
            ids.extend_from_slice(s.tokens);
        }
        let mut x = self.embed.forward(&ids)?;
        let mut rows = Vec::with_capacity(steps.len());
        let mut start_row = 0;
        for s in steps.iter_mut() {
            rows.push(SeqRows {
                start_row,
                len: s.tokens.len(),
                cache: &mut *s.cache,
            });
            start_row += s.tokens.len();
        }
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = block.attn_norm.forward(&x)?;
            let a = block
                .attn
                .forward(&h, decode_rows, layer, &mut rows, &self.rope)?;
            x = (x + a)?;
            let h = block.mlp_norm.forward(&x)?;
            x = (&x + block.mlp.forward(&h, decode_rows)?)?;
        }
        let mut last = Vec::with_capacity(rows.len());
        for r in rows.iter_mut() {
            r.cache.advance(r.len);
            last.push(x.narrow(0, r.start_row + r.len - 1, 1)?);
        }
        let last = if last.len() == 1 {
            last.swap_remove(0)
        } else {
            Tensor::cat(&last, 0)?
        };
        let logits = self.lm_head.forward(&self.norm.forward(&last)?)?;
        (0..rows.len())
            .map(|i| logits.get(i)?.to_dtype(candle_core::DType::F32))
            .collect()
    }
}
