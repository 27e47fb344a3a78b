//! Importing a DiffusionGemma checkpoint from its Hugging Face directory (`config.json`, sharded
//! safetensors, `generation_config.json`) through the shared import path ([`crate::hf`]).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use serde::Deserialize;

use super::config::{AttentionKind, DiffusionGemmaConfig, LayerAttention};
use super::model::DiffusionGemmaLm;
use crate::error::CoreError;
use crate::hf::{ExpectedTensor, load_module, read_json, read_tensors, token_ids, weight_files};

const CONTEXT: &str = "DiffusionGemma config";

/// The decoding settings a checkpoint ships in `generation_config.json`; a setting it leaves
/// out (or sets to null) is `None`, and the sampler falls back to transformers' defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationDefaults {
    /// Tokens to generate.
    pub max_new_tokens: Option<usize>,
    /// Denoising steps per canvas, at most.
    pub max_denoising_steps: Option<usize>,
    /// `γ` of the entropy-bound acceptance rule.
    pub entropy_bound: Option<f64>,
    /// Temperature at the last step.
    pub t_min: Option<f64>,
    /// Temperature at the first step.
    pub t_max: Option<f64>,
    /// Steps the argmax canvas must stay unchanged before the canvas may stop.
    pub stability_threshold: Option<usize>,
    /// Mean token entropy below which a stable canvas stops.
    pub confidence_threshold: Option<f64>,
}

/// What a DiffusionGemma checkpoint's files say beside the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionGemmaInfo {
    /// The text model.
    pub model: DiffusionGemmaConfig,
    /// The end-of-text ids (the released checkpoint has three): `generation_config.json`'s, else
    /// `config.json`'s.
    pub eos_ids: Vec<u32>,
    /// The padding id, which replaces the tokens after an end of text (`generation_config.json`'s,
    /// else the text config's).
    pub pad_id: Option<u32>,
    /// The beginning-of-text id.
    pub bos_id: Option<u32>,
    /// The image placeholder id: prompts holding it need the vision tower, which this library
    /// does not have.
    pub image_token_id: Option<u32>,
    /// `generation_config.json`, where present.
    pub generation: GenerationDefaults,
}

/// A DiffusionGemma checkpoint loaded from a Hugging Face directory.
#[derive(Debug)]
pub struct DiffusionGemma {
    /// The network.
    pub model: DiffusionGemmaLm,
    /// What its files say.
    pub info: DiffusionGemmaInfo,
}

/// The top level of `config.json` (`DiffusionGemmaConfig` of transformers).
#[derive(Debug, Deserialize)]
struct TopConfig {
    model_type: String,
    text_config: TextConfig,
    #[serde(default = "default_canvas")]
    canvas_length: usize,
    #[serde(default, deserialize_with = "token_ids")]
    eos_token_id: Vec<u32>,
    image_token_id: Option<u32>,
    tie_word_embeddings: Option<bool>,
}

fn default_canvas() -> usize {
    256
}

fn default_softcap() -> Option<f64> {
    Some(30.0)
}

/// `text_config` (`DiffusionGemmaTextConfig`); defaults as transformers 5.24 fills them.
#[derive(Debug, Deserialize)]
struct TextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    #[serde(default = "default_head_dim")]
    head_dim: usize,
    hidden_activation: Option<String>,
    max_position_embeddings: usize,
    rms_norm_eps: Option<f64>,
    rope_parameters: Option<BTreeMap<String, RopeParameters>>,
    #[serde(default)]
    attention_bias: bool,
    sliding_window: Option<usize>,
    layer_types: Option<Vec<String>>,
    #[serde(default = "default_softcap")]
    final_logit_softcapping: Option<f64>,
    use_bidirectional_attention: Option<String>,
    num_experts: Option<usize>,
    top_k_experts: Option<usize>,
    moe_intermediate_size: Option<usize>,
    per_layer_config: Option<BTreeMap<String, PerLayer>>,
    global_head_dim: Option<usize>,
    num_global_key_value_heads: Option<usize>,
    tie_word_embeddings: Option<bool>,
    pad_token_id: Option<u32>,
    bos_token_id: Option<u32>,
    #[serde(default, deserialize_with = "token_ids")]
    eos_token_id: Vec<u32>,
}

fn default_head_dim() -> usize {
    256
}

#[derive(Debug, Deserialize)]
struct RopeParameters {
    rope_type: Option<String>,
    rope_theta: Option<f64>,
    partial_rotary_factor: Option<f64>,
    factor: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct PerLayer {
    head_dim: Option<usize>,
    num_key_value_heads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
struct GenerationFile {
    max_new_tokens: Option<usize>,
    max_denoising_steps: Option<usize>,
    sampler_config: Option<SamplerFile>,
    t_min: Option<f64>,
    t_max: Option<f64>,
    stability_threshold: Option<usize>,
    confidence_threshold: Option<f64>,
    #[serde(default, deserialize_with = "token_ids")]
    eos_token_id: Vec<u32>,
    pad_token_id: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct SamplerFile {
    entropy_bound: Option<f64>,
}

fn unsupported(name: &'static str, value: impl std::fmt::Debug) -> CoreError {
    CoreError::Unsupported {
        context: CONTEXT,
        name,
        value: format!("{value:?}"),
        supported: "the settings of transformers' DiffusionGemma text model",
    }
}

fn require(holds: bool, name: &'static str, value: impl std::fmt::Debug) -> Result<(), CoreError> {
    if holds { Ok(()) } else { Err(unsupported(name, value)) }
}

impl DiffusionGemmaInfo {
    /// Reads `config.json` and, beside it, `generation_config.json` if there is one.
    ///
    /// # Errors
    /// [`CoreError::Io`] and [`CoreError::Json`] naming the file; [`CoreError::Unsupported`]
    /// for a `model_type` other than `diffusion_gemma`, a mixture-of-experts field left unset
    /// (transformers cannot build the model either), untied embeddings, bidirectional encoder
    /// attention (`use_bidirectional_attention: "all"`), another activation, or rotary settings
    /// other than standard and "proportional" RoPE; as [`DiffusionGemmaConfig::validate`].
    pub fn from_json_file(path: &Path) -> Result<Self, CoreError> {
        let top: TopConfig = read_json(path)?;
        require(top.model_type == "diffusion_gemma", "model_type", &top.model_type)?;
        let text = top.text_config;
        require(
            text.hidden_activation.as_deref().is_none_or(|a| a == "gelu_pytorch_tanh"),
            "hidden_activation",
            &text.hidden_activation,
        )?;
        require(
            text.use_bidirectional_attention.as_deref().is_none_or(|a| a == "vision"),
            "use_bidirectional_attention",
            &text.use_bidirectional_attention,
        )?;
        let tied =
            text.tie_word_embeddings.unwrap_or(true) && top.tie_word_embeddings.unwrap_or(true);
        require(tied, "tie_word_embeddings", tied)?;
        let layers = layer_kinds(&text)?;
        let expert_field =
            |name, value: Option<usize>| value.ok_or_else(|| unsupported(name, "null"));
        let num_experts = expert_field("num_experts", text.num_experts)?;
        let top_k_experts = expert_field("top_k_experts", text.top_k_experts)?;
        let moe_intermediate_size =
            expert_field("moe_intermediate_size", text.moe_intermediate_size)?;
        let (full_head_dim, full_kv_heads) = full_layer_shape(&text, &layers)?;
        let sliding = LayerAttention {
            head_dim: text.head_dim,
            num_kv_heads: text.num_key_value_heads,
            rope_theta: 10_000.0,
            rotated_pairs: text.head_dim / 2,
            value_projection: true,
        };
        let full = LayerAttention {
            head_dim: full_head_dim,
            num_kv_heads: full_kv_heads,
            rope_theta: 1_000_000.0,
            rotated_pairs: full_head_dim / 8,
            value_projection: false,
        };
        let (sliding, full) = apply_rope(&text, sliding, full)?;
        let model = DiffusionGemmaConfig {
            vocab_size: text.vocab_size,
            hidden_size: text.hidden_size,
            intermediate_size: text.intermediate_size,
            num_heads: text.num_attention_heads,
            layers,
            sliding,
            full,
            sliding_window: text.sliding_window.unwrap_or(512),
            num_experts,
            top_k_experts,
            moe_intermediate_size,
            rms_norm_eps: text.rms_norm_eps.unwrap_or(1e-6),
            final_logit_softcap: text.final_logit_softcapping,
            attention_bias: text.attention_bias,
            canvas_length: top.canvas_length,
            max_seq_len: text.max_position_embeddings,
        };
        model.validate()?;
        let generation_path = path.with_file_name("generation_config.json");
        let generation: GenerationFile = if generation_path.is_file() {
            read_json(&generation_path)?
        } else {
            Default::default()
        };
        // What `generate` reads: the generation config's ids first, then the model config's.
        let eos_ids = [generation.eos_token_id, top.eos_token_id, text.eos_token_id]
            .into_iter()
            .find(|ids| !ids.is_empty())
            .unwrap_or_default();
        Ok(Self {
            model,
            eos_ids,
            pad_id: generation.pad_token_id.or(text.pad_token_id),
            bos_id: text.bos_token_id,
            image_token_id: top.image_token_id,
            generation: GenerationDefaults {
                max_new_tokens: generation.max_new_tokens,
                max_denoising_steps: generation.max_denoising_steps,
                entropy_bound: generation.sampler_config.and_then(|s| s.entropy_bound),
                t_min: generation.t_min,
                t_max: generation.t_max,
                stability_threshold: generation.stability_threshold,
                confidence_threshold: generation.confidence_threshold,
            },
        })
    }

    /// Every tensor the checkpoint must hold. The encoder's and decoder's shared weights are
    /// stored once, under `prefix` (`model.decoder.` as `save_pretrained` writes them, or
    /// `model.encoder.language_model.`); the per-layer scalars of both stacks and the decoder's
    /// self-conditioning block are their own.
    fn expected_tensors(&self, prefix: &str) -> Vec<ExpectedTensor> {
        let c = &self.model;
        let (d, ff, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let (experts, inner) = (c.num_experts, c.moe_intermediate_size);
        let shared = |key: &str, path: &str, shape: Vec<usize>| {
            ExpectedTensor::new(format!("{prefix}{key}"), path, shape)
        };
        let mut expected = vec![
            shared("embed_tokens.weight", "embed.weight", vec![v, d]),
            shared("norm.weight", "norm.weight", vec![d]),
        ];
        for (i, &kind) in c.layers.iter().enumerate() {
            let shape = c.layer_attention(kind);
            let (q_out, kv_out) =
                (c.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim);
            let layer = |key: &str, path: &str, shape: Vec<usize>| {
                shared(&format!("layers.{i}.{key}"), &format!("layers.{i}.{path}"), shape)
            };
            let mut projections = vec![("q_proj", "q", q_out), ("k_proj", "k", kv_out)];
            if shape.value_projection {
                projections.push(("v_proj", "v", kv_out));
            }
            for (key, path, out) in projections {
                expected.push(layer(
                    &format!("self_attn.{key}.weight"),
                    &format!("attention.{path}.weight"),
                    vec![out, d],
                ));
                if c.attention_bias {
                    let (key, path) =
                        (format!("self_attn.{key}.bias"), format!("attention.{path}.bias"));
                    expected.push(layer(&key, &path, vec![out]));
                }
            }
            expected.push(layer("self_attn.o_proj.weight", "attention.o.weight", vec![d, q_out]));
            if c.attention_bias {
                expected.push(layer("self_attn.o_proj.bias", "attention.o.bias", vec![d]));
            }
            for (key, path, size) in [
                ("self_attn.q_norm.weight", "attention.q_norm.weight", shape.head_dim),
                ("self_attn.k_norm.weight", "attention.k_norm.weight", shape.head_dim),
                ("input_layernorm.weight", "input_norm.weight", d),
                ("post_attention_layernorm.weight", "post_attention_norm.weight", d),
                ("pre_feedforward_layernorm.weight", "pre_feedforward_norm.weight", d),
                ("post_feedforward_layernorm_1.weight", "post_feedforward_norm_1.weight", d),
                ("pre_feedforward_layernorm_2.weight", "pre_feedforward_norm_2.weight", d),
                ("post_feedforward_layernorm_2.weight", "post_feedforward_norm_2.weight", d),
                ("post_feedforward_layernorm.weight", "post_feedforward_norm.weight", d),
                ("router.scale", "experts.scale", d),
                ("router.per_expert_scale", "experts.per_expert_scale", experts),
            ] {
                expected.push(layer(key, path, vec![size]));
            }
            expected.push(layer("mlp.gate_proj.weight", "mlp.gate.weight", vec![ff, d]));
            expected.push(layer("mlp.up_proj.weight", "mlp.up.weight", vec![ff, d]));
            expected.push(layer("mlp.down_proj.weight", "mlp.down.weight", vec![d, ff]));
            expected.push(layer("router.proj.weight", "experts.router.weight", vec![experts, d]));
            expected.push(layer(
                "experts.gate_up_proj",
                "experts.gate_up",
                vec![experts, 2 * inner, d],
            ));
            expected.push(layer("experts.down_proj", "experts.down", vec![experts, d, inner]));
            expected.push(ExpectedTensor::new(
                format!("{ENCODER}layers.{i}.layer_scalar"),
                format!("layers.{i}.encoder_scalar"),
                vec![1],
            ));
            expected.push(ExpectedTensor::new(
                format!("{DECODER}layers.{i}.layer_scalar"),
                format!("layers.{i}.decoder_scalar"),
                vec![1],
            ));
        }
        for (key, path, shape) in [
            ("pre_norm.weight", "pre_norm.weight", vec![d]),
            ("gate_proj.weight", "mlp.gate.weight", vec![ff, d]),
            ("up_proj.weight", "mlp.up.weight", vec![ff, d]),
            ("down_proj.weight", "mlp.down.weight", vec![d, ff]),
        ] {
            expected.push(ExpectedTensor::new(
                format!("{DECODER}self_conditioning.{key}"),
                format!("self_conditioning.{path}"),
                shape,
            ));
        }
        expected
    }
}

/// Where transformers' `DiffusionGemmaModel` keeps the encoder's text model and the decoder.
const ENCODER: &str = "model.encoder.language_model.";
const DECODER: &str = "model.decoder.";

/// The layer kinds: `layer_types` if given, else transformers' default pattern (every sixth
/// layer global); the last layer is always global, as transformers forces it.
fn layer_kinds(text: &TextConfig) -> Result<Vec<AttentionKind>, CoreError> {
    let mut kinds = match &text.layer_types {
        Some(types) => {
            crate::error::ensure_size(
                types.len() == text.num_hidden_layers,
                CONTEXT,
                "layer_types",
                types.len(),
                format!("one entry per layer ({})", text.num_hidden_layers),
            )?;
            types
                .iter()
                .map(|t| match t.as_str() {
                    "sliding_attention" => Ok(AttentionKind::Sliding),
                    "full_attention" => Ok(AttentionKind::Full),
                    _ => Err(unsupported("layer_types", t)),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        None => (0..text.num_hidden_layers)
            .map(|i| if (i + 1) % 6 == 0 { AttentionKind::Full } else { AttentionKind::Sliding })
            .collect(),
    };
    if let Some(last) = kinds.last_mut() {
        *last = AttentionKind::Full;
    }
    Ok(kinds)
}

/// The global layers' head size and key/value heads: with `per_layer_config` (as transformers
/// serialises it), each global layer's entry over the text config's `head_dim` and
/// `num_key_value_heads`, every global layer alike; without it, `global_head_dim` (default 512)
/// and `num_global_key_value_heads` (default: the sliding layers' count).
fn full_layer_shape(
    text: &TextConfig,
    kinds: &[AttentionKind],
) -> Result<(usize, usize), CoreError> {
    let Some(per_layer) = &text.per_layer_config else {
        let head_dim = text.global_head_dim.unwrap_or(512);
        return Ok((head_dim, text.num_global_key_value_heads.unwrap_or(text.num_key_value_heads)));
    };
    for index in per_layer.keys() {
        let layer = index.parse::<usize>().ok().filter(|&i| i < kinds.len());
        require(layer.is_some_and(|i| kinds[i] == AttentionKind::Full), "per_layer_config", index)?;
    }
    let shape_of = |layer: usize| {
        let overrides = per_layer.get(&layer.to_string());
        (
            overrides.and_then(|o| o.head_dim).unwrap_or(text.head_dim),
            overrides.and_then(|o| o.num_key_value_heads).unwrap_or(text.num_key_value_heads),
        )
    };
    let mut shapes = (0..kinds.len()).filter(|&i| kinds[i] == AttentionKind::Full).map(shape_of);
    let first = shapes.next().unwrap_or((text.head_dim, text.num_key_value_heads));
    require(
        shapes.all(|shape| shape == first),
        "per_layer_config",
        per_layer.keys().collect::<Vec<_>>(),
    )?;
    Ok(first)
}

/// The rotary settings of `rope_parameters` for each layer kind: "default" (every pair rotates)
/// or "proportional" (`⌊p · head_dim / 2⌋` pairs rotate, `p = partial_rotary_factor`).
fn apply_rope(
    text: &TextConfig,
    mut sliding: LayerAttention,
    mut full: LayerAttention,
) -> Result<(LayerAttention, LayerAttention), CoreError> {
    let Some(parameters) = &text.rope_parameters else {
        return Ok((sliding, full));
    };
    for (kind, shape) in [("sliding_attention", &mut sliding), ("full_attention", &mut full)] {
        let Some(rope) = parameters.get(kind) else { continue };
        require(rope.factor.is_none_or(|f| f == 1.0), "rope_parameters.factor", rope.factor)?;
        if let Some(theta) = rope.rope_theta {
            shape.rope_theta = theta;
        }
        let p = rope.partial_rotary_factor.unwrap_or(1.0);
        match rope.rope_type.as_deref().unwrap_or("default") {
            "default" => {
                require(p == 1.0, "rope_parameters.partial_rotary_factor", p)?;
                shape.rotated_pairs = shape.head_dim / 2;
            }
            "proportional" => {
                require(p > 0.0 && p <= 1.0, "rope_parameters.partial_rotary_factor", p)?;
                shape.rotated_pairs = ((p * shape.head_dim as f64) / 2.0).floor() as usize;
            }
            other => return Err(unsupported("rope_parameters.rope_type", other)),
        }
    }
    Ok((sliding, full))
}

impl DiffusionGemma {
    /// Loads the checkpoint in `dir`: `config.json`, `generation_config.json` if present, and
    /// `model.safetensors` or the shards of `model.safetensors.index.json`; weights of any
    /// float dtype, cast to `f32`. The vision tower's tensors are skipped.
    ///
    /// # Errors
    /// As [`DiffusionGemmaInfo::from_json_file`], [`weight_files`] and [`read_tensors`];
    /// [`CoreError::MissingTensor`], [`CoreError::UnexpectedTensor`] and
    /// [`CoreError::TensorShape`] naming the key for weights that do not fit the config.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self, CoreError> {
        let dir = dir.as_ref();
        let info = DiffusionGemmaInfo::from_json_file(&dir.join("config.json"))?;
        let (files, source) = weight_files(dir)?;
        let tensors = read_tensors(&files)?;
        let prefix = if tensors.contains_key(&format!("{DECODER}embed_tokens.weight")) {
            DECODER
        } else {
            ENCODER
        };
        let other = if prefix == DECODER { ENCODER } else { DECODER };
        let ignored = |key: &str| {
            key == "lm_head.weight"
                || key.starts_with("model.encoder.vision_tower.")
                || key.starts_with("model.encoder.embed_vision.")
                // The tied copy, if a file stores both.
                || (key.starts_with(other) && !key.ends_with("layer_scalar"))
        };
        let expected = info.expected_tensors(prefix);
        let model = load_module(&tensors, &expected, ignored, &source, || info.model.init(device))?;
        Ok(Self { model, info })
    }
}
