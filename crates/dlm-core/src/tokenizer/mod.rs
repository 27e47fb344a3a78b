//! Tokenizers: byte level, character level, and Hugging Face `tokenizers` (a loaded
//! `tokenizer.json` or a BPE trained offline), all with the project's [`SpecialTokens`].

mod byte;
mod char_level;
mod chat;
mod hf;
mod special;

use std::path::Path;

pub use byte::ByteTokenizer;
pub use char_level::CharTokenizer;
pub use chat::{ChatMessage, ChatTemplate};
pub use hf::HfTokenizer;
pub use special::SpecialTokens;

use crate::error::CoreError;

/// Any of the project's tokenizers.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// One token per byte.
    Byte(ByteTokenizer),
    /// One token per character of a fixed alphabet.
    Char(CharTokenizer),
    /// A Hugging Face tokenizer (boxed: it is large).
    Hf(Box<HfTokenizer>),
}

impl From<HfTokenizer> for Tokenizer {
    fn from(tokenizer: HfTokenizer) -> Self {
        Self::Hf(Box::new(tokenizer))
    }
}

impl Tokenizer {
    /// Token ids of `text` (no special tokens added).
    ///
    /// # Errors
    /// [`CoreError::UnknownCharacter`] (character level) or [`CoreError::Tokenizer`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, CoreError> {
        match self {
            Self::Byte(t) => Ok(t.encode(text)),
            Self::Char(t) => t.encode(text),
            Self::Hf(t) => t.encode(text),
        }
    }

    /// Text of `ids`, special tokens skipped.
    ///
    /// # Errors
    /// [`CoreError::Tokenizer`] for ids the tokenizer does not know.
    pub fn decode(&self, ids: &[u32]) -> Result<String, CoreError> {
        match self {
            Self::Byte(t) => Ok(t.decode(ids)),
            Self::Char(t) => Ok(t.decode(ids)),
            Self::Hf(t) => t.decode(ids),
        }
    }

    /// Number of ids, special tokens included.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Byte(t) => t.vocab_size(),
            Self::Char(t) => t.vocab_size(),
            Self::Hf(t) => t.vocab_size(),
        }
    }

    /// The special tokens' ids.
    pub fn special(&self) -> SpecialTokens {
        match self {
            Self::Byte(_) | Self::Char(_) => SpecialTokens::reserved(),
            Self::Hf(t) => t.special(),
        }
    }

    /// A JSON description that identifies the tokenizer (for caches and checkpoints).
    ///
    /// # Errors
    /// [`CoreError::Tokenizer`] if a Hugging Face tokenizer cannot be serialised.
    pub fn fingerprint(&self) -> Result<String, CoreError> {
        match self {
            Self::Byte(_) => Ok("byte".into()),
            Self::Char(t) => Ok(format!("char:{}", t.alphabet().iter().collect::<String>())),
            Self::Hf(t) => t.to_json(),
        }
    }

    /// Saves a character or Hugging Face tokenizer as JSON.
    ///
    /// # Errors
    /// [`CoreError::Io`] or [`CoreError::Tokenizer`].
    pub fn save(&self, path: &Path) -> Result<(), CoreError> {
        let json = self.fingerprint()?;
        std::fs::write(path, json).map_err(|source| CoreError::Io { path: path.into(), source })
    }
}
