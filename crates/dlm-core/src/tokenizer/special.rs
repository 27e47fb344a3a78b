//! Special tokens, reserved the same way by every tokenizer and source of the project.

use serde::{Deserialize, Serialize};

/// Ids of the special tokens.
///
/// The project's own tokenizers (character, byte, trained BPE) and the synthetic sources reserve
/// the first [`SpecialTokens::COUNT`] ids in the order of [`SpecialTokens::NAMES`]; a loaded
/// `tokenizer.json` keeps its own ids, looked up by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Padding, ignored by losses.
    pub pad: u32,
    /// Beginning of a document.
    pub bos: u32,
    /// End of a document.
    pub eos: u32,
    /// The absorbing state of masked diffusion.
    pub mask: u32,
}

impl SpecialTokens {
    /// How many ids the project's own vocabularies reserve.
    pub const COUNT: u32 = 4;
    /// Their names, in id order.
    pub const NAMES: [&'static str; 4] = ["[PAD]", "[BOS]", "[EOS]", "[MASK]"];

    /// The layout of the project's own vocabularies: `[PAD] = 0`, `[BOS] = 1`, `[EOS] = 2`,
    /// `[MASK] = 3`, ordinary tokens from 4.
    pub const fn reserved() -> Self {
        Self { pad: 0, bos: 1, eos: 2, mask: 3 }
    }

    /// Whether `id` is one of the special tokens.
    pub fn contains(&self, id: u32) -> bool {
        id == self.pad || id == self.bos || id == self.eos || id == self.mask
    }
}
