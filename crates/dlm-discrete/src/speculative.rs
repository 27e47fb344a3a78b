//! Speculative decoding with a diffusion drafter: the masked model drafts a window of tokens in
//! one parallel step, an autoregressive model verifies it in one pass, and the output is
//! distributed exactly as the autoregressive model's.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm_core::backbone::{AttentionMask, DenoiserInput, KvCache, TokenModel};
use dlm_core::host::floats;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::denoiser::MaskedDenoiser;
use crate::error::{DiscreteError, ensure_size};

/// Speculative sampling (Leviathan et al. 2023; Chen et al. 2023) with a masked-diffusion
/// drafter, as SpecDiff proposes (Christopher et al. 2024, arXiv 2408.05636; methods_2 §B6).
///
/// Each round, with `x` the tokens so far (`n` of them) and `γ` the window:
///
/// 1. **Draft**: one call of the drafter on `x` followed by masks up to the whole length (the
///    canvas it was trained on) gives the marginals of the next `γ` positions,
///    `q_j = p_D(x_{n+j} | x, masks)`; every draft token `d_j ~ q_j` is drawn independently, in one
///    step. (Drawn this way `q_j` is the exact law of `d_j` given the accepted prefix, which the
///    rule below needs; multi-step drafting that unmasks right of `j` first would break it.)
/// 2. **Verify**: one causal call of the target on the window gives
///    `p_j = p_AR(· | x, d_{<j})` for `j = 1..γ + 1`.
/// 3. **Accept** `d_j`, for `j = 1, 2, …`, with probability `min(1, p_j(d_j) / q_j(d_j))`; at the
///    first rejection draw the token from `norm(max(0, p_j − q_j))` and end the round; if all `γ`
///    are accepted, draw one more from `p_{γ+1}`.
///
/// Every round adds between 1 and `γ + 1` tokens for two model calls, and the tokens are
/// distributed exactly as the target's ancestral samples (test: the empirical distribution of
/// short continuations against the target's exact one, chi-square). The target keeps a KV cache
/// of the accepted tokens, trimmed after each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeculativeDecoder {
    window: usize,
}

/// What [`SpeculativeDecoder::generate`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speculated {
    /// Prompt and continuation.
    pub tokens: Vec<u32>,
    /// Calls of the target (the prompt's pass included).
    pub target_calls: usize,
    /// Calls of the drafter.
    pub draft_calls: usize,
    /// Draft tokens accepted in each round.
    pub accepted: Vec<usize>,
}

impl Speculated {
    /// Mean tokens a round adds (accepted draft tokens and the one the target draws; in the last
    /// round that one is dropped when the continuation is already long enough, so this
    /// overcounts it by at most one token).
    pub fn tokens_per_round(&self) -> f64 {
        let added: usize = self.accepted.iter().map(|a| a + 1).sum();
        added as f64 / self.accepted.len().max(1) as f64
    }
}

impl SpeculativeDecoder {
    /// Drafts `window` tokens per round.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] if `window == 0`.
    pub fn new(window: usize) -> Result<Self, DiscreteError> {
        ensure_size(window > 0, "speculative decoder", "window", window, "at least 1")?;
        Ok(Self { window })
    }

    /// Continues `prompt` by `n_new` tokens: `target` (causal, reading no time) is the model whose
    /// distribution the output has, `drafter` proposes.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] for an empty prompt, ids outside the target's vocabulary, two
    /// models over different vocabularies, or a length beyond either model's context;
    /// [`DiscreteError::TimeConditionedModel`] for a time-conditioned target;
    /// [`DiscreteError::Unsupported`] for a target that cannot read through a KV cache (Dream's
    /// shifted logits).
    pub fn generate<D: MaskedDenoiser, T: TokenModel + ?Sized>(
        &self,
        drafter: &D,
        target: &T,
        prompt: &[u32],
        n_new: usize,
        rng: &mut StdRng,
    ) -> Result<Speculated, DiscreteError> {
        Self::check(drafter, target, prompt, n_new)?;
        let end = prompt.len() + n_new;
        let mut tokens = prompt.to_vec();
        let mut verifier = CachedVerifier::new(target, prompt);
        let (mut draft_calls, mut accepted) = (0, Vec::new());
        while tokens.len() < end {
            let n = tokens.len();
            let window = self.window.min(end - n);
            // Draft: the marginals of the window, in one call.
            let q: Vec<Vec<f64>> = window_log_probs(drafter, &tokens, end, window)
                .into_iter()
                .map(|row| row.into_iter().map(f64::exp).collect())
                .collect();
            draft_calls += 1;
            let draft: Vec<u32> = q.iter().map(|q| categorical(q, rng.random::<f64>())).collect();
            // Verify: the target's distributions after the last token and each draft token.
            let p = rows(softmax(verifier.score(tokens[n - 1], &draft), 2));
            let mut taken = 0;
            let next = loop {
                if taken == window {
                    break categorical(&p[window], rng.random::<f64>());
                }
                let (p_j, q_j, d) = (&p[taken], &q[taken], draft[taken] as usize);
                if rng.random::<f64>() * q_j[d] < p_j[d] {
                    taken += 1;
                    continue;
                }
                let residual: Vec<f64> =
                    p_j.iter().zip(q_j).map(|(p, q)| (p - q).max(0.0)).collect();
                break categorical(&residual, rng.random::<f64>());
            };
            tokens.extend(&draft[..taken]);
            if tokens.len() < end {
                tokens.push(next);
            }
            accepted.push(taken);
            verifier.keep(n + taken);
        }
        let target_calls = verifier.calls;
        Ok(Speculated { tokens, target_calls, draft_calls, accepted })
    }

    pub(crate) fn check<D: MaskedDenoiser, T: TokenModel + ?Sized>(
        drafter: &D,
        target: &T,
        prompt: &[u32],
        n_new: usize,
    ) -> Result<(), DiscreteError> {
        const CONTEXT: &str = "speculative decoder";
        if target.is_time_conditioned() {
            return Err(DiscreteError::TimeConditionedModel { what: "the autoregressive target" });
        }
        if !target.supports_kv_cache() {
            return Err(DiscreteError::Unsupported {
                what: "an autoregressive target that cannot read through a KV cache",
            });
        }
        ensure_size(!prompt.is_empty(), CONTEXT, "prompt", 0, "at least one token")?;
        let vocab_size = target.vocab_size();
        ensure_size(
            drafter.vocab_size() == vocab_size,
            CONTEXT,
            "drafter vocab_size",
            drafter.vocab_size(),
            format!("the target's, {vocab_size}"),
        )?;
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab_size) {
            ensure_size(
                false,
                CONTEXT,
                "prompt token",
                bad as usize,
                format!("below {vocab_size}"),
            )?;
        }
        let total = prompt.len().saturating_add(n_new);
        let context =
            drafter.max_seq_len().map_or(target.max_seq_len(), |d| d.min(target.max_seq_len()));
        ensure_size(
            total <= context,
            CONTEXT,
            "n_new",
            n_new,
            format!("prompt and continuation within both models' context, {context}"),
        )?;
        Ok(())
    }
}

/// The drafter's input: the tokens so far and masks up to the whole length `end` (prompt and
/// continuation), the canvas a masked model is trained and sampled on.
///
/// # Shapes
/// - returns `[1, end]`
pub(crate) fn canvas(tokens: &[u32], end: usize, mask: u32, device: &Device) -> Tensor<2, Int> {
    let mut z: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    z.resize(end, i64::from(mask));
    Tensor::from_data(TensorData::new(z, [1, end]), device)
}

/// The masked model's log-probabilities of the `window` positions after `tokens`, read on the
/// whole canvas in one call, one row per position.
pub(crate) fn window_log_probs<D: MaskedDenoiser>(
    drafter: &D,
    tokens: &[u32],
    end: usize,
    window: usize,
) -> Vec<Vec<f64>> {
    let (n, device) = (tokens.len(), drafter.device());
    let z = canvas(tokens, end, drafter.mask_id(), &device);
    let t = floats(&[(end - n) as f64 / end as f64], &device);
    rows(drafter.region_log_probs(z, t, n..n + window))
}

/// The autoregressive side of a round: a causal model with a KV cache over every accepted token
/// but the last, whose distribution comes with the next window.
pub(crate) struct CachedVerifier<'a, T: ?Sized> {
    target: &'a T,
    cache: Option<KvCache>,
    /// The cache of the last [`CachedVerifier::score`], before [`CachedVerifier::keep`] trims it.
    scored: Option<KvCache>,
    /// Model calls, the prompt's included.
    pub(crate) calls: usize,
}

impl<'a, T: TokenModel + ?Sized> CachedVerifier<'a, T> {
    /// Caches `prompt` but its last token (one call, unless the prompt is one token).
    pub(crate) fn new(target: &'a T, prompt: &[u32]) -> Self {
        let mut verifier = Self { target, cache: None, scored: None, calls: 0 };
        if prompt.len() > 1 {
            verifier.calls += 1;
            verifier.cache = run_target(target, &prompt[..prompt.len() - 1], None).1;
        }
        verifier
    }

    /// The logits after the last accepted token and after each proposal, in one call.
    ///
    /// # Shapes
    /// - returns `[1, proposals.len() + 1, vocab_size]`
    pub(crate) fn score(&mut self, last: u32, proposals: &[u32]) -> Tensor<3> {
        let mut input = vec![last];
        input.extend(proposals);
        let (logits, cache) = run_target(self.target, &input, self.cache.take());
        self.calls += 1;
        self.scored = cache;
        logits
    }

    /// The cache after the round: the first `len` positions of the last scored call's (every
    /// accepted token but the last).
    pub(crate) fn keep(&mut self, len: usize) {
        let scored = self.scored.take().expect("keep follows score, which keeps the cache");
        self.cache = Some(scored.slice(0, len));
    }
}

/// Runs `tokens` through the causal target against `cache`: the logits `[1, n, vocab]` and the
/// cache extended by them.
pub(crate) fn run_target<T: TokenModel + ?Sized>(
    target: &T,
    tokens: &[u32],
    cache: Option<KvCache>,
) -> (Tensor<3>, Option<KvCache>) {
    let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    let input =
        Tensor::<2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &target.device());
    let mut request = DenoiserInput::tokens(input).with_mask(AttentionMask::Causal).keep_cache();
    if let Some(cache) = cache {
        request = request.with_cache(cache);
    }
    let out = target.forward(request);
    (out.output, out.cache)
}

/// The rows of a `[1, n, vocab]` tensor of probabilities, in f64.
pub(crate) fn rows(probs: Tensor<3>) -> Vec<Vec<f64>> {
    let [_, n, vocab] = probs.dims();
    let values: Vec<f64> = probs.into_data().iter::<f32>().map(f64::from).collect();
    (0..n).map(|i| values[i * vocab..(i + 1) * vocab].to_vec()).collect()
}

/// The category at `u · Σ w` of the cumulative weights `w` (unnormalised), `u ∈ [0, 1)`.
pub(crate) fn categorical(weights: &[f64], u: f64) -> u32 {
    let total: f64 = weights.iter().sum();
    let mut target = u * total;
    for (i, &w) in weights.iter().enumerate() {
        if target < w {
            return i as u32;
        }
        target -= w;
    }
    // Rounding: the last category with weight.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use dlm_core::backbone::{Denoiser, DenoiserConfig};
    use dlm_core::testing::randomised_seeded;
    use rand::SeedableRng;

    use super::*;
    use crate::denoiser::Subs;

    const VOCAB: usize = 4;
    const MASK: u32 = 3;

    /// A fixed random model (a host-seeded init: tests in parallel share the device's RNG).
    fn model(device: &Device, std: f64, seed: u64) -> Denoiser {
        let config =
            DenoiserConfig::tokens(VOCAB, 8).with_d_model(16).with_n_heads(2).with_n_layers(1);
        randomised_seeded(config.init(device).unwrap(), std, seed, device)
    }

    /// The target's exact probability of every continuation `(a, b, c)` of `[prompt]`.
    fn exact(target: &Denoiser, prompt: u32) -> Vec<f64> {
        let mut probs = Vec::new();
        for a in 0..VOCAB as u32 {
            for b in 0..VOCAB as u32 {
                let p = rows(softmax(run_target(target, &[prompt, a, b], None).0, 2));
                for c in 0..VOCAB {
                    probs.push(p[0][a as usize] * p[1][b as usize] * p[2][c]);
                }
            }
        }
        probs
    }

    /// Pearson's statistic of `counts` against `probs`, bins with an expected count below 5
    /// pooled, and the 0.1 % critical value of its chi-square law (Wilson–Hilferty).
    fn chi_square(counts: &[usize], probs: &[f64]) -> (f64, f64) {
        let n: usize = counts.iter().sum();
        let (mut statistic, mut bins, mut pooled) = (0.0, 0, (0.0, 0.0));
        for (&count, &p) in counts.iter().zip(probs) {
            let expected = p * n as f64;
            if expected < 5.0 {
                pooled = (pooled.0 + count as f64, pooled.1 + expected);
            } else {
                statistic += (count as f64 - expected).powi(2) / expected;
                bins += 1;
            }
        }
        if pooled.1 > 0.0 {
            statistic += (pooled.0 - pooled.1).powi(2) / pooled.1;
            bins += 1;
        }
        let k = f64::from(bins - 1);
        let z = 3.09; // the 99.9 % quantile of N(0, 1)
        let critical = k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3);
        (statistic, critical)
    }

    /// Draws per test: enough that an acceptance rule off by `p` instead of `p / q` fails.
    const SAMPLES: usize = 6000;

    #[test]
    fn the_output_is_distributed_exactly_as_the_target() {
        let device = Device::flex();
        // A target with a near-uniform drafter (`p / q` far from `p`), and two peaked models
        // (`p / q` often below 1): together they catch an acceptance rule, a residual or a
        // bonus draw that is off.
        for (target_std, drafter_std) in [(0.3, 0.05), (0.5, 0.5)] {
            let target = model(&device, target_std, 1);
            let drafter_net = model(&device, drafter_std, 2);
            let drafter = Subs { model: &drafter_net, mask_id: MASK };
            let probs = exact(&target, 1);
            let decoder = SpeculativeDecoder::new(2).unwrap();
            let mut rng = StdRng::seed_from_u64(5);
            let (mut counts, mut drafted) = (vec![0; probs.len()], vec![0; probs.len()]);
            let (mut rounds, mut accepted) = (0, 0);
            for _ in 0..SAMPLES {
                let out = decoder.generate(&drafter, &target, &[1], 3, &mut rng).unwrap();
                let [a, b, c] = [out.tokens[1], out.tokens[2], out.tokens[3]].map(|t| t as usize);
                counts[(a * VOCAB + b) * VOCAB + c] += 1;
                rounds += out.accepted.len();
                accepted += out.accepted.iter().sum::<usize>();
                assert_eq!(out.target_calls, out.draft_calls, "a one-token prompt needs no pass");
            }
            let (statistic, critical) = chi_square(&counts, &probs);
            assert!(
                statistic < critical,
                "{target_std}/{drafter_std}: chi-square {statistic:.1} ≥ {critical:.1}"
            );
            assert!(accepted > 0, "no draft token accepted in {rounds} rounds");

            // The same test rejects the drafter's own joint draws: it can see a wrong law.
            let z =
                Tensor::<2, Int>::from_ints([[1, MASK as i64, MASK as i64, MASK as i64]], &device);
            let q = rows(drafter.region_log_probs(z, floats(&[0.75], &device), 1..4).exp());
            for _ in 0..SAMPLES {
                let [a, b, c] = [0, 1, 2].map(|j| categorical(&q[j], rng.random::<f64>()) as usize);
                drafted[(a * VOCAB + b) * VOCAB + c] += 1;
            }
            let (statistic, critical) = chi_square(&drafted, &probs);
            assert!(statistic > critical, "the drafter passed as the target: {statistic:.1}");
        }
    }

    #[test]
    fn rounds_add_accepted_tokens_plus_one_and_bad_requests_are_refused() {
        let device = Device::flex();
        let target = model(&device, 0.5, 3);
        let drafter = Subs { model: &target, mask_id: MASK };
        let decoder = SpeculativeDecoder::new(3).unwrap();
        let out =
            decoder.generate(&drafter, &target, &[1, 2], 5, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(out.tokens.len(), 7);
        assert_eq!(&out.tokens[..2], &[1, 2]);
        assert_eq!(out.target_calls, out.draft_calls + 1, "one pass for the prompt");
        let added: usize = out.accepted.iter().map(|a| a + 1).sum();
        assert!(added >= 5 && added <= 5 + out.accepted.len(), "{out:?}");
        assert!(SpeculativeDecoder::new(0).is_err());
        let mut rng = StdRng::seed_from_u64(0);
        assert!(decoder.generate(&drafter, &target, &[], 2, &mut rng).is_err());
        assert!(decoder.generate(&drafter, &target, &[9], 2, &mut rng).is_err());
        assert!(decoder.generate(&drafter, &target, &[1], 8, &mut rng).is_err(), "context 8");
    }
}
