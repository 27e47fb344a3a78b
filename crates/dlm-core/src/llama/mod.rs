//! LLaMA-family transformers and the diffusion checkpoints built on them: LLaDA (LLaMA blocks),
//! Dream (Qwen2), SDAR and Tiny-A2D (Qwen3).
//!
//! - [`LlamaConfig`]: the sizes and switches (grouped-query attention, q/k/v biases, per-head
//!   q/k norms, tied embeddings).
//! - [`LlamaLm`]: the network; it reads [`crate::backbone::DenoiserInput`] (mask, positions, KV
//!   cache) like the DiT backbone.
//! - [`Pretrained::from_dir`]: a Hugging Face directory, with the family's tensor names
//!   ([`Architecture`], [`ImportedConfig`]).

mod config;
mod import;
mod model;

#[cfg(test)]
mod tests;

pub use config::LlamaConfig;
pub use import::{Architecture, ImportedConfig, Pretrained};
pub use model::LlamaLm;
