//! The autoregressive baseline: causal next-token prediction on the same [`Denoiser`].

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use rand::rngs::StdRng;

use crate::backbone::{AttentionMask, Denoiser, DenoiserInput};
use crate::data::SequenceDataset;
use crate::error::CoreError;
use crate::sampling::TokenSampler;
use crate::train::{LossSum, Objective};

/// The autoregressive objective `−Σ_i log p_θ(x_i | x_{<i})` with a causal mask: the exact
/// negative log-likelihood that every diffusion bound is compared against.
///
/// Positions before `first_target` are context only (position 0 has no context; a Markov source
/// of order `k` is predictable with its full context from position `k`); targets equal to `pad`
/// are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArObjective {
    first_target: usize,
    pad: Option<u32>,
}

impl Default for ArObjective {
    fn default() -> Self {
        Self { first_target: 1, pad: None }
    }
}

impl ArObjective {
    /// Scores positions `first_target..` only (at least 1).
    pub fn with_first_target(self, first_target: usize) -> Self {
        Self { first_target: first_target.max(1), ..self }
    }

    /// Skips targets equal to `pad`.
    pub fn ignoring(self, pad: u32) -> Self {
        Self { pad: Some(pad), ..self }
    }
}

impl ArObjective {
    fn check_seq_len(&self, seq_len: usize) -> Result<(), CoreError> {
        Ok(crate::error::ensure_size(
            seq_len > self.first_target,
            "autoregressive objective",
            "seq_len",
            seq_len,
            format!("more than first_target = {} (a position to score)", self.first_target),
        )?)
    }
}

impl Objective<Denoiser> for ArObjective {
    /// The model's context and vocabulary, and a position to score after `first_target`.
    fn check_data(&self, model: &Denoiser, data: &SequenceDataset) -> Result<(), CoreError> {
        model.check_data(data)?;
        self.check_seq_len(data.seq_len())
    }

    /// # Panics
    /// If `seq_len ≤ first_target` (see [`Objective::check_data`]).
    fn loss(&self, model: &Denoiser, batch: Tensor<2, Int>, _rng: &mut StdRng) -> LossSum {
        let [batch_size, seq_len] = batch.dims();
        assert!(self.check_seq_len(seq_len).is_ok(), "no position to score");
        let inputs = batch.clone().narrow(1, 0, seq_len - 1);
        let logits =
            model.forward(DenoiserInput::tokens(inputs).with_mask(AttentionMask::Causal)).output;
        // Output j predicts position j + 1.
        let n_targets = seq_len - self.first_target;
        let logits = logits.narrow(1, self.first_target - 1, n_targets);
        let targets = batch.narrow(1, self.first_target, n_targets);
        let nll = log_softmax(logits, 2)
            .gather(2, targets.clone().unsqueeze_dim(2))
            .squeeze_dim::<2>(2)
            .neg();
        match self.pad {
            None => LossSum { sum: nll.sum(), count: batch_size * n_targets },
            Some(pad) => {
                let keep = targets.not_equal_elem(pad as i64);
                let count = keep.clone().int().sum().into_scalar::<i64>() as usize;
                LossSum { sum: nll.mask_fill(keep.bool_not(), 0.0).sum(), count }
            }
        }
    }
}

/// Continues `prompt` by `n_new` tokens, one at a time, with a KV cache: the prompt is encoded
/// once, then each new token is run against the cache.
///
/// # Shapes
/// - `prompt`: `[batch, n_prompt]` (`n_prompt ≥ 1`)
/// - returns `[batch, n_prompt + n_new]`
///
/// # Panics
/// If the model is time-conditioned (an autoregressive model reads no time) or reads vectors.
pub fn generate(
    model: &Denoiser,
    prompt: Tensor<2, Int>,
    n_new: usize,
    sampler: &TokenSampler,
) -> Tensor<2, Int> {
    let mut tokens = prompt.clone();
    let mut input = prompt;
    let mut cache = None;
    for _ in 0..n_new {
        let mut request =
            DenoiserInput::tokens(input).with_mask(AttentionMask::Causal).keep_cache();
        if let Some(cache) = cache.take() {
            request = request.with_cache(cache);
        }
        let out = model.forward(request);
        cache = out.cache;
        let n = out.output.dims()[1];
        let next = sampler.sample(out.output.narrow(1, n - 1, 1));
        tokens = Tensor::cat(vec![tokens, next.clone()], 1);
        input = next;
    }
    tokens
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use rand::SeedableRng;

    use super::*;
    use crate::backbone::{DenoiserConfig, DenoiserIo};

    fn model(device: &Device, vocab: usize) -> Denoiser {
        DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false }, 32)
            .with_d_model(32)
            .with_n_heads(2)
            .with_n_layers(2)
            .init(device)
            .unwrap()
    }

    #[test]
    fn a_fresh_model_scores_ln_v_per_token() {
        // Zero-initialised head: uniform predictions, NLL = ln V exactly.
        let device = Device::flex();
        let batch = Tensor::<2>::random([3, 9], Distribution::Uniform(0.0, 10.0), &device).int();
        let loss =
            ArObjective::default().loss(&model(&device, 10), batch, &mut StdRng::seed_from_u64(0));
        assert_eq!(loss.count, 3 * 8);
        assert!((loss.sum.into_scalar::<f64>() / 24.0 - 10f64.ln()).abs() < 1e-5);
    }

    #[test]
    fn padding_and_first_target_restrict_the_scored_positions() {
        let device = Device::flex();
        let batch = Tensor::<2, Int>::from_ints([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]], &device);
        let objective = ArObjective::default().ignoring(0);
        let loss =
            objective.loss(&model(&device, 10), batch.clone(), &mut StdRng::seed_from_u64(0));
        assert_eq!(loss.count, 2 + 4);
        let loss = ArObjective::default().with_first_target(3).loss(
            &model(&device, 10),
            batch,
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(loss.count, 2 * 2);
    }

    #[test]
    fn cached_generation_equals_recomputing_the_prefix() {
        let device = Device::flex();
        device.seed(8);
        // Random weights: every prediction depends on the whole context.
        let model = crate::testing::randomised(model(&device, 10), &device);
        let prompt = Tensor::<2>::random([2, 3], Distribution::Uniform(0.0, 10.0), &device).int();
        // One token at a time against the cache: the same logits as recomputing the prefix.
        let full = |tokens: Tensor<2, Int>| {
            model.forward(DenoiserInput::tokens(tokens).with_mask(AttentionMask::Causal)).output
        };
        let first = model.forward(
            DenoiserInput::tokens(prompt.clone()).with_mask(AttentionMask::Causal).keep_cache(),
        );
        let mut cache = first.cache.unwrap();
        let mut tokens = prompt.clone();
        for step in 0..4 {
            let next = Tensor::<2>::random([2, 1], Distribution::Uniform(0.0, 10.0), &device).int();
            tokens = Tensor::cat(vec![tokens, next.clone()], 1);
            let out = model.forward(
                DenoiserInput::tokens(next)
                    .with_mask(AttentionMask::Causal)
                    .with_cache(cache)
                    .keep_cache(),
            );
            cache = out.cache.unwrap();
            let n = tokens.dims()[1];
            let diff = (out.output - full(tokens.clone()).narrow(1, n - 1, 1))
                .abs()
                .max()
                .into_scalar::<f64>();
            assert!(diff < 1e-5, "step {step}: {diff}");
        }
        // And `generate` (greedy) picks the tokens the uncached argmax picks.
        let cached = generate(&model, prompt.clone(), 6, &TokenSampler::greedy());
        let mut tokens = prompt;
        for _ in 0..6 {
            let logits = full(tokens.clone());
            let n = logits.dims()[1];
            let next = TokenSampler::greedy().sample(logits.narrow(1, n - 1, 1));
            tokens = Tensor::cat(vec![tokens, next], 1);
        }
        assert_eq!(cached.into_data(), tokens.into_data());
    }
}
