//! Building a [`Transformer`] from named tensors, whichever file format
//! they came from: the tensor names of each format, the tied/separate
//! lm_head rule, and in-situ quantization of dense linear layers.

use std::sync::Arc;

use candle_core::{Device, Result, Tensor};
use neuron_kernels::QuantType;

use super::attention::Attention;
use super::config::ModelConfig;
use super::embedding::Embedding;
use super::linear::Linear;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::Rope;
use super::transformer::{Block, Transformer};

/// Where a loader gets its tensors from (a GGUF file, safetensors).
pub trait TensorSource {
    fn has(&self, name: &str) -> bool;
    /// A weight matrix `(out, in)` and its optional bias, as stored.
    fn linear(&mut self, name: &str, bias: Option<&str>) -> Result<Linear>;
    /// A vector (norm weights, rope factors) as f32.
    fn vector(&mut self, name: &str) -> Result<Tensor>;
    /// The token embedding, and the lm_head that shares it when the model
    /// ties them (`tied`), built from the same storage.
    fn embedding(&mut self, name: &str, tied: bool) -> Result<(Embedding, Option<Linear>)>;
}

/// The parts of one block, named per format by [`Names`].
#[derive(Debug, Clone, Copy)]
pub enum Part {
    AttnNorm,
    Q,
    K,
    V,
    O,
    QNorm,
    KNorm,
    MlpNorm,
    Gate,
    Up,
    Down,
}

/// Tensor names of one file format.
#[derive(Debug, Clone, Copy)]
pub enum Names {
    Gguf,
    HuggingFace,
}

impl Names {
    pub fn embed(self) -> &'static str {
        match self {
            Names::Gguf => "token_embd.weight",
            Names::HuggingFace => "model.embed_tokens.weight",
        }
    }

    pub fn final_norm(self) -> &'static str {
        match self {
            Names::Gguf => "output_norm.weight",
            Names::HuggingFace => "model.norm.weight",
        }
    }

    pub fn lm_head(self) -> &'static str {
        match self {
            Names::Gguf => "output.weight",
            Names::HuggingFace => "lm_head.weight",
        }
    }

    /// `(weight, bias)` names of a part of block `i`.
    pub fn part(self, i: usize, p: Part) -> (String, String) {
        let stem = match (self, p) {
            (Names::Gguf, Part::AttnNorm) => "attn_norm",
            (Names::Gguf, Part::Q) => "attn_q",
            (Names::Gguf, Part::K) => "attn_k",
            (Names::Gguf, Part::V) => "attn_v",
            (Names::Gguf, Part::O) => "attn_output",
            (Names::Gguf, Part::QNorm) => "attn_q_norm",
            (Names::Gguf, Part::KNorm) => "attn_k_norm",
            (Names::Gguf, Part::MlpNorm) => "ffn_norm",
            (Names::Gguf, Part::Gate) => "ffn_gate",
            (Names::Gguf, Part::Up) => "ffn_up",
            (Names::Gguf, Part::Down) => "ffn_down",
            (Names::HuggingFace, Part::AttnNorm) => "input_layernorm",
            (Names::HuggingFace, Part::Q) => "self_attn.q_proj",
            (Names::HuggingFace, Part::K) => "self_attn.k_proj",
            (Names::HuggingFace, Part::V) => "self_attn.v_proj",
            (Names::HuggingFace, Part::O) => "self_attn.o_proj",
            (Names::HuggingFace, Part::QNorm) => "self_attn.q_norm",
            (Names::HuggingFace, Part::KNorm) => "self_attn.k_norm",
            (Names::HuggingFace, Part::MlpNorm) => "post_attention_layernorm",
            (Names::HuggingFace, Part::Gate) => "mlp.gate_proj",
            (Names::HuggingFace, Part::Up) => "mlp.up_proj",
            (Names::HuggingFace, Part::Down) => "mlp.down_proj",
        };
        let prefix = match self {
            Names::Gguf => format!("blk.{i}"),
            Names::HuggingFace => format!("model.layers.{i}"),
        };
        (
            format!("{prefix}.{stem}.weight"),
            format!("{prefix}.{stem}.bias"),
        )
    }
}

/// Builds the model. `quant` quantizes every dense linear layer, and
/// lm_head too unless it is tied to the embedding (quantizing the shared
/// matrix would corrupt the lookups, and the tied model holds one copy).
/// `on_block` reports blocks built (done, total).
pub fn build(
    config: ModelConfig,
    src: &mut dyn TensorSource,
    names: Names,
    quant: Option<QuantType>,
    device: &Device,
    on_block: &dyn Fn(usize, usize),
) -> Result<Transformer> {
    let isq = |l: Linear| -> Result<Linear> {
        match quant {
            Some(q) => l.quantize(q),
            None => Ok(l),
        }
    };
    let tied = config.tie_word_embeddings || !src.has(names.lm_head());
    let (embed, tied_head) = src.embedding(names.embed(), tied)?;
    let mut blocks = Vec::with_capacity(config.num_layers);
    for i in 0..config.num_layers {
        let mut lin = |p: Part, with_bias: bool| -> Result<Linear> {
            let (w, b) = names.part(i, p);
            let bias = (with_bias && src.has(&b)).then_some(b.as_str());
            isq(src.linear(&w, bias)?)
        };
        let q = lin(Part::Q, config.qkv_bias)?;
        let k = lin(Part::K, config.qkv_bias)?;
        let v = lin(Part::V, config.qkv_bias)?;
        let o = lin(Part::O, false)?;
        let gate = lin(Part::Gate, false)?;
        let up = lin(Part::Up, false)?;
        let down = lin(Part::Down, false)?;
        let mut norm = |p: Part| -> Result<RmsNorm> {
            Ok(RmsNorm::new(
                src.vector(&names.part(i, p).0)?,
                config.rms_norm_eps,
            ))
        };
        let (q_norm, k_norm) = if config.qk_norm {
            (Some(norm(Part::QNorm)?), Some(norm(Part::KNorm)?))
        } else {
            (None, None)
        };
        blocks.push(Block {
            attn_norm: norm(Part::AttnNorm)?,
            mlp_norm: norm(Part::MlpNorm)?,
            attn: Attention::new(
                q,
                k,
                v,
                o,
                q_norm,
                k_norm,
                config.num_heads,
                config.num_kv_heads,
                config.head_dim,
            )?,
            mlp: Mlp::new(gate, up, down)?,
        });
        on_block(i + 1, config.num_layers);
    }
    let norm = RmsNorm::new(src.vector(names.final_norm())?, config.rms_norm_eps);
    let lm_head = match tied_head {
        Some(head) if tied => head,
        _ => isq(src.linear(names.lm_head(), None)?)?,
    };
    let freq_factors = if src.has("rope_freqs.weight") {
        Some(src.vector("rope_freqs.weight")?.to_vec1::<f32>()?)
    } else {
        None
    };
    let rope = Rope::new(
        config.head_dim,
        config.rope_theta,
        config.context_length,
        config.rope_style,
        &config.rope_scaling,
        freq_factors.as_deref(),
        device,
    )?;
    let config = ModelConfig {
        tie_word_embeddings: tied,
        ..config
    };
    Ok(Transformer::new(
        config,
        embed,
        blocks,
        norm,
        lm_head,
        rope,
        device.clone(),
    ))
}

/// A dense embedding table and, when tied, an lm_head on the same tensor.
pub fn dense_embedding(t: Tensor, tied: bool) -> Result<(Embedding, Option<Linear>)> {
    let head = if tied {
        Some(Linear::dense(t.clone(), None)?)
    } else {
        None
    };
    Ok((Embedding::Dense(t), head))
}

/// A quantized CPU embedding and, when tied, an lm_head sharing its blocks.
pub fn quant_embedding(q: Arc<neuron_kernels::QMatrix>, tied: bool) -> (Embedding, Option<Linear>) {
    let head = tied.then(|| Linear::quant_cpu(q.clone(), None));
    (Embedding::Quant(q, Device::Cpu), head)
}
