//! Importing LLaDA, Dream and Qwen3-based diffusion checkpoints (SDAR, Tiny-A2D) from their
//! Hugging Face directories: `config.json` read per architecture, the tensor names of each
//! family mapped onto [`LlamaLm`]'s module paths, through the shared import path
//! ([`crate::hf`]).

use std::path::Path;

use burn::tensor::{Device, Tensor};
use serde::Deserialize;

use super::config::LlamaConfig;
use super::model::LlamaLm;
use crate::backbone::{DenoiserInput, DenoiserOutput, TokenModel};
use crate::error::CoreError;
use crate::hf::{ExpectedTensor, load_module, read_json, read_tensors, weight_files};

/// The checkpoint families, told apart by `model_type` in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// LLaDA (Nie et al. 2025; `model_type: llada`): LLaMA blocks with LLaDA's own tensor names,
    /// full attention, the prediction for token `i` read at position `i`.
    Llada,
    /// Dream (Ye et al. 2025; `model_type: Dream`): Qwen2 blocks (q/k/v biases), full attention,
    /// logits shifted by one: the prediction for token `i` is read at position `i − 1`.
    Dream,
    /// SDAR (JetAstra; `model_type: sdar`): Qwen3 blocks, block-causal attention over blocks of
    /// `block_size` (block diffusion), no shift.
    Sdar {
        /// The block length the checkpoint decodes with.
        block_size: usize,
    },
    /// dllm's Tiny-A2D (`model_type: a2d-qwen3`): Qwen3 blocks adapted from an AR model to full
    /// attention, no shift.
    A2dQwen3,
}

impl Architecture {
    /// Whether the prediction for token `i` is read at position `i − 1` (Dream keeps the
    /// next-token head of its autoregressive initialisation).
    pub fn shifts_logits(self) -> bool {
        matches!(self, Self::Dream)
    }

    /// The block size of a block-diffusion checkpoint (block-causal attention), `None` for full
    /// attention.
    pub fn block_size(self) -> Option<usize> {
        match self {
            Self::Sdar { block_size } => Some(block_size),
            _ => None,
        }
    }
}

/// What a checkpoint's `config.json` says: the architecture, its sizes, and its mask token.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedConfig {
    /// The family.
    pub architecture: Architecture,
    /// The sizes and switches of the transformer.
    pub model: LlamaConfig,
    /// The mask token's id, when the config names it.
    pub mask_id: Option<u32>,
    /// The end-of-text id (the first, when the config lists several), when named.
    pub eos_id: Option<u32>,
    /// The beginning-of-text id, when named.
    pub bos_id: Option<u32>,
    /// The padding id, when named.
    pub pad_id: Option<u32>,
}

/// The special-token ids a `config.json` may name, each an id, a list of ids (the first is
/// taken) or null.
#[derive(Debug, Default, Deserialize)]
struct SpecialIds {
    #[serde(default, deserialize_with = "first_id")]
    eos_token_id: Option<u32>,
    #[serde(default, deserialize_with = "first_id")]
    bos_token_id: Option<u32>,
    #[serde(default, deserialize_with = "first_id")]
    pad_token_id: Option<u32>,
}

fn first_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    Ok(crate::hf::token_ids(deserializer)?.first().copied())
}

/// A checkpoint loaded from a Hugging Face directory.
#[derive(Debug)]
pub struct Pretrained {
    /// The network.
    pub model: LlamaLm,
    /// What its config says.
    pub config: ImportedConfig,
}

/// SDAR's released chat models decode blocks of 4 (JetAstra/SDAR README) when the config does
/// not name a block size.
const SDAR_DEFAULT_BLOCK: usize = 4;

/// The `config.json` fields of a Qwen2/Qwen3-style (Hugging Face) checkpoint that this library
/// reads; the others are ignored.
#[derive(Debug, Deserialize)]
struct HfConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: usize,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    tie_word_embeddings: bool,
    attention_bias: Option<bool>,
    hidden_act: Option<String>,
    use_sliding_window: Option<bool>,
    mask_token_id: Option<u32>,
    block_size: Option<usize>,
}

/// transformers ≥ 5 writes the rotary settings as `rope_parameters`.
#[derive(Debug, Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

/// The `config.json` fields of a LLaDA checkpoint (its own names, `configuration_llada.py`).
#[derive(Debug, Deserialize)]
struct LladaConfig {
    d_model: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: Option<usize>,
    mlp_hidden_size: usize,
    vocab_size: usize,
    embedding_size: Option<usize>,
    max_sequence_length: usize,
    rope_theta: Option<f64>,
    rms_norm_eps: Option<f64>,
    #[serde(default)]
    include_qkv_bias: bool,
    #[serde(default)]
    include_bias: bool,
    #[serde(default)]
    attention_layer_norm: bool,
    #[serde(default)]
    weight_tying: bool,
    mask_token_id: Option<u32>,
    block_type: Option<String>,
    activation_type: Option<String>,
    layer_norm_type: Option<String>,
    #[serde(default)]
    alibi: bool,
    #[serde(default)]
    scale_logits: bool,
    #[serde(default)]
    input_emb_norm: bool,
}

/// Only `model_type` first, to pick the reader.
#[derive(Debug, Deserialize)]
struct ModelType {
    model_type: String,
}

fn unsupported(
    context: &'static str,
    name: &'static str,
    value: impl std::fmt::Debug,
) -> CoreError {
    CoreError::Unsupported {
        context,
        name,
        value: format!("{value:?}"),
        supported: "the settings of the released LLaDA, Dream, SDAR and Tiny-A2D checkpoints",
    }
}

/// `Err` naming `name` unless `holds`.
fn require(
    holds: bool,
    context: &'static str,
    name: &'static str,
    value: impl std::fmt::Debug,
) -> Result<(), CoreError> {
    if holds { Ok(()) } else { Err(unsupported(context, name, value)) }
}

impl ImportedConfig {
    /// Reads `config.json`.
    ///
    /// # Errors
    /// [`CoreError::Io`] and [`CoreError::Json`] naming the file (a missing field included);
    /// [`CoreError::Unsupported`] for a `model_type` other than `llada`, `Dream`, `sdar` and
    /// `a2d-qwen3`, or a setting this implementation does not have (another activation, ALiBi,
    /// rope scaling, sliding windows, LLaDA's full-width attention norm); as
    /// [`LlamaConfig::validate`].
    pub fn from_json_file(path: &Path) -> Result<Self, CoreError> {
        let ModelType { model_type } = read_json(path)?;
        let ids: SpecialIds = read_json(path)?;
        let mut config = match model_type.to_ascii_lowercase().as_str() {
            "llada" => Self::from_llada(read_json(path)?)?,
            "dream" => Self::from_hf(read_json(path)?, Architecture::Dream)?,
            "sdar" | "a2d-qwen3" => {
                let hf: HfConfig = read_json(path)?;
                let architecture = if model_type.eq_ignore_ascii_case("sdar") {
                    Architecture::Sdar { block_size: hf.block_size.unwrap_or(SDAR_DEFAULT_BLOCK) }
                } else {
                    Architecture::A2dQwen3
                };
                Self::from_hf(hf, architecture)?
            }
            _ => {
                return Err(CoreError::Unsupported {
                    context: "checkpoint config",
                    name: "model_type",
                    value: model_type,
                    supported: "llada, Dream, sdar, a2d-qwen3",
                });
            }
        };
        (config.eos_id, config.bos_id, config.pad_id) =
            (ids.eos_token_id, ids.bos_token_id, ids.pad_token_id);
        config.model.validate()?;
        if let Some(block_size) = config.architecture.block_size() {
            crate::error::ensure_size(
                block_size > 0,
                "checkpoint config",
                "block_size",
                block_size,
                "at least 1",
            )?;
        }
        Ok(config)
    }

    fn from_hf(hf: HfConfig, architecture: Architecture) -> Result<Self, CoreError> {
        const CONTEXT: &str = "checkpoint config";
        require(
            hf.hidden_act.as_deref().is_none_or(|a| a == "silu"),
            CONTEXT,
            "hidden_act",
            &hf.hidden_act,
        )?;
        require(
            hf.rope_scaling.as_ref().is_none_or(|v| v.is_null()),
            CONTEXT,
            "rope_scaling",
            &hf.rope_scaling,
        )?;
        require(
            !hf.use_sliding_window.unwrap_or(false),
            CONTEXT,
            "use_sliding_window",
            hf.use_sliding_window,
        )?;
        let rope_type = hf.rope_parameters.as_ref().and_then(|p| p.rope_type.clone());
        require(
            rope_type.as_deref().is_none_or(|t| t == "default"),
            CONTEXT,
            "rope_type",
            &rope_type,
        )?;
        let rope_theta = hf
            .rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(hf.rope_theta)
            .unwrap_or(10000.0);
        // Qwen2 (Dream) always has q/k/v biases; Qwen3 (SDAR, Tiny-A2D) says so in
        // `attention_bias`, and has per-head q/k norms.
        let qwen3 = !matches!(architecture, Architecture::Dream);
        let qkv_bias = if qwen3 { hf.attention_bias.unwrap_or(false) } else { true };
        let num_heads = hf.num_attention_heads;
        let model = LlamaConfig::new(
            hf.vocab_size,
            hf.hidden_size,
            hf.intermediate_size,
            hf.num_hidden_layers,
            num_heads,
            hf.num_key_value_heads.unwrap_or(num_heads),
            hf.head_dim.unwrap_or(hf.hidden_size / num_heads.max(1)),
            hf.max_position_embeddings,
        )
        .with_rms_norm_eps(hf.rms_norm_eps.unwrap_or(1e-6))
        .with_rope_theta(rope_theta)
        .with_qkv_bias(qkv_bias)
        .with_qk_norm(qwen3)
        .with_tie_embeddings(hf.tie_word_embeddings);
        Ok(Self {
            architecture,
            model,
            mask_id: hf.mask_token_id,
            eos_id: None,
            bos_id: None,
            pad_id: None,
        })
    }

    fn from_llada(c: LladaConfig) -> Result<Self, CoreError> {
        const CONTEXT: &str = "LLaDA config";
        require(
            c.block_type.as_deref().is_none_or(|t| t == "llama"),
            CONTEXT,
            "block_type",
            &c.block_type,
        )?;
        require(
            c.activation_type.as_deref().is_none_or(|t| t == "silu"),
            CONTEXT,
            "activation_type",
            &c.activation_type,
        )?;
        require(
            c.layer_norm_type.as_deref().is_none_or(|t| t == "rms"),
            CONTEXT,
            "layer_norm_type",
            &c.layer_norm_type,
        )?;
        require(!c.alibi, CONTEXT, "alibi", c.alibi)?;
        require(!c.include_bias, CONTEXT, "include_bias", c.include_bias)?;
        require(!c.attention_layer_norm, CONTEXT, "attention_layer_norm", c.attention_layer_norm)?;
        require(!c.scale_logits, CONTEXT, "scale_logits", c.scale_logits)?;
        require(!c.input_emb_norm, CONTEXT, "input_emb_norm", c.input_emb_norm)?;
        let model = LlamaConfig::new(
            c.embedding_size.unwrap_or(c.vocab_size),
            c.d_model,
            c.mlp_hidden_size,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads.unwrap_or(c.n_heads),
            c.d_model / c.n_heads.max(1),
            c.max_sequence_length,
        )
        .with_rms_norm_eps(c.rms_norm_eps.unwrap_or(1e-5))
        .with_rope_theta(c.rope_theta.unwrap_or(10000.0))
        .with_qkv_bias(c.include_qkv_bias)
        .with_tie_embeddings(c.weight_tying);
        Ok(Self {
            architecture: Architecture::Llada,
            model,
            mask_id: c.mask_token_id,
            eos_id: None,
            bos_id: None,
            pad_id: None,
        })
    }

    /// Every tensor the checkpoint must hold, under the family's names.
    pub fn expected_tensors(&self) -> Vec<ExpectedTensor> {
        let c = &self.model;
        let (d, ff, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let (q_out, kv_out) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let llada = self.architecture == Architecture::Llada;
        let names = if llada { &LLADA_NAMES } else { &HF_NAMES };
        let mut expected = vec![ExpectedTensor::new(names.embed, "embed.weight", vec![v, d])];
        for i in 0..c.num_layers {
            let layer = |suffix: &str, path: &str, shape: Vec<usize>| {
                ExpectedTensor::new(
                    format!("{}{i}.{suffix}", names.layer_prefix),
                    format!("layers.{i}.{path}"),
                    shape,
                )
            };
            expected.push(layer(names.input_norm, "input_norm.weight", vec![d]));
            for (suffix, path, out) in
                [(names.q, "q", q_out), (names.k, "k", kv_out), (names.v, "v", kv_out)]
            {
                expected.push(layer(
                    &format!("{suffix}.weight"),
                    &format!("{path}.weight"),
                    vec![out, d],
                ));
                if c.qkv_bias {
                    expected.push(layer(
                        &format!("{suffix}.bias"),
                        &format!("{path}.bias"),
                        vec![out],
                    ));
                }
            }
            expected.push(layer(names.o, "o.weight", vec![d, q_out]));
            if c.qk_norm {
                expected.push(layer("self_attn.q_norm.weight", "q_norm.weight", vec![c.head_dim]));
                expected.push(layer("self_attn.k_norm.weight", "k_norm.weight", vec![c.head_dim]));
            }
            expected.push(layer(names.post_norm, "post_norm.weight", vec![d]));
            expected.push(layer(names.gate, "gate.weight", vec![ff, d]));
            expected.push(layer(names.up, "up.weight", vec![ff, d]));
            expected.push(layer(names.down, "down.weight", vec![d, ff]));
        }
        expected.push(ExpectedTensor::new(names.norm, "norm.weight", vec![d]));
        if !c.tie_embeddings {
            expected.push(ExpectedTensor::new(names.head, "head.weight", vec![v, d]));
        }
        expected
    }

    /// Keys a checkpoint may hold that the model does not read: rotary buffers, and the head a
    /// tied checkpoint may still store.
    fn is_ignored(&self, key: &str) -> bool {
        let names = if self.architecture == Architecture::Llada { &LLADA_NAMES } else { &HF_NAMES };
        key.ends_with("rotary_emb.inv_freq") || (self.model.tie_embeddings && key == names.head)
    }
}

/// A family's tensor names: the global ones, and the suffixes after `{layer_prefix}{i}.`.
struct Names {
    embed: &'static str,
    layer_prefix: &'static str,
    input_norm: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    o: &'static str,
    post_norm: &'static str,
    gate: &'static str,
    up: &'static str,
    down: &'static str,
    norm: &'static str,
    head: &'static str,
}

/// Hugging Face's LLaMA / Qwen2 / Qwen3 names (Dream, SDAR, Tiny-A2D).
const HF_NAMES: Names = Names {
    embed: "model.embed_tokens.weight",
    layer_prefix: "model.layers.",
    input_norm: "input_layernorm.weight",
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
    o: "self_attn.o_proj.weight",
    post_norm: "post_attention_layernorm.weight",
    gate: "mlp.gate_proj.weight",
    up: "mlp.up_proj.weight",
    down: "mlp.down_proj.weight",
    norm: "model.norm.weight",
    head: "lm_head.weight",
};

/// LLaDA's names (`modeling_llada.py`): the block's `ff_proj` is the gate (through SiLU) and
/// its `ff_out` the down projection; the model-level `ff_out` is the output head.
const LLADA_NAMES: Names = Names {
    embed: "model.transformer.wte.weight",
    layer_prefix: "model.transformer.blocks.",
    input_norm: "attn_norm.weight",
    q: "q_proj",
    k: "k_proj",
    v: "v_proj",
    o: "attn_out.weight",
    post_norm: "ff_norm.weight",
    gate: "ff_proj.weight",
    up: "up_proj.weight",
    down: "ff_out.weight",
    norm: "model.transformer.ln_f.weight",
    head: "model.transformer.ff_out.weight",
};

impl Pretrained {
    /// Loads the checkpoint in `dir`: `config.json` and `model.safetensors`, the shards of
    /// `model.safetensors.index.json`, or `pytorch_model.bin`; weights of any float dtype,
    /// cast to `f32`.
    ///
    /// # Errors
    /// As [`ImportedConfig::from_json_file`] and [`weight_files`]; as [`read_tensors`] for a
    /// file that does not read; [`CoreError::MissingTensor`], [`CoreError::UnexpectedTensor`]
    /// and [`CoreError::TensorShape`] naming the key for weights that do not fit the config.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self, CoreError> {
        let dir = dir.as_ref();
        let config = ImportedConfig::from_json_file(&dir.join("config.json"))?;
        let (files, source) = weight_files(dir)?;
        let tensors = read_tensors(&files)?;
        let ignored = |key: &str| config.is_ignored(key);
        let expected = config.expected_tensors();
        let model =
            load_module(&tensors, &expected, ignored, &source, || config.model.init(device))?;
        Ok(Self { model, config })
    }
}

/// The checkpoint as its family reads it: for Dream the hidden state of position `i − 1` gives
/// the prediction for token `i` (position 0 keeps its own), so samplers and objectives read
/// logits at the positions they score, whatever the family.
impl TokenModel for Pretrained {
    /// # Shapes
    /// - tokens `[batch, n]` → `[batch, n, hidden]`
    ///
    /// # Panics
    /// As [`LlamaLm::forward_hidden`]; for a shifted family (Dream), also if the input carries a
    /// KV cache, since the shifted first position would need the cached prefix's last hidden
    /// state.
    fn forward_hidden(&self, input: DenoiserInput) -> DenoiserOutput {
        let shift = self.config.architecture.shifts_logits();
        assert!(
            !(shift && input.has_cache()),
            "Dream's shifted logits are read without a KV cache"
        );
        let DenoiserOutput { output, cache } = self.model.forward_hidden(input);
        if !shift {
            return DenoiserOutput { output, cache };
        }
        let n = output.dims()[1];
        if n < 2 {
            // One position: its own hidden state is all there is.
            return DenoiserOutput { output, cache };
        }
        let shifted =
            Tensor::cat(vec![output.clone().narrow(1, 0, 1), output.narrow(1, 0, n - 1)], 1);
        DenoiserOutput { output: shifted, cache }
    }

    fn head_rows(&self, hidden: Tensor<2>) -> Tensor<2> {
        self.model.head_rows(hidden)
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn max_seq_len(&self) -> usize {
        self.model.max_seq_len()
    }

    fn is_time_conditioned(&self) -> bool {
        false
    }

    fn device(&self) -> Device {
        self.model.device()
    }

    fn supports_kv_cache(&self) -> bool {
        !self.config.architecture.shifts_logits()
    }
}
