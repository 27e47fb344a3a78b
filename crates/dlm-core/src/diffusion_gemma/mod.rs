//! DiffusionGemma (Google 2026), the block-diffusion language model of transformers'
//! `models/diffusion_gemma/`: a causal Gemma 4 encoder writes the prompt (and every finished
//! canvas) into a KV cache; a decoder with the same weights denoises a canvas of
//! `canvas_length` tokens bidirectionally against it. Its noise is uniform over the vocabulary
//! (no mask token), and the decoder conditions on its own previous prediction.
//!
//! - [`DiffusionGemmaConfig`]: sizes, the sliding/global layer pattern and each kind's head
//!   size, key/value heads and rotary settings.
//! - [`DiffusionGemmaLm`]: the network, [`DiffusionGemmaLm::encode`] and
//!   [`DiffusionGemmaLm::decode`], with the [`EncoderCache`] between them.
//! - [`DiffusionGemma::from_dir`]: a Hugging Face directory.
//!
//! The vision tower is not implemented: its tensors are skipped on import.

mod config;
mod import;
mod model;

#[cfg(test)]
mod tests;

pub use config::{AttentionKind, DiffusionGemmaConfig, LayerAttention, rotary_frequencies};
pub use import::{DiffusionGemma, DiffusionGemmaInfo, GenerationDefaults};
pub use model::{DiffusionGemmaLm, EncoderCache};
