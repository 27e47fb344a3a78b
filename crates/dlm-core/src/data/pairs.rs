//! The "correlated pairs" task: sequences of valid two-token phrases, scored exactly.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, ensure_size};
use crate::tokenizer::SpecialTokens;

const CONTEXT: &str = "pairs task";

/// Parameters of a [`PairsTask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairsTaskConfig {
    /// Number of symbols `V` (even): the first half starts phrases, the second half ends them.
    pub n_symbols: usize,
    /// Number of valid pairs `P`, `1 ≤ P ≤ (V/2)²`.
    pub n_pairs: usize,
    /// Seed of the pair list.
    pub seed: u64,
}

/// Sequences made of two-token phrases `(a, b)` drawn uniformly from a fixed list of `P` valid
/// pairs, aligned at even positions; first tokens come from the first half of the symbols,
/// second tokens from the second half, so a phrase's boundaries can be read off its tokens. The
/// two tokens of a phrase are strongly dependent while the phrases are independent, so a sampler
/// that decodes both tokens of a phrase in parallel from their marginals produces invalid
/// phrases: exactly what parallel-decoding samplers must avoid.
///
/// Exact quantities: the entropy is `ln P` per phrase (`ln(P)/2` per token), and a sample's
/// validity is the fraction of its phrases that are in the list.
#[derive(Debug, Clone)]
pub struct PairsTask {
    config: PairsTaskConfig,
    pairs: Vec<(u32, u32)>,
    valid: HashSet<(u32, u32)>,
}

/// How many phrases of a sample are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairsScore {
    /// Valid phrases.
    pub valid: usize,
    /// Complete phrases scored.
    pub total: usize,
}

impl PairsScore {
    /// `valid / total` (1 for an empty sample).
    pub fn validity(&self) -> f64 {
        if self.total == 0 { 1.0 } else { self.valid as f64 / self.total as f64 }
    }
}

impl PairsTask {
    /// Draws the list of valid pairs.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] for an odd `V` or `V < 2`, or `P ∉ [1, (V/2)²]`.
    pub fn new(config: PairsTaskConfig) -> Result<Self, CoreError> {
        let PairsTaskConfig { n_symbols, n_pairs, seed } = config;
        ensure_size(
            n_symbols >= 2 && n_symbols.is_multiple_of(2),
            CONTEXT,
            "n_symbols",
            n_symbols,
            "an even number, at least 2",
        )?;
        let half = n_symbols / 2;
        ensure_size(
            n_pairs >= 1 && n_pairs <= half * half,
            CONTEXT,
            "n_pairs",
            n_pairs,
            format!("between 1 and (n_symbols/2)² = {}", half * half),
        )?;
        let mut rng = StdRng::seed_from_u64(seed);
        let chosen = rand::seq::index::sample(&mut rng, half * half, n_pairs);
        let offset = SpecialTokens::COUNT;
        let pairs: Vec<(u32, u32)> = chosen
            .iter()
            .map(|i| ((i / half) as u32 + offset, (half + i % half) as u32 + offset))
            .collect();
        let valid = pairs.iter().copied().collect();
        Ok(Self { config, pairs, valid })
    }

    /// The parameters.
    pub fn config(&self) -> PairsTaskConfig {
        self.config
    }

    /// Vocabulary size of the emitted tokens: the symbols plus the reserved special tokens.
    pub fn vocab_size(&self) -> usize {
        self.config.n_symbols + SpecialTokens::COUNT as usize
    }

    /// The valid pairs, as token ids.
    pub fn pairs(&self) -> &[(u32, u32)] {
        &self.pairs
    }

    /// Entropy rate in nats per token, `ln(P)/2`.
    pub fn entropy_rate(&self) -> f64 {
        (self.config.n_pairs as f64).ln() / 2.0
    }

    /// Exact entropy of a sample of length `len`: `⌊len/2⌋·ln P`, plus the entropy of the first
    /// token of a phrase when `len` is odd.
    pub fn sequence_entropy(&self, len: usize) -> f64 {
        let whole = (len / 2) as f64 * (self.config.n_pairs as f64).ln();
        if len.is_multiple_of(2) {
            return whole;
        }
        let mut first_counts = std::collections::HashMap::new();
        for (a, _) in &self.pairs {
            *first_counts.entry(a).or_insert(0usize) += 1;
        }
        let p_total = self.config.n_pairs as f64;
        whole
            + first_counts
                .values()
                .map(|&c| -(c as f64 / p_total) * (c as f64 / p_total).ln())
                .sum::<f64>()
    }

    /// Draws a sample of `len` tokens (an odd length ends with the first token of a phrase).
    pub fn sample<R: Rng + ?Sized>(&self, len: usize, rng: &mut R) -> Vec<u32> {
        let mut tokens = Vec::with_capacity(len + 1);
        while tokens.len() < len {
            let (a, b) = self.pairs[rng.random_range(0..self.pairs.len())];
            tokens.extend([a, b]);
        }
        tokens.truncate(len);
        tokens
    }

    /// Scores the complete phrases at positions `(0, 1), (2, 3), …`.
    pub fn score(&self, tokens: &[u32]) -> PairsScore {
        let total = tokens.len() / 2;
        let valid =
            tokens.chunks_exact(2).filter(|pair| self.valid.contains(&(pair[0], pair[1]))).count();
        PairsScore { valid, total }
    }

    /// Scores the phrases in whichever alignment, `(0, 1), (2, 3), …` or `(1, 2), (3, 4), …`,
    /// holds more valid ones. A sample that is coherent but shifted by one token (it opens with
    /// the second token of a phrase) then counts as valid: what is left invalid is phrases whose
    /// two tokens do not belong together, the failure of decoding them independently. A model
    /// that reads positions only relatively (RoPE) cannot tell which alignment a fully masked
    /// sequence should take, so samplers that commit far-apart tokens first choose it at random.
    pub fn score_best_phase(&self, tokens: &[u32]) -> PairsScore {
        let aligned = self.score(tokens);
        let shifted = self.score(tokens.get(1..).unwrap_or_default());
        if shifted.validity() > aligned.validity() { shifted } else { aligned }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_sched::InvalidInput;

    #[test]
    fn samples_are_valid_and_shuffled_samples_are_not() {
        let task = PairsTask::new(PairsTaskConfig { n_symbols: 32, n_pairs: 24, seed: 2 }).unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        let sample = task.sample(200, &mut rng);
        assert_eq!(task.score(&sample), PairsScore { valid: 100, total: 100 });
        // Shifting by one token breaks the alignment: a second token never starts a phrase.
        let shifted = task.score(&sample[1..]);
        assert_eq!(shifted.valid, 0, "{shifted:?}");
        assert!(task.pairs().iter().all(|&(a, b)| a < 4 + 16 && b >= 4 + 16));
        // Independent tokens with the right marginals are mostly invalid.
        let firsts: Vec<u32> = task.pairs().iter().map(|p| p.0).collect();
        let seconds: Vec<u32> = task.pairs().iter().map(|p| p.1).collect();
        let independent: Vec<u32> = (0..400)
            .flat_map(|_| [firsts[rng.random_range(0..24)], seconds[rng.random_range(0..24)]])
            .collect();
        assert!(task.score(&independent).validity() < 0.35);
        // In the best phase, the shifted sample is valid again but for its broken first phrase;
        // independent tokens stay mostly invalid.
        assert_eq!(task.score_best_phase(&sample[1..]), PairsScore { valid: 99, total: 99 });
        assert_eq!(task.score_best_phase(&sample), PairsScore { valid: 100, total: 100 });
        assert!(task.score_best_phase(&independent).validity() < 0.35);
    }

    #[test]
    fn entropy_is_log_pairs_per_phrase() {
        let task = PairsTask::new(PairsTaskConfig { n_symbols: 8, n_pairs: 16, seed: 0 }).unwrap();
        assert!((task.entropy_rate() - 16f64.ln() / 2.0).abs() < 1e-15);
        assert!((task.sequence_entropy(10) - 5.0 * 16f64.ln()).abs() < 1e-12);
        let odd = task.sequence_entropy(11) - task.sequence_entropy(10);
        assert!(odd > 0.0 && odd <= 8f64.ln() + 1e-12);
    }

    #[test]
    fn rejects_bad_parameters() {
        let bad =
            |n_symbols, n_pairs| PairsTask::new(PairsTaskConfig { n_symbols, n_pairs, seed: 0 });
        assert!(matches!(
            bad(1, 1),
            Err(CoreError::Invalid(InvalidInput { name: "n_symbols", .. }))
        ));
        assert!(matches!(
            bad(5, 1),
            Err(CoreError::Invalid(InvalidInput { name: "n_symbols", .. }))
        ));
        assert!(matches!(bad(4, 0), Err(CoreError::Invalid(InvalidInput { name: "n_pairs", .. }))));
        assert!(matches!(bad(4, 5), Err(CoreError::Invalid(InvalidInput { name: "n_pairs", .. }))));
    }
}
