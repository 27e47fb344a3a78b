//! The "words" task: sequences of fixed multi-token words in which any one token of a word
//! determines the rest, scored exactly.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::pairs::PairsScore;
use crate::error::{CoreError, ensure_size};
use crate::tokenizer::SpecialTokens;

const CONTEXT: &str = "words task";

/// Parameters of a [`WordsTask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordsTaskConfig {
    /// Number of words `W` in the lexicon, at least 2.
    pub n_words: usize,
    /// Tokens per word `k`, at least 2.
    pub word_len: usize,
    /// Seed of the lexicon.
    pub seed: u64,
}

/// Sequences of words drawn independently and uniformly from a lexicon of `W` words of `k`
/// tokens, aligned at multiples of `k`. The `W·k` symbols are split into `k` groups of `W`: the
/// `j`-th token of every word comes from group `j`, and every symbol belongs to exactly one word
/// (each group is a random permutation of the lexicon). So one token of a word tells its place in
/// the word and determines the other `k − 1`, while words are independent of each other.
///
/// This is the structure under which confidence-threshold decoding pays off: once one token of a
/// word is committed, its `k − 1` partners are certain and a threshold sampler commits them in one
/// step, while a sampler that commits tokens of a word before any of them is known draws them
/// independently and breaks the word.
///
/// Exact quantities: the entropy is `ln W` per word (`ln(W)/k` per token), and a sample's validity
/// is the fraction of its complete words that are in the lexicon.
#[derive(Debug, Clone)]
pub struct WordsTask {
    config: WordsTaskConfig,
    words: Vec<Vec<u32>>,
    /// Each symbol's word and position in it.
    owner: HashMap<u32, (usize, usize)>,
}

impl WordsTask {
    /// Draws the lexicon.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] for `W < 2`, `k < 2`, or more than 2¹⁶ symbols `W·k`.
    pub fn new(config: WordsTaskConfig) -> Result<Self, CoreError> {
        let WordsTaskConfig { n_words, word_len, seed } = config;
        ensure_size(n_words >= 2, CONTEXT, "n_words", n_words, "at least 2")?;
        ensure_size(word_len >= 2, CONTEXT, "word_len", word_len, "at least 2")?;
        ensure_size(
            n_words.saturating_mul(word_len) <= 1 << 16,
            CONTEXT,
            "n_words",
            n_words,
            format!("at most 2^16 symbols in all: n_words · word_len with word_len = {word_len}"),
        )?;
        let mut rng = StdRng::seed_from_u64(seed);
        let offset = SpecialTokens::COUNT;
        let mut words = vec![Vec::with_capacity(word_len); n_words];
        for j in 0..word_len {
            let mut group: Vec<u32> = (0..n_words).map(|i| (j * n_words + i) as u32).collect();
            group.shuffle(&mut rng);
            for (word, symbol) in words.iter_mut().zip(group) {
                word.push(symbol + offset);
            }
        }
        let owner = words
            .iter()
            .enumerate()
            .flat_map(|(w, word)| word.iter().enumerate().map(move |(j, &t)| (t, (w, j))))
            .collect();
        Ok(Self { config, words, owner })
    }

    /// The parameters.
    pub fn config(&self) -> WordsTaskConfig {
        self.config
    }

    /// Vocabulary size of the emitted tokens: the `W·k` symbols plus the reserved special tokens.
    pub fn vocab_size(&self) -> usize {
        self.config.n_words * self.config.word_len + SpecialTokens::COUNT as usize
    }

    /// The lexicon, as token ids.
    pub fn words(&self) -> &[Vec<u32>] {
        &self.words
    }

    /// Entropy rate in nats per token, `ln(W)/k`.
    pub fn entropy_rate(&self) -> f64 {
        (self.config.n_words as f64).ln() / self.config.word_len as f64
    }

    /// Exact entropy of a sample of length `len`: `⌈len/k⌉·ln W`, since a word's first token
    /// alone already determines it.
    pub fn sequence_entropy(&self, len: usize) -> f64 {
        len.div_ceil(self.config.word_len) as f64 * (self.config.n_words as f64).ln()
    }

    /// Draws a sample of `len` tokens (a length that is not a multiple of `k` ends inside a word).
    pub fn sample<R: Rng + ?Sized>(&self, len: usize, rng: &mut R) -> Vec<u32> {
        let mut tokens = Vec::with_capacity(len + self.config.word_len);
        while tokens.len() < len {
            tokens.extend_from_slice(&self.words[rng.random_range(0..self.words.len())]);
        }
        tokens.truncate(len);
        tokens
    }

    /// Scores the complete words starting at `offset`, `offset + k`, …
    fn score_from(&self, tokens: &[u32], offset: usize) -> PairsScore {
        let k = self.config.word_len;
        let chunks = tokens.get(offset..).unwrap_or_default().chunks_exact(k);
        let total = chunks.len();
        let valid = chunks
            .filter(|chunk| {
                matches!(self.owner.get(&chunk[0]), Some(&(w, 0)) if self.words[w] == *chunk)
            })
            .count();
        PairsScore { valid, total }
    }

    /// Scores the complete words at positions `0..k`, `k..2k`, …
    pub fn score(&self, tokens: &[u32]) -> PairsScore {
        self.score_from(tokens, 0)
    }

    /// Scores the words in whichever of the `k` alignments holds the most valid ones (ties: the
    /// earliest). A model that reads positions only relatively (RoPE) cannot tell where words
    /// start in a fully masked sequence, so a coherent sample may be shifted; what this leaves
    /// invalid is words whose tokens do not belong together.
    pub fn score_best_phase(&self, tokens: &[u32]) -> PairsScore {
        (0..self.config.word_len)
            .map(|offset| self.score_from(tokens, offset))
            .fold(None, |best: Option<PairsScore>, s| match best {
                Some(b) if b.validity() >= s.validity() => Some(b),
                _ => Some(s),
            })
            .expect("word_len ≥ 2")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_sched::InvalidInput;

    fn task(n_words: usize, word_len: usize) -> WordsTask {
        WordsTask::new(WordsTaskConfig { n_words, word_len, seed: 3 }).unwrap()
    }

    #[test]
    fn every_symbol_is_in_exactly_one_word_at_its_group() {
        let t = task(6, 3);
        let offset = SpecialTokens::COUNT as usize;
        let mut seen: Vec<u32> = t.words().iter().flatten().copied().collect();
        seen.sort_unstable();
        let all: Vec<u32> = (offset..offset + 18).map(|s| s as u32).collect();
        assert_eq!(seen, all);
        for word in t.words() {
            for (j, &token) in word.iter().enumerate() {
                assert_eq!((token as usize - offset) / 6, j, "token {token} of {word:?}");
            }
        }
        assert_eq!(t.vocab_size(), 18 + offset);
        // The groups are shuffled: the lexicon is not the identity layout.
        let identity: Vec<Vec<u32>> =
            (0..6).map(|i| (0..3).map(|j| (offset + j * 6 + i) as u32).collect()).collect();
        assert_ne!(t.words(), identity.as_slice());
    }

    #[test]
    fn samples_are_valid_and_broken_words_are_not() {
        let t = task(8, 4);
        let mut rng = StdRng::seed_from_u64(5);
        let sample = t.sample(64, &mut rng);
        assert_eq!(t.score(&sample), PairsScore { valid: 16, total: 16 });
        // Any shift breaks every word in the fixed alignment, not in the best one.
        for shift in 1..4 {
            assert_eq!(t.score(&sample[shift..]).valid, 0);
            assert_eq!(t.score_best_phase(&sample[shift..]), PairsScore { valid: 15, total: 15 });
        }
        // Tokens drawn independently at the right positions are almost never a word.
        let independent: Vec<u32> = (0..200)
            .flat_map(|_| (0..4).map(|j| t.words()[rng.random_range(0..8)][j]).collect::<Vec<_>>())
            .collect();
        let validity = t.score_best_phase(&independent).validity();
        assert!(validity < 0.05, "{validity}");
        // A word with one token swapped for another word's token at that place is invalid.
        let mut broken = t.words()[0].clone();
        broken[2] = t.words()[1][2];
        assert_eq!(t.score(&broken), PairsScore { valid: 0, total: 1 });
    }

    #[test]
    fn entropy_counts_words_begun() {
        let t = task(16, 4);
        assert!((t.entropy_rate() - 16f64.ln() / 4.0).abs() < 1e-15);
        assert!((t.sequence_entropy(64) - 16.0 * 16f64.ln()).abs() < 1e-12);
        assert!((t.sequence_entropy(65) - 17.0 * 16f64.ln()).abs() < 1e-12);
        assert_eq!(t.sequence_entropy(0), 0.0);
    }

    #[test]
    fn rejects_bad_parameters() {
        let bad =
            |n_words, word_len| WordsTask::new(WordsTaskConfig { n_words, word_len, seed: 0 });
        assert!(matches!(bad(1, 4), Err(CoreError::Invalid(InvalidInput { name: "n_words", .. }))));
        assert!(matches!(
            bad(4, 1),
            Err(CoreError::Invalid(InvalidInput { name: "word_len", .. }))
        ));
        assert!(matches!(
            bad(1 << 15, 4),
            Err(CoreError::Invalid(InvalidInput { name: "n_words", .. }))
        ));
    }
}
