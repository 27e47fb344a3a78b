//! One token per character of a fixed alphabet.

use std::collections::BTreeSet;

use super::SpecialTokens;
use crate::error::CoreError;

/// Character-level tokenizer over an alphabet taken from a corpus: the `i`-th character in
/// sorted order is token `SpecialTokens::COUNT + i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharTokenizer {
    alphabet: Vec<char>,
}

impl CharTokenizer {
    /// The alphabet of every character in `texts`.
    ///
    /// # Errors
    /// [`CoreError::EmptyCorpus`] if the texts contain no character.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, CoreError> {
        let alphabet: BTreeSet<char> = texts.into_iter().flat_map(str::chars).collect();
        if alphabet.is_empty() {
            return Err(CoreError::EmptyCorpus { what: "character tokenizer".into() });
        }
        Ok(Self { alphabet: alphabet.into_iter().collect() })
    }

    /// Rebuilds a tokenizer from a saved fingerprint (`char:` followed by the alphabet).
    ///
    /// # Errors
    /// [`CoreError::Tokenizer`] if the text is not such a fingerprint.
    pub fn from_fingerprint(fingerprint: &str) -> Result<Self, CoreError> {
        let alphabet = fingerprint.strip_prefix("char:").ok_or_else(|| CoreError::Tokenizer {
            what: "character tokenizer".into(),
            message: "a saved alphabet starts with `char:`".into(),
        })?;
        Self::from_texts([alphabet])
    }

    /// The alphabet, sorted.
    pub fn alphabet(&self) -> &[char] {
        &self.alphabet
    }

    /// Token ids of `text`.
    ///
    /// # Errors
    /// [`CoreError::UnknownCharacter`] for a character outside the alphabet.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, CoreError> {
        text.char_indices()
            .map(|(offset, character)| {
                self.alphabet
                    .binary_search(&character)
                    .map(|i| i as u32 + SpecialTokens::COUNT)
                    .map_err(|_| CoreError::UnknownCharacter { character, offset })
            })
            .collect()
    }

    /// Text of `ids`; special and out-of-range ids are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter_map(|&id| id.checked_sub(SpecialTokens::COUNT))
            .filter_map(|i| self.alphabet.get(i as usize))
            .collect()
    }

    /// Alphabet size plus the special tokens.
    pub fn vocab_size(&self) -> usize {
        self.alphabet.len() + SpecialTokens::COUNT as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_characters() {
        let t = CharTokenizer::from_texts(["to be, or not", "to be"]).unwrap();
        assert_eq!(t.alphabet(), &[' ', ',', 'b', 'e', 'n', 'o', 'r', 't']);
        let ids = t.encode("not to be").unwrap();
        assert_eq!(t.decode(&ids), "not to be");
        assert_eq!(ids[0], 4 + 4);
        assert!(matches!(
            t.encode("to bez"),
            Err(CoreError::UnknownCharacter { character: 'z', offset: 5 })
        ));
        assert!(CharTokenizer::from_texts([""]).is_err());
        let again = CharTokenizer::from_fingerprint(&format!(
            "char:{}",
            t.alphabet().iter().collect::<String>()
        ));
        assert_eq!(again.unwrap(), t);
    }
}
