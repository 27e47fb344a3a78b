//! BD3LM training: the block-diffusion NELBO on `x_t ⊕ x0` in one vectorised pass.

use burn::tensor::{Int, Tensor, TensorData};
use dlm_core::backbone::{AttentionMask, Denoiser, DenoiserInput, TokenModel};
use dlm_core::data::SequenceDataset;
use dlm_core::eval::{BoundReport, EvalBatches, evaluate_bound};
use dlm_core::train::{LossSum, Objective};
use dlm_discrete::sampler::MaskedSampler;
use dlm_discrete::{Masked, MaskingProcess, Subs, masked_nelbo_sum, subs_nll_at_rows};
use dlm_sched::{NoiseSchedule, TimeSampler};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{BlockError, ensure_size};
use crate::sampling::BlockSampler;
use dlm_sched::InvalidInput;

mod mask;

pub use mask::Bd3lmMask;

/// BD3LM's objective (Arriola et al. 2025, §3, eq. 8): the sequence is cut into blocks of
/// `block_size`; block `b` is a masked diffusion conditioned on the clean blocks before it,
///
/// `L = Σ_b E_{t_b} [ w(t_b) · Σ_{i ∈ b, masked} −log p_θ(x0_i | x_{t_b}^b, x0^{<b}) ]`,
///
/// with an independent `t_b` per block and per sequence and `w = −α′/(1 − α)`. Training runs on
/// `x_t ⊕ x0` (length `2L`) with the block mask of [`Bd3lmMask`], so every
/// block sees its own noisy tokens and the clean blocks before it in one forward pass (their
/// §3.3). The loss is averaged over all tokens.
///
/// Times come from a [`TimeSampler`]: `U[ε, 1]` for likelihoods, BD3LM's clipped `U[β, ω]` to
/// lower the variance of training (their §5.2; see [`Bd3lm::variance_search`]).
#[derive(Debug, Clone)]
pub struct Bd3lm<S> {
    process: MaskingProcess<S>,
    block_size: usize,
    time_sampler: TimeSampler,
}

impl<S: NoiseSchedule> Bd3lm<S> {
    /// BD3LM with blocks of `block_size`.
    ///
    /// # Errors
    /// [`BlockError::Invalid`] if `block_size == 0`.
    pub fn new(
        schedule: S,
        mask_id: u32,
        block_size: usize,
        time_sampler: TimeSampler,
    ) -> Result<Self, BlockError> {
        ensure_size(block_size > 0, "BD3LM", "block_size", block_size, "at least 1")?;
        Ok(Self { process: MaskingProcess::new(schedule, mask_id), block_size, time_sampler })
    }

    /// The block size `L′`.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The forward process of every block (schedule and mask token; MDLM's, at per-block times).
    pub fn process(&self) -> &MaskingProcess<S> {
        &self.process
    }

    /// The block sampler of a model trained with this objective: blocks of its `L′`, masked
    /// with its mask token, each decoded by `inner` (its §4: block by block, the clean blocks
    /// before as context).
    pub fn sampler(&self, inner: MaskedSampler) -> BlockSampler {
        BlockSampler { inner, block_size: self.block_size, mask_id: self.process.mask_id() }
    }

    /// The same objective with another time sampler.
    pub fn with_time_sampler(&self, time_sampler: TimeSampler) -> Self
    where
        S: Clone,
    {
        Self { time_sampler, ..self.clone() }
    }

    /// Checks that `model` and `data` fit: the block size divides `seq_len`, the model reads no
    /// time, and the masking process's checks ([`dlm_discrete::MaskingProcess::check_data`]:
    /// context, vocabulary, no mask token in the data).
    ///
    /// # Errors
    /// [`BlockError::Invalid`] or [`BlockError::TimeConditionedModel`].
    pub fn check<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        data: &SequenceDataset,
    ) -> Result<(), BlockError> {
        self.check_blocks(data.seq_len())?;
        if model.is_time_conditioned() {
            return Err(BlockError::TimeConditionedModel { what: "BD3LM training" });
        }
        let subs = Subs { model, mask_id: self.process.mask_id() };
        self.process.check_data(&subs, data, "BD3LM")?;
        Ok(())
    }

    /// Sequences of `seq_len` cut into whole blocks.
    fn check_blocks(&self, seq_len: usize) -> Result<(), InvalidInput> {
        ensure_size(
            seq_len > 0 && seq_len.is_multiple_of(self.block_size),
            "BD3LM",
            "seq_len",
            seq_len,
            format!("a multiple of block_size = {}", self.block_size),
        )
    }

    /// The summed loss at given block times (`block_times[b·n_blocks + j]` for block `j` of
    /// sequence `b`), masking with uniforms from `rng` (deterministic given them).
    ///
    /// # Panics
    /// If `block_times` has the wrong length or the block size does not divide `seq_len`.
    pub fn loss_at<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        x0: Tensor<2, Int>,
        block_times: &[f64],
        rng: &mut StdRng,
    ) -> LossSum {
        let [batch, seq_len] = x0.dims();
        let device = x0.device();
        let n_blocks = seq_len / self.block_size;
        assert_eq!(block_times.len(), batch * n_blocks, "one time per block");
        let token_times: Vec<f32> = (0..batch * seq_len)
            .map(|i| block_times[(i / seq_len) * n_blocks + (i % seq_len) / self.block_size] as f32)
            .collect();
        let t = Tensor::<1>::from_data(TensorData::new(token_times, [batch * seq_len]), &device);
        let schedule = self.process.schedule();
        let mask_rate = schedule.one_minus_alpha_tensor(t.clone()).reshape([batch, seq_len]);
        let weight = schedule.masked_elbo_weight_tensor(t).reshape([batch, seq_len]);
        let Masked { z_t, is_masked } =
            self.process.mask_at_rates(x0.clone(), mask_rate, None, rng);
        let both = Tensor::cat(vec![z_t, x0.clone()], 1);
        let mask = AttentionMask::rule(Bd3lmMask { block_size: self.block_size, seq_len });
        // The `x_t` half of `x_t ⊕ x0` is what the loss reads; the head runs at its masked rows.
        let hidden = model
            .forward_hidden(DenoiserInput::tokens(both).with_mask(mask))
            .output
            .narrow(1, 0, seq_len);
        let sum = masked_nelbo_sum(is_masked, weight, |rows| {
            subs_nll_at_rows(model, hidden, x0, rows, self.process.mask_id())
        });
        LossSum { sum, count: batch * seq_len }
    }

    /// One time per block of the batch, in a random order: a stratified sampler's `i`-th time
    /// lies in the `i`-th stratum, so without the shuffle block `j` of every sequence would only
    /// see the sub-strata `j, j + n_blocks, …` and later blocks would always be noisier than
    /// earlier ones in the same row. The reference code keeps that order; shuffling keeps one time
    /// per stratum over the batch and makes every block's time marginally `U[low, high]`.
    fn draw_times(&self, n: usize, rng: &mut StdRng) -> Vec<f64> {
        let mut times = self.time_sampler.sample(n, rng);
        times.shuffle(rng);
        times
    }

    /// The mean loss per token on `data`, `time_samples` draws of the block times per sequence,
    /// `f64` sums ([`evaluate_bound`]). With `U[ε, 1]` times this is the NELBO bound on the NLL
    /// per token.
    ///
    /// # Errors
    /// [`BlockError`] from [`Bd3lm::check`], or as [`evaluate_bound`] for a zero `batch_size` or
    /// `time_samples`.
    pub fn evaluate<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        data: &SequenceDataset,
        batch_size: usize,
        time_samples: usize,
        seed: u64,
    ) -> Result<BoundReport, BlockError> {
        self.check(model, data)?;
        let n_blocks = data.seq_len() / self.block_size;
        let batches = EvalBatches { batch_size, max_batches: None, seed };
        let report = evaluate_bound(data, &model.device(), batches, time_samples, |x0, rng| {
            let times = self.draw_times(x0.dims()[0] * n_blocks, rng);
            self.loss_at(model, x0, &times, rng)
        })?;
        Ok(report)
    }

    /// BD3LM's data-driven schedule search (Arriola et al. 2025, §5.3): for each candidate
    /// `(β, ω)`, the variance across sequences and draws of the per-sequence loss with block times
    /// from `U[β, ω]`, on `data`; returned sorted, lowest variance first. Train with the winner;
    /// report likelihoods with `U[ε, 1]`.
    ///
    /// # Errors
    /// As [`Bd3lm::evaluate`], and invalid `(β, ω)`.
    pub fn variance_search<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        data: &SequenceDataset,
        candidates: &[(f64, f64)],
        time_samples: usize,
        seed: u64,
    ) -> Result<Vec<ClipCandidate>, BlockError>
    where
        S: Clone,
    {
        self.check(model, data)?;
        let device = model.device();
        let seq_len = data.seq_len();
        let n_blocks = seq_len / self.block_size;
        let mut results = Vec::with_capacity(candidates.len());
        for &(beta, omega) in candidates {
            let clipped = self.with_time_sampler(TimeSampler::clipped(beta, omega)?);
            let mut rng = StdRng::seed_from_u64(seed);
            let mut per_sequence = Vec::new();
            for indices in data.ordered_batches(64) {
                let x0 = data.batch(&indices, &device);
                for _ in 0..time_samples {
                    let times = clipped.draw_times(indices.len() * n_blocks, &mut rng);
                    // One loss per sequence: run each row alone to keep the sums apart.
                    for row in 0..indices.len() {
                        let loss = clipped.loss_at(
                            model,
                            x0.clone().narrow(0, row, 1),
                            &times[row * n_blocks..(row + 1) * n_blocks],
                            &mut rng,
                        );
                        per_sequence.push(loss.sum.into_scalar::<f64>() / seq_len as f64);
                    }
                }
            }
            let n = per_sequence.len() as f64;
            let mean = per_sequence.iter().sum::<f64>() / n;
            let variance =
                per_sequence.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            results.push(ClipCandidate { beta, omega, mean, variance });
        }
        results.sort_by(|a, b| a.variance.total_cmp(&b.variance));
        Ok(results)
    }
}

/// One candidate of [`Bd3lm::variance_search`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipCandidate {
    /// Lower end of the mask-rate range.
    pub beta: f64,
    /// Upper end.
    pub omega: f64,
    /// Mean per-token loss under `U[β, ω]`.
    pub mean: f64,
    /// Its variance across sequences and draws.
    pub variance: f64,
}

impl<S: NoiseSchedule> Objective<Denoiser> for Bd3lm<S> {
    fn check_data(
        &self,
        model: &Denoiser,
        data: &SequenceDataset,
    ) -> Result<(), dlm_core::CoreError> {
        Ok(self.check(model, data)?)
    }

    /// # Panics
    /// If the model is time-conditioned (see [`Bd3lm::check`]).
    fn loss(&self, model: &Denoiser, batch: Tensor<2, Int>, rng: &mut StdRng) -> LossSum {
        assert!(
            !model.is_time_conditioned(),
            "BD3LM training needs a model without time conditioning"
        );
        let [b, seq_len] = batch.dims();
        let times = self.draw_times(b * (seq_len / self.block_size), rng);
        self.loss_at(model, batch, &times, rng)
    }
}

#[cfg(test)]
mod tests;
