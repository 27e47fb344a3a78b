//! One token per byte.

use super::SpecialTokens;

/// Byte-level tokenizer: byte `b` is token `SpecialTokens::COUNT + b`; any text encodes, and
/// decoding replaces invalid UTF-8 with U+FFFD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.bytes().map(|b| u32::from(b) + SpecialTokens::COUNT).collect()
    }

    /// Text of `ids`; special and out-of-range ids are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter_map(|&id| {
                id.checked_sub(SpecialTokens::COUNT).and_then(|b| u8::try_from(b).ok())
            })
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// `256 + SpecialTokens::COUNT`.
    pub fn vocab_size(&self) -> usize {
        256 + SpecialTokens::COUNT as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_text() {
        let text = "Wherefore art thou — Ромео? 🌹";
        let ids = ByteTokenizer.encode(text);
        assert_eq!(ids.len(), text.len());
        assert!(ids.iter().all(|&id| id >= 4 && (id as usize) < ByteTokenizer.vocab_size()));
        assert_eq!(ByteTokenizer.decode(&ids), text);
        assert_eq!(ByteTokenizer.decode(&[0, 1, 2, 3]), "");
    }
}
