//! SEDD (Lou, Meng, Ermon, ICML 2024): score entropy discrete diffusion.
//!
//! Instead of `p_θ(x0 | x_t)`, the network models the *concrete score*, the ratios
//! `s_θ(x_t, t)_y ≈ p_t(y)/p_t(x_t)` between the noised marginal at sequences one token apart
//! ([`ConcreteScore`]), unnormalised. It is trained with the diffusion-weighted denoising score
//! entropy, an upper bound on `−log p(x0)` ([`Sedd`]), and sampled by Tweedie τ-leaping
//! ([`TweedieSampler`]). Two forward chains ([`Graph`]): absorbing, with MDLM's log-linear
//! schedule, and uniform, with the geometric one (the reference code's pairing, `configs/`).
//!
//! On the absorbing graph a score whose entries at a masked position sum to `1/(e^σ − 1)` is a
//! masked denoiser in disguise, `s_y = p_θ(y | x_t)/(e^σ − 1)`, and the DWDSE is then exactly
//! MDLM's NELBO (the tests check both directions); SEDD's network is free not to normalise.

mod bayes;
mod graph;
mod sampler;
mod score;

pub use bayes::MarkovBayesScore;
pub use graph::Graph;
pub use sampler::TweedieSampler;
pub use score::{ConcreteScore, ScoreNetwork};

use burn::tensor::{Int, Tensor};
use dlm_core::backbone::Denoiser;
use dlm_core::data::SequenceDataset;
use dlm_core::eval::{BoundReport, EvalBatches, evaluate_bound};
use dlm_core::host::floats;
use dlm_core::train::{LossSum, Objective};
use dlm_sched::{NoiseSchedule, TimeSampler};
use rand::rngs::StdRng;

use crate::error::{DiscreteError, ensure_size};
use crate::masking::{MaskingProcess, ensure_absent};

/// SEDD's objective and bound: the diffusion-weighted denoising score entropy (DWDSE, Lou et al.
/// 2024, Thm 3.6),
///
/// `−log p_θ(x0) ≤ ∫_0^1 σ′(t) E_{x_t ~ P_{σ(t)}(·|x0)} Σ_i ℓ_i(s_θ(x_t, t), x_t, x0) dt
///                 + KL(P_{σ(1)}(·|x0) ‖ p_base)`,
///
/// with `ℓ_i` the per-position score entropy of the graph ([`Graph::score_entropy`]), estimated
/// with one `t` per sequence from a [`TimeSampler`] on `[t_min, 1]` (stratified by default; the
/// reference code draws them independently) and reported per token. As for [`crate::Mdlm`], the
/// time range below `t_min` is dropped and the absorbing graph's prior term is left out
/// ([`Graph::prior_kl`]); the uniform graph's is added.
#[derive(Debug, Clone)]
pub struct Sedd<S> {
    graph: Graph,
    schedule: S,
    vocab_size: usize,
    time_sampler: TimeSampler,
}

impl<S: NoiseSchedule> Sedd<S> {
    /// SEDD on `graph` over the ids `0..vocab_size`, with the stratified time sampler on
    /// `[t_min, 1]` (the reference code's `t_min = 1e-3`).
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] for `vocab_size < 2` or a mask id outside the vocabulary;
    /// [`DiscreteError::Schedule`] unless `0 ≤ t_min ≤ 1`.
    pub fn new(
        graph: Graph,
        schedule: S,
        vocab_size: usize,
        t_min: f64,
    ) -> Result<Self, DiscreteError> {
        ensure_size(vocab_size >= 2, "SEDD", "vocab_size", vocab_size, "at least 2")?;
        if let Graph::Absorbing { mask_id } = graph {
            ensure_size(
                (mask_id as usize) < vocab_size,
                "SEDD",
                "mask_id",
                mask_id as usize,
                format!("below vocab_size = {vocab_size}"),
            )?;
        }
        Ok(Self { graph, schedule, vocab_size, time_sampler: TimeSampler::antithetic(t_min)? })
    }

    /// Uses another time sampler (the reference code's independent draws:
    /// [`TimeSampler::uniform`]).
    pub fn with_time_sampler(self, time_sampler: TimeSampler) -> Self {
        Self { time_sampler, ..self }
    }

    /// The forward chain.
    pub fn graph(&self) -> Graph {
        self.graph
    }

    /// The total-noise schedule `σ(t)`.
    pub fn schedule(&self) -> &S {
        &self.schedule
    }

    /// The ids the chain moves between.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// `model` read as a log-score network of this chain ([`ScoreNetwork`]).
    pub fn score_network<'a>(&'a self, model: &'a Denoiser) -> ScoreNetwork<'a, S> {
        ScoreNetwork { model, graph: self.graph, schedule: &self.schedule }
    }

    /// `x_t ~ P_{σ(t)}(· | x0)`, one time per sequence. The absorbing graph masks exactly as
    /// [`MaskingProcess::mask`] does with the same generator (so SEDD and MDLM can be compared
    /// on identical noise).
    ///
    /// # Shapes
    /// - `x0`: `[batch, seq_len]`, `times.len() == batch` → `[batch, seq_len]`
    pub fn perturb(&self, x0: Tensor<2, Int>, times: &[f64], rng: &mut StdRng) -> Tensor<2, Int> {
        match self.graph {
            Graph::Absorbing { mask_id } => {
                let t = floats(times, &x0.device());
                MaskingProcess::new(&self.schedule, mask_id).mask(x0, t, None, rng).z_t
            }
            Graph::Uniform => {
                let sigmas: Vec<f64> = times.iter().map(|&t| self.schedule.sigma(t)).collect();
                self.graph.perturb(x0, &sigmas, self.vocab_size, rng)
            }
        }
    }

    /// The summed DWDSE terms of one batch at the given times (one per sequence):
    /// `Σ_b σ′(t_b) Σ_i ℓ_{b,i}` plus the prior term of every token, with its token count.
    ///
    /// # Shapes
    /// - `x0`: `[batch, seq_len]`; `times.len() == batch`
    pub fn loss_at(
        &self,
        model: &impl ConcreteScore,
        x0: Tensor<2, Int>,
        times: &[f64],
        rng: &mut StdRng,
    ) -> LossSum {
        let [batch, seq_len] = x0.dims();
        let device = x0.device();
        let x_t = self.perturb(x0.clone(), times, rng);
        let log_score = model.log_score(x_t.clone(), floats(times, &device));
        let sigmas: Vec<f64> = times.iter().map(|&t| self.schedule.sigma(t)).collect();
        let entropy = self.graph.score_entropy(log_score, x_t, x0, &sigmas);
        let rates: Vec<f64> = times.iter().map(|&t| self.schedule.sigma_prime(t)).collect();
        let weighted = entropy * floats(&rates, &device).reshape([batch, 1]);
        let count = batch * seq_len;
        let prior = self.graph.prior_kl(self.schedule.sigma(1.0), self.vocab_size);
        LossSum { sum: weighted.sum().add_scalar(prior * count as f64), count }
    }

    /// The DWDSE bound of `model` on `data` in nats per token: every sequence scored at
    /// `time_samples` times (stratified across the batch, seeded) through the one evaluation
    /// loop ([`evaluate_bound`]).
    ///
    /// # Errors
    /// As [`Sedd::check_data`]; as [`evaluate_bound`] if `batch_size` or `time_samples` is 0.
    pub fn evaluate(
        &self,
        model: &impl ConcreteScore,
        data: &SequenceDataset,
        batch_size: usize,
        time_samples: usize,
        seed: u64,
    ) -> Result<BoundReport, DiscreteError> {
        self.check_data(model, data, "SEDD evaluation")?;
        let batches = EvalBatches { batch_size, max_batches: None, seed };
        let report = evaluate_bound(data, &model.device(), batches, time_samples, |x0, rng| {
            let times = self.time_sampler.sample(x0.dims()[0], rng);
            self.loss_at(model, x0, &times, rng)
        })?;
        Ok(report)
    }

    /// Checks that `model` and `data` fit this chain: the model scores exactly its ids, the data
    /// lies within them and within the model's context, and for the absorbing graph holds no
    /// mask token.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] naming `model vocab_size`, `data vocab_size`, `seq_len` or the
    /// first position of the data holding the mask.
    pub fn check_data(
        &self,
        model: &impl ConcreteScore,
        data: &SequenceDataset,
        context: &'static str,
    ) -> Result<(), DiscreteError> {
        ensure_size(
            model.vocab_size() == self.vocab_size,
            context,
            "model vocab_size",
            model.vocab_size(),
            format!("the chain's vocab_size = {}", self.vocab_size),
        )?;
        ensure_size(
            data.vocab_size() <= self.vocab_size,
            context,
            "data vocab_size",
            data.vocab_size(),
            format!("at most the chain's vocab_size = {}", self.vocab_size),
        )?;
        if let Some(max) = model.max_seq_len() {
            ensure_size(
                data.seq_len() <= max,
                context,
                "seq_len",
                data.seq_len(),
                format!("at most the model's max_seq_len = {max}"),
            )?;
        }
        match self.graph {
            Graph::Absorbing { mask_id } => ensure_absent(data, mask_id, context),
            Graph::Uniform => Ok(()),
        }
    }
}

impl<S: NoiseSchedule + Sync> Objective<Denoiser> for Sedd<S> {
    fn check_data(
        &self,
        model: &Denoiser,
        data: &SequenceDataset,
    ) -> Result<(), dlm_core::CoreError> {
        Ok(Sedd::check_data(self, &self.score_network(model), data, "SEDD objective")?)
    }

    /// The DWDSE per token ([`Sedd::loss_at`] at times from the time sampler), the reference
    /// code's training loss (`losses.py`, summed over positions) with the prior constant added.
    fn loss(&self, model: &Denoiser, batch: Tensor<2, Int>, rng: &mut StdRng) -> LossSum {
        let times = self.time_sampler.sample(batch.dims()[0], rng);
        self.loss_at(&self.score_network(model), batch, &times, rng)
    }
}

#[cfg(test)]
mod tests;
