//! BERT masked language models: the architecture of Hugging Face's `BertForMaskedLM` and its
//! checkpoints, so pretrained masked LMs run under the masked-diffusion samplers.
//!
//! - [`BertConfig`]: the hyperparameters, read from a `config.json`.
//! - [`BertMlm`]: the encoder and MLM head; [`BertMlm::load`] and [`BertMlm::from_pretrained`]
//!   read `pytorch_model.bin` or `model.safetensors` with typed errors for files that do not fit.

mod config;
mod import;
mod model;

#[cfg(test)]
mod tests;

pub use config::BertConfig;
pub use model::{BertMlm, MaskedScores};
