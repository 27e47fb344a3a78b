//! [`BertConfig`]: the architecture of a BERT masked LM, read from a Hugging Face `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, ensure_size, ensure_value};

const CONTEXT: &str = "BERT config";

/// The hyperparameters of a BERT encoder with its masked-LM head (Devlin et al. 2019, §3), named
/// as in a Hugging Face `config.json`, so such a file deserialises directly (fields this
/// architecture does not use are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Hidden size `H`.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; divides `H`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Number of learned absolute positions: the longest input.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// `ε` of every layer norm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// The activation; only `gelu` (the exact, erf form) is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Position embeddings; only `absolute` is supported.
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// Whether the MLM decoder shares the word embeddings (Hugging Face's default).
    #[serde(default = "default_tie")]
    pub tie_word_embeddings: bool,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_position_embedding_type() -> String {
    "absolute".into()
}
fn default_tie() -> bool {
    true
}

impl BertConfig {
    /// Reads and validates a Hugging Face `config.json`.
    ///
    /// # Errors
    /// [`CoreError::Io`] if the file cannot be read, [`CoreError::Json`] if it is not a BERT
    /// config, and the errors of [`BertConfig::validate`].
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, CoreError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| CoreError::Io { path: path.to_path_buf(), source })?;
        let config: Self = serde_json::from_str(&text)
            .map_err(|source| CoreError::Json { what: path.display().to_string(), source })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the sizes and that the activation and position embeddings are supported.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] for a zero size or heads that do not divide the hidden size;
    /// [`CoreError::Unsupported`] for another activation or position embedding type;
    /// [`CoreError::Invalid`] for a non-positive `layer_norm_eps`.
    pub fn validate(&self) -> Result<(), CoreError> {
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            ensure_size(value > 0, CONTEXT, name, value, "at least 1")?;
        }
        ensure_size(
            self.hidden_size.is_multiple_of(self.num_attention_heads),
            CONTEXT,
            "hidden_size",
            self.hidden_size,
            format!("a multiple of num_attention_heads = {}", self.num_attention_heads),
        )?;
        ensure_value(
            self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite(),
            CONTEXT,
            "layer_norm_eps",
            self.layer_norm_eps,
            "a finite value > 0",
        )?;
        if self.hidden_act != "gelu" {
            return Err(CoreError::Unsupported {
                context: CONTEXT,
                name: "hidden_act",
                value: self.hidden_act.clone(),
                supported: "gelu",
            });
        }
        if self.position_embedding_type != "absolute" {
            return Err(CoreError::Unsupported {
                context: CONTEXT,
                name: "position_embedding_type",
                value: self.position_embedding_type.clone(),
                supported: "absolute",
            });
        }
        Ok(())
    }
}
