//! Evaluation helpers shared by the examples and the families.

use std::collections::HashMap;

/// The unigram entropy of a sample's tokens in nats, `−Σ_v (n_v/n) ln(n_v/n)`: reported beside
/// generative perplexity, since a sampler that lowers its temperature (float32 Gumbel noise, say)
/// looks better in perplexity and worse here (Zheng et al. 2024; BD3LM and ReMDM report it too).
/// 0 for an empty sample.
pub fn unigram_entropy(tokens: &[u32]) -> f64 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for &t in tokens {
        *counts.entry(t).or_default() += 1;
    }
    let n = tokens.len() as f64;
    counts.values().map(|&c| -(c as f64 / n) * (c as f64 / n).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_samples() {
        assert_eq!(unigram_entropy(&[]), 0.0);
        assert_eq!(unigram_entropy(&[7, 7, 7]), 0.0);
        assert!((unigram_entropy(&[1, 2, 3, 4]) - 4f64.ln()).abs() < 1e-12);
        assert!((unigram_entropy(&[1, 1, 2, 2]) - 2f64.ln()).abs() < 1e-12);
    }
}
