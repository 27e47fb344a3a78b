//! Adaptive parallel decoding: a masked model proposes a window of tokens at once, a small
//! autoregressive model decides how many of them to keep.

use burn::tensor::activation::log_softmax;
use dlm_core::backbone::TokenModel;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::denoiser::MaskedDenoiser;
use crate::error::{DiscreteError, ensure_size, ensure_value};
use crate::speculative::{CachedVerifier, SpeculativeDecoder, categorical, rows, window_log_probs};

/// APD (Israel, Van den Broeck & Grover 2025, arXiv 2506.00413; methods_2 §B5). Each round, with
/// `x` the tokens so far:
///
/// 1. the masked model sees `x` and masks up to the whole length, and proposes the next `M`
///    positions (`M` the lookahead) from its marginals `p_D` in one call (greedy, or drawn at a temperature);
/// 2. the autoregressive model scores `x` and the proposals in one causal call against its KV
///    cache, giving `p_AR(· | x, d_{<j})`;
/// 3. the target is the multiplicative mixture `p_T ∝ p_D^R · p_AR^{1−R}`, in logits
///    `ℓ_T = R·log p_D + (1 − R)·log p_AR`; the longest prefix of proposals with
///    `d_j = argmax ℓ_T,j` is kept, and always the first proposal, so a round never stalls.
///
/// `R → 1` trusts the masked model (the whole window each round), `R → 0` keeps, after each
/// round's first proposal, only those the small autoregressive model would have chosen greedily.
/// With proposals drawn at a temperature the rule is still the argmax test (APD's own code tests
/// against the mixture's argmax too). Unlike speculative decoding the
/// output is not the autoregressive model's distribution: APD trades exactness for tokens per
/// round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveParallelDecoder {
    mixture_weight: f64,
    lookahead: usize,
    temperature: f64,
}

/// What [`AdaptiveParallelDecoder::generate`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptiveDecoded {
    /// Prompt and continuation.
    pub tokens: Vec<u32>,
    /// Calls of the autoregressive model (the prompt's pass included).
    pub verifier_calls: usize,
    /// Calls of the masked model.
    pub proposer_calls: usize,
    /// Proposals kept in each round (at least 1).
    pub accepted: Vec<usize>,
}

impl AdaptiveParallelDecoder {
    /// The mixture weight `R ∈ [0, 1]` and the lookahead `M` (APD's defaults: 0.7 and 100),
    /// with greedy proposals.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] for `R ∉ [0, 1]` or `M = 0`.
    pub fn new(mixture_weight: f64, lookahead: usize) -> Result<Self, DiscreteError> {
        const CONTEXT: &str = "adaptive parallel decoder";
        ensure_value(
            (0.0..=1.0).contains(&mixture_weight),
            CONTEXT,
            "mixture_weight",
            mixture_weight,
            "a value in [0, 1]",
        )?;
        ensure_size(lookahead > 0, CONTEXT, "lookahead", lookahead, "at least 1")?;
        Ok(Self { mixture_weight, lookahead, temperature: 0.0 })
    }

    /// Draws the proposals from `p_D^{1/T}` (0: greedy).
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] for a negative or non-finite temperature.
    pub fn with_temperature(self, temperature: f64) -> Result<Self, DiscreteError> {
        ensure_value(
            temperature >= 0.0 && temperature.is_finite(),
            "adaptive parallel decoder",
            "temperature",
            temperature,
            "a finite value >= 0",
        )?;
        Ok(Self { temperature, ..self })
    }

    /// Continues `prompt` by `n_new` tokens, `proposer` proposing and `verifier` (causal, reading
    /// no time) deciding.
    ///
    /// # Errors
    /// As [`SpeculativeDecoder::generate`].
    pub fn generate<D: MaskedDenoiser, T: TokenModel + ?Sized>(
        &self,
        proposer: &D,
        verifier: &T,
        prompt: &[u32],
        n_new: usize,
        rng: &mut StdRng,
    ) -> Result<AdaptiveDecoded, DiscreteError> {
        SpeculativeDecoder::check(proposer, verifier, prompt, n_new)?;
        let end = prompt.len() + n_new;
        let mut tokens = prompt.to_vec();
        let mut scorer = CachedVerifier::new(verifier, prompt);
        let (mut proposer_calls, mut accepted) = (0, Vec::new());
        let r = self.mixture_weight;
        while tokens.len() < end {
            let n = tokens.len();
            let window = self.lookahead.min(end - n);
            let log_q = window_log_probs(proposer, &tokens, end, window);
            proposer_calls += 1;
            let proposals: Vec<u32> = log_q.iter().map(|row| self.propose(row, rng)).collect();
            let log_p = rows(log_softmax(scorer.score(tokens[n - 1], &proposals), 2));
            // The first proposal always; then while the proposal is the mixture's argmax.
            let kept = 1
                + (1..window)
                    .take_while(|&j| {
                        let mixture =
                            log_q[j].iter().zip(&log_p[j]).map(|(q, p)| r * q + (1.0 - r) * p);
                        argmax(mixture) == proposals[j] as usize
                    })
                    .count();
            tokens.extend(&proposals[..kept]);
            accepted.push(kept);
            scorer.keep(n + kept - 1);
        }
        let verifier_calls = scorer.calls;
        Ok(AdaptiveDecoded { tokens, verifier_calls, proposer_calls, accepted })
    }

    /// A proposal from one row of the masked model's log-probabilities.
    fn propose(&self, log_q: &[f64], rng: &mut StdRng) -> u32 {
        if self.temperature == 0.0 {
            return argmax(log_q.iter().copied()) as u32;
        }
        let top = log_q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> =
            log_q.iter().map(|l| ((l - top) / self.temperature).exp()).collect();
        categorical(&weights, rng.random::<f64>())
    }
}

/// The index of the largest value (the first of ties).
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    values
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, v)| if v > best.1 { (i, v) } else { best })
        .0
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use dlm_core::backbone::{Denoiser, DenoiserConfig};
    use dlm_core::host::floats;
    use dlm_core::testing::randomised_seeded;
    use rand::SeedableRng;

    use super::*;
    use crate::denoiser::Subs;
    use crate::speculative::{canvas, run_target};

    const MASK: u32 = 3;

    fn model(device: &Device, seed: u64) -> Denoiser {
        let config =
            DenoiserConfig::tokens(6, 16).with_d_model(16).with_n_heads(2).with_n_layers(1);
        randomised_seeded(config.init(device).unwrap(), 0.5, seed, device)
    }

    #[test]
    fn the_mixture_weight_moves_the_decision_between_the_two_models() {
        let device = Device::flex();
        let (proposer_net, verifier) = (model(&device, 1), model(&device, 2));
        let proposer = Subs { model: &proposer_net, mask_id: MASK };
        let prompt = [1, 4, 5];
        let mut rng = StdRng::seed_from_u64(0);

        // R = 1: the proposer decides, so every window is kept whole.
        let trusting = AdaptiveParallelDecoder::new(1.0, 4).unwrap();
        let out = trusting.generate(&proposer, &verifier, &prompt, 10, &mut rng).unwrap();
        assert_eq!(out.accepted, [4, 4, 2]);
        assert_eq!(out.tokens.len(), 13);

        // R = 0 with a verifier that never agrees with these proposals: one token a round, and
        // one call of each model per round (and one for the prompt).
        let strict = AdaptiveParallelDecoder::new(0.0, 4).unwrap();
        let out = strict.generate(&proposer, &verifier, &prompt, 10, &mut rng).unwrap();
        assert_eq!(out.accepted, [1; 10]);
        assert_eq!((out.proposer_calls, out.verifier_calls), (10, 11));

        // R = 0.7 (APD's default): each round keeps exactly the first proposal and the longest
        // run after it that matches the mixture's argmax, recomputed here from both models.
        let apd = AdaptiveParallelDecoder::new(0.7, 4).unwrap();
        let out = apd.generate(&proposer, &verifier, &prompt, 12, &mut rng).unwrap();
        let mut n = prompt.len();
        for &kept in &out.accepted {
            let window = 4.min(prompt.len() + 12 - n);
            let end = prompt.len() + 12;
            let z = canvas(&out.tokens[..n], end, MASK, &device);
            let t = floats(&[(end - n) as f64 / end as f64], &device);
            let log_q = rows(proposer.region_log_probs(z, t, n..n + window));
            let proposals: Vec<u32> =
                log_q.iter().map(|q| argmax(q.iter().copied()) as u32).collect();
            let mut input = out.tokens[..n].to_vec();
            input.extend(&proposals);
            let log_p = rows(log_softmax(run_target(&verifier, &input, None).0, 2));
            let agrees = |j: usize| {
                let mixture =
                    log_q[j].iter().zip(&log_p[n - 1 + j]).map(|(q, p)| 0.7 * q + 0.3 * p);
                argmax(mixture) == proposals[j] as usize
            };
            let expected = 1 + (1..window).take_while(|&j| agrees(j)).count();
            assert_eq!(kept, expected, "round at {n}");
            assert_eq!(&out.tokens[n..n + kept], &proposals[..kept]);
            n += kept;
        }
        assert!(out.accepted.iter().any(|&k| k > 1), "{:?}", out.accepted);

        assert!(AdaptiveParallelDecoder::new(1.5, 4).is_err());
        assert!(AdaptiveParallelDecoder::new(0.5, 0).is_err());
        assert!(AdaptiveParallelDecoder::new(0.5, 2).unwrap().with_temperature(-1.0).is_err());
    }
}
