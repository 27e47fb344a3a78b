//! [`LlamaConfig`]: the sizes and switches of a LLaMA-family transformer.

use burn::config::Config;

use crate::backbone::{MAX_LAYERS, MAX_SEQ_LEN, MAX_VOCAB_SIZE, MAX_WIDTH};
use crate::error::{CoreError, ensure_between, ensure_size, ensure_value};

const CONTEXT: &str = "LLaMA-family config";

/// A LLaMA-family transformer (Touvron et al. 2023): pre-norm blocks with RMSNorm, grouped-query
/// attention with rotary embeddings, a SwiGLU MLP. The switches cover the checkpoints this
/// library imports: LLaDA (plain LLaMA), Dream (Qwen2: q/k/v biases) and SDAR / Tiny-A2D (Qwen3:
/// per-head q/k RMSNorm, an explicit head size).
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Rows of the token embedding (and of the output head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Inner width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention: `num_heads` is a multiple of it).
    pub num_kv_heads: usize,
    /// Size of each head (`hidden_size / num_heads` unless the checkpoint says otherwise).
    pub head_dim: usize,
    /// The context length the checkpoint was trained for.
    pub max_seq_len: usize,
    /// `ε` of every RMSNorm.
    #[config(default = 1e-5)]
    pub rms_norm_eps: f64,
    /// Base of the rotary frequencies, `θ`.
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Biases on the q, k and v projections (Qwen2).
    #[config(default = false)]
    pub qkv_bias: bool,
    /// RMSNorm over each head of q and k before the rotation (Qwen3).
    #[config(default = false)]
    pub qk_norm: bool,
    /// Whether the output head is the transposed token embedding.
    #[config(default = false)]
    pub tie_embeddings: bool,
}

impl LlamaConfig {
    /// Checks every size against its cap and the head layout.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), CoreError> {
        let between = |low, name, value, cap| ensure_between(CONTEXT, name, value, low, cap);
        between(2, "vocab_size", self.vocab_size, MAX_VOCAB_SIZE)?;
        between(1, "hidden_size", self.hidden_size, MAX_WIDTH)?;
        between(1, "intermediate_size", self.intermediate_size, 64 * MAX_WIDTH)?;
        between(1, "num_layers", self.num_layers, MAX_LAYERS)?;
        between(1, "num_heads", self.num_heads, MAX_WIDTH)?;
        between(1, "max_seq_len", self.max_seq_len, MAX_SEQ_LEN)?;
        between(2, "head_dim", self.head_dim, MAX_WIDTH)?;
        ensure_size(
            self.head_dim.is_multiple_of(2),
            CONTEXT,
            "head_dim",
            self.head_dim,
            "an even size (rotary embeddings rotate pairs)",
        )?;
        ensure_size(
            self.num_kv_heads > 0 && self.num_heads.is_multiple_of(self.num_kv_heads),
            CONTEXT,
            "num_kv_heads",
            self.num_kv_heads,
            format!("a divisor of num_heads = {}", self.num_heads),
        )?;
        ensure_size(
            self.num_heads * self.head_dim <= MAX_WIDTH,
            CONTEXT,
            "num_heads · head_dim",
            self.num_heads * self.head_dim,
            format!("at most {MAX_WIDTH}"),
        )?;
        ensure_value(
            self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0,
            CONTEXT,
            "rms_norm_eps",
            self.rms_norm_eps,
            "a value in (0, 1)",
        )?;
        ensure_value(
            self.rope_theta > 1.0 && self.rope_theta.is_finite(),
            CONTEXT,
            "rope_theta",
            self.rope_theta,
            "a finite value > 1",
        )?;
        Ok(())
    }
}
