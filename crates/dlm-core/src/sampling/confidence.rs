//! Confidence measures used to decide which positions to unmask first.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// How confident the model is in the token it proposes at a position (higher is more
/// confident). Used by confidence-ordered unmasking: LLaDA's "low-confidence remasking" (Nie et
/// al. 2025), Fast-dLLM's confidence-aware parallel decoding (Wu et al. 2025), and Dream's margin
/// and entropy variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// `p(x̂)`, the probability of the proposed token (LLaDA's `low_confidence`).
    TokenProbability,
    /// `p(top1) − p(top2)`, the gap between the two most probable tokens.
    Margin,
    /// `Σ_k p_k ln p_k = −H(p)`, the negative entropy of the whole distribution.
    NegativeEntropy,
}

impl Confidence {
    /// The confidence of every position.
    ///
    /// # Shapes
    /// - `logits`: `[batch, seq_len, vocab_size]`
    /// - `tokens`: `[batch, seq_len]`, the proposed tokens (used by `TokenProbability`)
    /// - returns `[batch, seq_len]`
    pub fn score(&self, logits: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<2> {
        match self {
            Self::TokenProbability => {
                softmax(logits, 2).gather(2, tokens.unsqueeze_dim(2)).squeeze_dim(2)
            }
            Self::Margin => {
                let top2 = softmax(logits, 2).topk(2, 2);
                let [first, second] = [top2.clone().narrow(2, 0, 1), top2.narrow(2, 1, 1)];
                (first - second).squeeze_dim(2)
            }
            Self::NegativeEntropy => {
                let log_p = log_softmax(logits, 2);
                // p·ln p with 0·(−∞) taken as 0 for filtered tokens.
                let p_log_p = log_p.clone().exp() * log_p.clone();
                let p_log_p = p_log_p.mask_fill(log_p.is_inf(), 0.0);
                p_log_p.sum_dim(2).squeeze_dim(2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;

    #[test]
    fn measures_match_their_definitions() {
        let device = Device::flex();
        let probs = [0.6f32, 0.3, 0.1];
        let logits =
            Tensor::<1>::from_floats(probs.map(f32::ln).as_slice(), &device).reshape([1, 1, 3]);
        let tokens = Tensor::<1, Int>::from_ints([1], &device).reshape([1, 1]);
        let score = |c: Confidence| c.score(logits.clone(), tokens.clone()).into_scalar::<f64>();
        assert!((score(Confidence::TokenProbability) - 0.3).abs() < 1e-6);
        assert!((score(Confidence::Margin) - 0.3).abs() < 1e-6);
        let neg_entropy: f64 = probs.iter().map(|&p| f64::from(p) * f64::from(p).ln()).sum();
        assert!((score(Confidence::NegativeEntropy) - neg_entropy).abs() < 1e-6);
    }
}
