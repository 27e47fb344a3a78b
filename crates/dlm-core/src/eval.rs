//! Evaluation shared by the families: the one loop that scores a split under a likelihood
//! bound (or an exact NLL), and helpers of the examples.

use std::collections::HashMap;

use burn::tensor::{Device, Int, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::data::SequenceDataset;
use crate::error::{CoreError, ensure_size};
use crate::train::LossSum;

/// Which batches of a split an evaluation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalBatches {
    /// Sequences per batch.
    pub batch_size: usize,
    /// Read at most this many batches (in order).
    pub max_batches: Option<usize>,
    /// Seed of the objective's randomness (host RNG and device).
    pub seed: u64,
}

/// A likelihood bound (an NELBO) or an exact NLL on a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundReport {
    /// Nats per scored token.
    pub nats_per_token: f64,
    /// The same in bits.
    pub bits_per_token: f64,
    /// `exp(nats_per_token)`, an upper bound on the perplexity (the perplexity for an exact NLL).
    pub perplexity_bound: f64,
    /// Tokens scored (per time sample).
    pub tokens: usize,
}

/// The evaluation loop of every likelihood-based objective (AR, MDLM, BD3LM, D3PM, …): the
/// sequences of `data` in order, in batches of `batches.batch_size` (at most
/// `batches.max_batches` of them), each scored `time_samples` times by `loss` — which draws its
/// times and masks from the one generator seeded with `batches.seed` — with the sums in `f64`.
///
/// # Errors
/// [`CoreError::Invalid`] if `batch_size`, `time_samples` or `max_batches` is 0, or nothing
/// was scored.
pub fn evaluate_bound(
    data: &SequenceDataset,
    device: &Device,
    batches: EvalBatches,
    time_samples: usize,
    mut loss: impl FnMut(Tensor<2, Int>, &mut StdRng) -> LossSum,
) -> Result<BoundReport, CoreError> {
    const CONTEXT: &str = "evaluation";
    let EvalBatches { batch_size, max_batches, seed } = batches;
    ensure_size(batch_size > 0, CONTEXT, "batch_size", batch_size, "at least 1")?;
    ensure_size(time_samples > 0, CONTEXT, "time_samples", time_samples, "at least 1")?;
    if let Some(max) = max_batches {
        ensure_size(max > 0, CONTEXT, "max_batches", max, "at least 1, or None for all")?;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut sum, mut count) = (0.0, 0usize);
    for indices in data.ordered_batches(batch_size).take(max_batches.unwrap_or(usize::MAX)) {
        let x0 = data.batch(&indices, device);
        for _ in 0..time_samples {
            let scored = loss(x0.clone(), &mut rng);
            sum += scored.sum.into_scalar::<f64>();
            count += scored.count;
        }
    }
    ensure_size(count > 0, CONTEXT, "scored tokens", count, "at least 1")?;
    let nats = sum / count as f64;
    Ok(BoundReport {
        nats_per_token: nats,
        bits_per_token: nats / std::f64::consts::LN_2,
        perplexity_bound: nats.exp(),
        tokens: count / time_samples,
    })
}

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

/// The most frequent token of a sample and the share of the positions it holds (the smallest id
/// among equally frequent ones); `None` for an empty sample. A share far above the corpus's own
/// (a space is about a fifth of English text) is a collapsed sample: the failure of decoding
/// orders that commit the model's most confident token everywhere first.
pub fn dominant_token(tokens: &[u32]) -> Option<(u32, f64)> {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for &t in tokens {
        *counts.entry(t).or_default() += 1;
    }
    let (token, count) = counts.into_iter().max_by_key(|&(t, c)| (c, std::cmp::Reverse(t)))?;
    Some((token, count as f64 / tokens.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_averages_over_tokens_and_time_samples_and_refuses_zero_sizes() {
        let device = Device::flex();
        let data = SequenceDataset::new(4, 10, (0..40).map(|i| i % 10).collect()).unwrap();
        // Each sequence costs 4·(its first token + 1) nats over its 4 tokens; the 10 sequences
        // come in batches of 6 and 4, each scored three times.
        let mut calls = 0;
        let batches = EvalBatches { batch_size: 6, max_batches: None, seed: 0 };
        let report = evaluate_bound(&data, &device, batches, 3, |x0, _| {
            calls += 1;
            let [b, seq_len] = x0.dims();
            let first = x0.narrow(1, 0, 1).float().add_scalar(1.0).sum();
            LossSum { sum: first.mul_scalar(seq_len as f64), count: b * seq_len }
        })
        .unwrap();
        assert_eq!(calls, 6);
        assert_eq!(report.tokens, 40);
        // Σ over sequences and samples of 4·(first + 1), over 3 · 40 tokens.
        let firsts: f64 = (0..10).map(|i| f64::from((4 * i) % 10 + 1)).sum();
        let expected = 3.0 * 4.0 * firsts / (3.0 * 40.0);
        assert!((report.nats_per_token - expected).abs() < 1e-9, "{report:?} vs {expected}");
        assert!((report.bits_per_token * std::f64::consts::LN_2 - expected).abs() < 1e-9);
        let zero = |batch_size, max_batches, time_samples| {
            let batches = EvalBatches { batch_size, max_batches, seed: 0 };
            evaluate_bound(&data, &device, batches, time_samples, |_, _| unreachable!())
                .unwrap_err()
                .to_string()
        };
        assert!(zero(0, None, 1).contains("`batch_size`"));
        assert!(zero(4, Some(0), 1).contains("`max_batches`"));
        assert!(zero(4, None, 0).contains("`time_samples`"));
    }

    #[test]
    fn the_dominant_token_and_its_share() {
        assert_eq!(dominant_token(&[]), None);
        assert_eq!(dominant_token(&[4, 2, 4, 9]), Some((4, 0.5)));
        assert_eq!(dominant_token(&[7, 3, 3, 7]), Some((3, 0.5)), "ties: the smallest id");
    }

    #[test]
    fn entropy_of_known_samples() {
        assert_eq!(unigram_entropy(&[]), 0.0);
        assert_eq!(unigram_entropy(&[7, 7, 7]), 0.0);
        assert!((unigram_entropy(&[1, 2, 3, 4]) - 4f64.ln()).abs() < 1e-12);
        assert!((unigram_entropy(&[1, 1, 2, 2]) - 2f64.ln()).abs() < 1e-12);
    }
}
