//! D3PM (Austin et al. 2021): discrete-time diffusion with uniform or absorbing transition
//! matrices, the x0-parameterised reverse process, the hybrid loss and ancestral sampling.
//!
//! Row-vector convention: `[Q_t]_{jk} = q(x_t = k | x_{t−1} = j)`. No `V × V` matrix is ever
//! built: both families have closed forms (App. A.2, A.4),
//!
//! - uniform: `Q_t = (1 − β_t) I + β_t 11ᵀ/V`, `Q̄_t = ᾱ_t I + (1 − ᾱ_t) 11ᵀ/V`;
//! - absorbing: `Q_t = (1 − β_t) I + β_t 1 e_mᵀ`, `Q̄_t = ᾱ_t I + (1 − ᾱ_t) 1 e_mᵀ`;
//!
//! with `ᾱ_i = Π_{j≤i}(1 − β_j)` from a [`DiscreteSchedule`] (step `i` at `t = i/T`).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use dlm_core::backbone::{Denoiser, DenoiserInput};
use dlm_core::data::SequenceDataset;
use dlm_core::eval::{BoundReport, EvalBatches, evaluate_bound};
use dlm_core::host::{floats, int_values};
use dlm_core::sampling::TokenSampler;
use dlm_core::train::{LossSum, Objective};
use dlm_sched::DiscreteSchedule;
use rand::rngs::StdRng;
use rand::{Rng, RngExt};

use crate::denoiser::NEG_INFINITY;
use crate::error::{DiscreteError, ensure_size, ensure_value};
use crate::masking::ensure_absent;

/// Floor of probabilities before a logarithm.
const TINY: f64 = 1e-30;

/// The family of transition matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Noise to a uniformly random token.
    Uniform,
    /// Noise to the absorbing mask token.
    Absorbing {
        /// The mask token.
        mask_id: u32,
    },
}

/// A D3PM with `T` steps over a vocabulary of `V` tokens.
#[derive(Debug, Clone)]
pub struct D3pm {
    transition: Transition,
    schedule: DiscreteSchedule,
    vocab_size: usize,
    hybrid_lambda: f64,
}

impl D3pm {
    /// A D3PM with the hybrid loss weight `λ` (D3PM eq. 5; `λ = 0.01` for absorbing text,
    /// `0` for the pure variational bound).
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] for `V < 2` or a mask id outside the vocabulary;
    /// [`DiscreteError::Invalid`] for a negative or non-finite `λ`.
    pub fn new(
        transition: Transition,
        schedule: DiscreteSchedule,
        vocab_size: usize,
        hybrid_lambda: f64,
    ) -> Result<Self, DiscreteError> {
        ensure_size(vocab_size >= 2, "D3PM", "vocab_size", vocab_size, "at least 2")?;
        if let Transition::Absorbing { mask_id } = transition {
            ensure_size(
                (mask_id as usize) < vocab_size,
                "D3PM",
                "mask_id",
                mask_id as usize,
                format!("below vocab_size = {vocab_size}"),
            )?;
        }
        ensure_value(
            hybrid_lambda >= 0.0 && hybrid_lambda.is_finite(),
            "D3PM",
            "hybrid_lambda",
            hybrid_lambda,
            "a finite value >= 0",
        )?;
        Ok(Self { transition, schedule, vocab_size, hybrid_lambda })
    }

    /// Number of steps `T`.
    pub fn steps(&self) -> usize {
        self.schedule.steps()
    }

    /// `ᾱ_i`.
    fn alpha_bar(&self, step: usize) -> f64 {
        self.schedule.grid_alphas()[step]
    }

    /// `β_i = 1 − ᾱ_i/ᾱ_{i−1}` (1 where `ᾱ_{i−1} = 0`).
    fn beta(&self, step: usize) -> f64 {
        let previous = self.alpha_bar(step - 1);
        if previous > 0.0 { 1.0 - self.alpha_bar(step) / previous } else { 1.0 }
    }

    /// `x_t Q_tᵀ`: entry `k` is `q(x_t | x_{t−1} = k)`, one factor of every posterior.
    ///
    /// # Shapes
    /// - `x_t`: `[batch, seq_len]`, `beta`: `[batch]` → `[batch, seq_len, vocab_size]`
    fn likelihood_of_x_t(&self, x_t: Tensor<2, Int>, beta: Tensor<1>) -> Tensor<3> {
        let batch = x_t.dims()[0];
        let beta = beta.reshape([batch, 1, 1]);
        let one_hot = x_t.clone().one_hot::<3>(self.vocab_size).float();
        let keep = one_hot * beta.clone().neg().add_scalar(1.0);
        match self.transition {
            Transition::Uniform => keep + beta.div_scalar(self.vocab_size as f64),
            Transition::Absorbing { mask_id } => {
                let is_mask = x_t.equal_elem(mask_id as i64).float().unsqueeze_dim::<3>(2);
                keep + is_mask * beta
            }
        }
    }

    /// `p Q̄`: the distribution of `x_t` when `x0 ~ p`, for `ᾱ` per row.
    ///
    /// # Shapes
    /// - `probs`: `[batch, seq_len, vocab_size]`, `alpha_bar`: `[batch]` → same as `probs`
    fn marginal(&self, probs: Tensor<3>, alpha_bar: Tensor<1>) -> Tensor<3> {
        let [batch, seq_len, vocab_size] = probs.dims();
        let alpha_bar = alpha_bar.reshape([batch, 1, 1]);
        let noise = alpha_bar.clone().neg().add_scalar(1.0);
        let kept = probs * alpha_bar;
        match self.transition {
            Transition::Uniform => kept + noise.div_scalar(vocab_size as f64),
            Transition::Absorbing { mask_id } => {
                let e_m = Tensor::<1, Int>::arange(0..vocab_size as i64, &kept.device())
                    .equal_elem(mask_id as i64)
                    .float()
                    .reshape([1, 1, vocab_size]);
                kept + noise * e_m.expand([batch, seq_len, vocab_size])
            }
        }
    }

    /// The reverse-step distribution `∝ (x_t Q_tᵀ) ⊙ (p Q̄_{t−1})`, normalised over the token:
    /// the posterior `q(x_{t−1} | x_t, x0)` for `p = onehot(x0)` (D3PM eq. 3) and the
    /// x0-parameterised `p_θ(x_{t−1} | x_t)` for `p = p̃_θ(x0 | x_t)` (eq. 4). Returns its log.
    ///
    /// # Shapes
    /// - `x_t`: `[batch, seq_len]`, `probs`: `[batch, seq_len, vocab_size]`, `steps`: one per row
    pub fn reverse_log_probs(
        &self,
        x_t: Tensor<2, Int>,
        probs: Tensor<3>,
        steps: &[usize],
    ) -> Tensor<3> {
        let device = probs.device();
        let betas: Vec<f64> = steps.iter().map(|&i| self.beta(i)).collect();
        let previous: Vec<f64> = steps.iter().map(|&i| self.alpha_bar(i - 1)).collect();
        let unnormalised = self.likelihood_of_x_t(x_t, floats(&betas, &device))
            * self.marginal(probs, floats(&previous, &device));
        let log = unnormalised.clamp_min(TINY).log();
        log.clone() - log.exp().sum_dim(2).log()
    }

    /// Samples `x_t ~ q(x_t | x0)` at step `i` per row, with host uniforms (two per token).
    fn noise<R: Rng + ?Sized>(
        &self,
        x0: Tensor<2, Int>,
        steps: &[usize],
        rng: &mut R,
    ) -> Tensor<2, Int> {
        let [batch, seq_len] = x0.dims();
        let x0_host: Vec<i64> = int_values(x0.clone());
        let noisy: Vec<i64> = (0..batch * seq_len)
            .map(|i| {
                if rng.random::<f64>() < self.alpha_bar(steps[i / seq_len]) {
                    return x0_host[i];
                }
                match self.transition {
                    Transition::Uniform => rng.random_range(0..self.vocab_size as i64),
                    Transition::Absorbing { mask_id } => i64::from(mask_id),
                }
            })
            .collect();
        Tensor::from_data(TensorData::new(noisy, [batch, seq_len]), &x0.device())
    }

    /// `p̃_θ(x0 | x_t)`: the network's softmax, with the mask token excluded for absorbing
    /// D3PMs.
    fn x0_log_probs(&self, model: &Denoiser, x_t: Tensor<2, Int>, steps: &[usize]) -> Tensor<3> {
        let t: Vec<f64> = steps.iter().map(|&i| i as f64 / self.steps() as f64).collect();
        let logits =
            model.forward(DenoiserInput::tokens(x_t).with_time(floats(&t, &model.device()))).output;
        let logits = match self.transition {
            Transition::Uniform => logits,
            Transition::Absorbing { mask_id } => {
                let [batch, seq_len, vocab_size] = logits.dims();
                let is_mask = Tensor::<1, Int>::arange(0..vocab_size as i64, &logits.device())
                    .equal_elem(mask_id as i64)
                    .reshape([1, 1, vocab_size])
                    .expand([batch, seq_len, vocab_size]);
                logits.mask_fill(is_mask, NEG_INFINITY)
            }
        };
        log_softmax(logits, 2)
    }

    /// The variational terms of one batch at one step per row, summed: `KL(q(x_{t−1} | x_t, x0)
    /// ‖ p_θ(x_{t−1} | x_t))` (for `t = 1` this is `−log p_θ(x0 | x_1)`), and the cross-entropy
    /// `−log p̃_θ(x0 | x_t)` of the hybrid loss.
    fn terms(
        &self,
        model: &Denoiser,
        x0: Tensor<2, Int>,
        steps: &[usize],
        rng: &mut StdRng,
    ) -> (Tensor<1>, Tensor<1>) {
        let x_t = self.noise(x0.clone(), steps, rng);
        let x0_log_probs = self.x0_log_probs(model, x_t.clone(), steps);
        let cross_entropy = x0_log_probs.clone().gather(2, x0.clone().unsqueeze_dim(2)).neg().sum();
        let truth = x0.one_hot::<3>(self.vocab_size).float();
        let log_q = self.reverse_log_probs(x_t.clone(), truth, steps);
        let log_p = self.reverse_log_probs(x_t, x0_log_probs.exp(), steps);
        let q = log_q.clone().exp();
        let kl = (q * (log_q - log_p)).sum();
        (kl, cross_entropy)
    }

    /// `KL(q(x_T | x0) ‖ prior)` summed over a batch (the prior: uniform, or all mask): the
    /// `L_T` term, 0 when `ᾱ_T = 0`.
    fn prior_term(&self, x0: Tensor<2, Int>) -> Tensor<1> {
        let [batch, seq_len] = x0.dims();
        let device = x0.device();
        let alpha_t = floats(&vec![self.alpha_bar(self.steps()); batch], &device);
        let q = self.marginal(x0.one_hot::<3>(self.vocab_size).float(), alpha_t);
        let prior = self.marginal(
            Tensor::zeros([batch, seq_len, self.vocab_size], &device),
            floats(&vec![0.0; batch], &device),
        );
        (q.clone() * (q.clamp_min(TINY).log() - prior.clamp_min(TINY).log())).sum()
    }

    /// An unbiased estimate of the negative ELBO `L_T + Σ_{t=1}^T L_{t−1}` summed over the
    /// batch: one step per row drawn stratified from `{1, …, T}`, its term scaled by `T`.
    pub fn nelbo_sum(&self, model: &Denoiser, x0: Tensor<2, Int>, rng: &mut StdRng) -> LossSum {
        let [batch, seq_len] = x0.dims();
        let steps = dlm_sched::stratified_steps(batch, self.steps(), rng);
        let (kl, _) = self.terms(model, x0.clone(), &steps, rng);
        LossSum {
            sum: kl.mul_scalar(self.steps() as f64) + self.prior_term(x0),
            count: batch * seq_len,
        }
    }

    /// The NELBO of `model` on `data` in nats per token: [`D3pm::nelbo_sum`] with
    /// `time_samples` stratified step draws per sequence, through the one evaluation loop
    /// ([`evaluate_bound`]: ordered batches, one seeded generator, `f64` sums).
    ///
    /// # Errors
    /// As [`evaluate_bound`] if `batch_size` or `time_samples` is 0; as
    /// [`D3pm::check_data`].
    pub fn evaluate(
        &self,
        model: &Denoiser,
        data: &SequenceDataset,
        batch_size: usize,
        time_samples: usize,
        seed: u64,
    ) -> Result<BoundReport, DiscreteError> {
        self.check_data(model, data, "D3PM evaluation")?;
        let batches = EvalBatches { batch_size, max_batches: None, seed };
        let device = model.device();
        let report = evaluate_bound(data, &device, batches, time_samples, |x0, rng| {
            self.nelbo_sum(model, x0, rng)
        })?;
        Ok(report)
    }

    /// Checks that `model` and `data` fit this D3PM: both over its vocabulary (the transition
    /// matrices are `V × V`), sequences within the model's context, and for absorbing noise no
    /// mask token inside the data.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] naming `vocab_size`, `seq_len` or the first position holding
    /// the mask.
    pub fn check_data(
        &self,
        model: &Denoiser,
        data: &SequenceDataset,
        context: &'static str,
    ) -> Result<(), DiscreteError> {
        for (name, vocab_size) in [
            ("data vocab_size", data.vocab_size()),
            ("model vocab_size", model.vocab_size().unwrap_or(0)),
        ] {
            ensure_size(
                vocab_size == self.vocab_size,
                context,
                name,
                vocab_size,
                format!("the D3PM's vocab_size = {}", self.vocab_size),
            )?;
        }
        model.check_data(data)?;
        match self.transition {
            Transition::Absorbing { mask_id } => ensure_absent(data, mask_id, context),
            Transition::Uniform => Ok(()),
        }
    }

    /// Ancestral sampling: from the prior (all mask, or uniform tokens), `x_{t−1} ~ p_θ(· | x_t)`
    /// for `t = T, …, 1`, with float64 Gumbel-max proposals from `proposal`'s temperature. One
    /// model call per step; every draw comes from `rng`.
    pub fn sample<R: Rng + ?Sized>(
        &self,
        model: &Denoiser,
        batch: usize,
        seq_len: usize,
        proposal: &TokenSampler,
        rng: &mut R,
    ) -> Tensor<2, Int> {
        let device = model.device();
        let prior: Vec<i64> = (0..batch * seq_len)
            .map(|_| match self.transition {
                Transition::Uniform => rng.random_range(0..self.vocab_size as i64),
                Transition::Absorbing { mask_id } => i64::from(mask_id),
            })
            .collect();
        let mut x_t =
            Tensor::<2, Int>::from_data(TensorData::new(prior, [batch, seq_len]), &device);
        for step in (1..=self.steps()).rev() {
            let steps = vec![step; batch];
            let x0_probs = self.x0_log_probs(model, x_t.clone(), &steps).exp();
            let log_p = self.reverse_log_probs(x_t, x0_probs, &steps);
            x_t = proposal.sample_with_rng(log_p, rng);
        }
        x_t
    }
}

impl Objective<Denoiser> for D3pm {
    fn check_data(
        &self,
        model: &Denoiser,
        data: &SequenceDataset,
    ) -> Result<(), dlm_core::CoreError> {
        Ok(D3pm::check_data(self, model, data, "D3PM objective")?)
    }

    /// D3PM's hybrid loss `L_vb + λ·E[−log p̃_θ(x0 | x_t)]` (eq. 5), per token, with both terms
    /// taken per sampled step as in the reference code (`vb + λ·ce` at one `t`): the unbiased
    /// `L_vb` estimate scales the step's KL by `T`, so the cross-entropy is scaled by `λ·T` too,
    /// keeping `λ` the ratio the paper tuned (`0.01` for absorbing text).
    fn loss(&self, model: &Denoiser, batch: Tensor<2, Int>, rng: &mut StdRng) -> LossSum {
        let [b, seq_len] = batch.dims();
        let steps = dlm_sched::stratified_steps(b, self.steps(), rng);
        let (kl, cross_entropy) = self.terms(model, batch.clone(), &steps, rng);
        let per_step = kl + cross_entropy.mul_scalar(self.hybrid_lambda);
        let sum = per_step.mul_scalar(self.steps() as f64) + self.prior_term(batch);
        LossSum { sum, count: b * seq_len }
    }
}

/// The mutual-information schedule of D3PM (App. A.7): `ᾱ_i` such that
/// `i/T = 1 − I(x_i; x0)/H(x0)` for data with token frequencies `frequencies`, solved by
/// bisection on `ᾱ` (the information is increasing in `ᾱ`). For absorbing transitions
/// `I = ᾱ·H(x0)`, so `ᾱ_i = 1 − i/T`, i.e. `β_i = 1/(T − i + 1)`; for uniform ones it depends on
/// the frequencies.
///
/// # Errors
/// [`DiscreteError::Invalid`] for `steps == 0` or frequencies that are not a distribution
/// with positive entropy.
pub fn mutual_information_schedule(
    transition: Transition,
    frequencies: &[f64],
    steps: usize,
) -> Result<DiscreteSchedule, DiscreteError> {
    dlm_sched::ensure_steps("MI schedule", "steps", steps)?;
    let total: f64 = frequencies.iter().sum();
    let p: Vec<f64> = frequencies.iter().map(|f| f / total).collect();
    let entropy: f64 = p.iter().filter(|&&q| q > 0.0).map(|&q| -q * q.ln()).sum();
    ensure_size(
        frequencies.iter().all(|f| *f >= 0.0 && f.is_finite()) && entropy > 0.0,
        "MI schedule",
        "frequencies.len()",
        frequencies.len(),
        "non-negative counts of at least two tokens",
    )?;
    let information = |alpha: f64| -> f64 {
        match transition {
            Transition::Absorbing { .. } => alpha * entropy,
            Transition::Uniform => {
                let v = p.len() as f64;
                let noise = (1.0 - alpha) / v;
                let marginal: Vec<f64> = p.iter().map(|&q| alpha * q + noise).collect();
                p.iter()
                    .enumerate()
                    .filter(|(_, q)| **q > 0.0)
                    .map(|(i, &q)| {
                        // Σ_j p(j|i) ln(p(j|i)/p(j)): j = i gets α + noise, others noise.
                        let same = alpha + noise;
                        let others: f64 = marginal
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .map(|(_, &m)| if noise > 0.0 { noise * (noise / m).ln() } else { 0.0 })
                            .sum();
                        q * (same * (same / marginal[i]).ln() + others)
                    })
                    .sum()
            }
        }
    };
    let mut alpha_bars = vec![1.0];
    for i in 1..=steps {
        let target = (1.0 - i as f64 / steps as f64) * entropy;
        let (mut lo, mut hi) = (0.0, 1.0);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if information(mid) < target { lo = mid } else { hi = mid }
        }
        alpha_bars.push(if i == steps { 0.0 } else { 0.5 * (lo + hi) });
    }
    let betas = alpha_bars
        .windows(2)
        .map(|w| if w[0] > 0.0 { (1.0 - w[1] / w[0]).clamp(0.0, 1.0) } else { 1.0 })
        .collect();
    Ok(DiscreteSchedule::from_betas(betas)?)
}

#[cfg(test)]
mod tests;
