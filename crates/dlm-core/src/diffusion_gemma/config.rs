//! [`DiffusionGemmaConfig`]: the sizes and per-layer attention settings of a DiffusionGemma
//! text model.

use serde::{Deserialize, Serialize};

use crate::backbone::{MAX_LAYERS, MAX_SEQ_LEN, MAX_VOCAB_SIZE, MAX_WIDTH};
use crate::error::{CoreError, ensure_between, ensure_size, ensure_value};

const CONTEXT: &str = "DiffusionGemma config";

/// The two kinds of attention layer (Gemma's local/global interleaving).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// Attends to the last `sliding_window` positions (itself included) in the encoder; in the
    /// decoder, to the last `sliding_window − 1` cached positions and the whole canvas.
    Sliding,
    /// Attends to everything before it in the encoder, to the whole cache and canvas in the
    /// decoder.
    Full,
}

/// The attention shape of one kind of layer: DiffusionGemma's global layers have their own head
/// size, key/value head count and rotary settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerAttention {
    /// Size of each head.
    pub head_dim: usize,
    /// Key/value heads (a divisor of the query heads).
    pub num_kv_heads: usize,
    /// Base of the rotary frequencies, `θ`.
    pub rope_theta: f64,
    /// How many of the `head_dim / 2` frequency pairs rotate; the rest have frequency 0 (the
    /// identity). All of them for standard RoPE; `⌊p · head_dim / 2⌋` for transformers'
    /// "proportional" RoPE with `partial_rotary_factor = p`.
    pub rotated_pairs: usize,
    /// Whether the values have their own projection. Without one (DiffusionGemma's global
    /// layers), the values are the raw key projection, normalised: `v = RMSNorm(k_proj(x))`.
    pub value_projection: bool,
}

impl LayerAttention {
    /// The rotary inverse frequencies of this shape ([`rotary_frequencies`]).
    pub fn inverse_frequencies(&self) -> Vec<f32> {
        rotary_frequencies(self.head_dim, self.rope_theta, self.rotated_pairs)
    }
}

/// Rotary inverse frequencies for heads of `head_dim`: `ω_j = θ^(−2j/head_dim)` for the
/// `rotated_pairs` first pairs and 0 after (transformers' `_compute_proportional_rope_parameters`:
/// the exponent divides by the full head size, also when only a part of it rotates; with every
/// pair rotated it is standard RoPE).
pub fn rotary_frequencies(head_dim: usize, theta: f64, rotated_pairs: usize) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|j| {
            if j < rotated_pairs {
                (1.0 / theta.powf(2.0 * j as f64 / head_dim as f64)) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// A DiffusionGemma text model (Google 2026; transformers' `DiffusionGemmaTextConfig`): Gemma 4
/// blocks (sandwich RMSNorms, q/k/v norms, attention scale 1, a dense GeGLU MLP beside a
/// mixture of experts, a per-layer output scalar), local and global attention layers, scaled
/// embeddings, soft-capped logits, and the decoder's self-conditioning block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusionGemmaConfig {
    /// Rows of the token embedding (and of the tied output head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Inner width of the dense MLP and of the self-conditioning MLP.
    pub intermediate_size: usize,
    /// Query heads (every layer).
    pub num_heads: usize,
    /// The kind of each layer, in order.
    pub layers: Vec<AttentionKind>,
    /// Shape of the sliding-window layers.
    pub sliding: LayerAttention,
    /// Shape of the global layers.
    pub full: LayerAttention,
    /// Positions a sliding layer sees, itself included.
    pub sliding_window: usize,
    /// Experts of every layer's mixture.
    pub num_experts: usize,
    /// Experts each token is routed to.
    pub top_k_experts: usize,
    /// Inner width of each expert.
    pub moe_intermediate_size: usize,
    /// `ε` of every RMSNorm.
    pub rms_norm_eps: f64,
    /// `c` of the final soft-cap `c · tanh(logits / c)`, if any.
    pub final_logit_softcap: Option<f64>,
    /// Biases on the attention projections.
    pub attention_bias: bool,
    /// Tokens per canvas (the block length of the block diffusion).
    pub canvas_length: usize,
    /// The context length of the checkpoint.
    pub max_seq_len: usize,
}

impl DiffusionGemmaConfig {
    /// The attention shape of the layers of `kind`.
    pub fn layer_attention(&self, kind: AttentionKind) -> &LayerAttention {
        match kind {
            AttentionKind::Sliding => &self.sliding,
            AttentionKind::Full => &self.full,
        }
    }

    /// Checks every size against its cap and the head layouts.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), CoreError> {
        let between = |low, name, value, cap| ensure_between(CONTEXT, name, value, low, cap);
        between(2, "vocab_size", self.vocab_size, MAX_VOCAB_SIZE)?;
        between(1, "hidden_size", self.hidden_size, MAX_WIDTH)?;
        between(1, "intermediate_size", self.intermediate_size, 64 * MAX_WIDTH)?;
        between(1, "num_heads", self.num_heads, MAX_WIDTH)?;
        between(1, "layers", self.layers.len(), MAX_LAYERS)?;
        between(2, "sliding_window", self.sliding_window, MAX_SEQ_LEN)?;
        between(1, "num_experts", self.num_experts, 1 << 14)?;
        between(1, "top_k_experts", self.top_k_experts, self.num_experts)?;
        between(1, "moe_intermediate_size", self.moe_intermediate_size, 64 * MAX_WIDTH)?;
        between(1, "canvas_length", self.canvas_length, MAX_SEQ_LEN)?;
        between(1, "max_seq_len", self.max_seq_len, MAX_SEQ_LEN)?;
        let kinds = [
            (&self.sliding, ["sliding.head_dim", "sliding.num_kv_heads", "sliding.rotated_pairs"]),
            (&self.full, ["full.head_dim", "full.num_kv_heads", "full.rotated_pairs"]),
        ];
        for (shape, [head_dim, kv_heads, pairs]) in kinds {
            between(2, head_dim, shape.head_dim, MAX_WIDTH)?;
            ensure_size(
                shape.head_dim.is_multiple_of(2),
                CONTEXT,
                head_dim,
                shape.head_dim,
                "an even size (rotary embeddings rotate pairs)",
            )?;
            ensure_size(
                shape.num_kv_heads > 0 && self.num_heads.is_multiple_of(shape.num_kv_heads),
                CONTEXT,
                kv_heads,
                shape.num_kv_heads,
                format!("a divisor of num_heads = {}", self.num_heads),
            )?;
            ensure_size(
                shape.rotated_pairs <= shape.head_dim / 2,
                CONTEXT,
                pairs,
                shape.rotated_pairs,
                format!("at most head_dim / 2 = {}", shape.head_dim / 2),
            )?;
            ensure_size(
                self.num_heads * shape.head_dim <= MAX_WIDTH,
                CONTEXT,
                "num_heads · head_dim",
                self.num_heads * shape.head_dim,
                format!("at most {MAX_WIDTH}"),
            )?;
            ensure_value(
                shape.rope_theta > 1.0 && shape.rope_theta.is_finite(),
                CONTEXT,
                "rope_theta",
                shape.rope_theta,
                "a finite value > 1",
            )?;
        }
        ensure_value(
            self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0,
            CONTEXT,
            "rms_norm_eps",
            self.rms_norm_eps,
            "a value in (0, 1)",
        )?;
        if let Some(cap) = self.final_logit_softcap {
            ensure_value(
                cap > 0.0 && cap.is_finite(),
                CONTEXT,
                "final_logit_softcapping",
                cap,
                "a finite value > 0",
            )?;
        }
        Ok(())
    }
}
