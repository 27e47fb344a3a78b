//! Tweedie τ-leaping: SEDD's analytic sampler.

use burn::tensor::{Int, Tensor};
use dlm_core::host::floats;
use dlm_core::sampling::TokenSampler;
use dlm_sched::NoiseSchedule;
use rand::Rng;

use super::{ConcreteScore, Graph, Sedd};
use crate::error::{DiscreteError, ensure_size, ensure_value};

/// Probabilities are floored here before their logarithm (as in D3PM's sampler).
const TINY: f64 = 1e-30;

/// Tweedie τ-leaping (Lou et al. 2024, §4.2, Thm 4.2; `AnalyticPredictor` and `Denoiser` in the
/// reference `sampling.py`): from the base (all mask, or uniform ids) at `t = 1`, over the grid
/// `t_k = 1 − k(1 − t_end)/steps`, each position draws independently from
///
/// `p(x_{t−Δt,i} = y | x_t) ∝ [exp(−Δσ Q) s_θ(x_t, t)_i]_y · exp(Δσ Q)(x_{t,i}, y)`,
/// `Δσ = σ(t) − σ(t − Δt)`,
///
/// ([`Graph::staggered_score`] times [`Graph::transposed_transition`]); with the exact score this
/// is the exact reverse step of each token given the others. With noise removal (the reference's
/// default) a last step from `t_end` to 0 uses `Δσ = σ(t_end)` and, on the absorbing graph, never
/// draws the mask. One model call per step; every draw comes from the generator (float64
/// Gumbel-max).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TweedieSampler {
    steps: usize,
    t_end: f64,
    noise_removal: bool,
}

impl TweedieSampler {
    /// `steps` τ-leaping steps to `t_end = 1e-5` and the noise-removal step (the reference's
    /// defaults, `sampling.steps = 128` there).
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] for `steps == 0`.
    pub fn new(steps: usize) -> Result<Self, DiscreteError> {
        ensure_size(steps > 0, "Tweedie sampler", "steps", steps, "at least 1")?;
        Ok(Self { steps, t_end: 1e-5, noise_removal: true })
    }

    /// Stops at `t_end` instead of `1e-5`.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] unless `0 ≤ t_end < 1`.
    pub fn with_t_end(self, t_end: f64) -> Result<Self, DiscreteError> {
        ensure_value((0.0..1.0).contains(&t_end), "Tweedie sampler", "t_end", t_end, "in [0, 1)")?;
        Ok(Self { t_end, ..self })
    }

    /// Leaves out the noise-removal step (masks may then remain on the absorbing graph).
    pub fn without_noise_removal(self) -> Self {
        Self { noise_removal: false, ..self }
    }

    /// Model calls per sample: one per step, and one for noise removal.
    pub fn nfe(&self) -> usize {
        self.steps + usize::from(self.noise_removal)
    }

    /// The distribution of one step from `t` with jump `Δσ`, unnormalised (a row sums to 1 for
    /// the exact score), negative entries of an inexact score clipped to 0.
    ///
    /// # Shapes
    /// - `x_t`: `[batch, seq_len]` → `[batch, seq_len, vocab_size]`
    pub fn step_probabilities(
        graph: Graph,
        model: &impl ConcreteScore,
        x_t: Tensor<2, Int>,
        t: f64,
        delta_sigma: f64,
    ) -> Tensor<3> {
        let batch = x_t.dims()[0];
        let score = model.log_score(x_t.clone(), floats(&vec![t; batch], &model.device())).exp();
        let vocab_size = score.dims()[2];
        let staggered = graph.staggered_score(score, delta_sigma);
        (staggered * graph.transposed_transition(x_t, delta_sigma, vocab_size)).clamp_min(0.0)
    }

    /// Draws `batch` sequences of `seq_len` tokens.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] if `model` does not score the chain's ids, for `batch == 0` or
    /// `seq_len == 0`, or for a `seq_len` beyond the model's context.
    pub fn sample<S: NoiseSchedule, R: Rng + ?Sized>(
        &self,
        sedd: &Sedd<S>,
        model: &impl ConcreteScore,
        batch: usize,
        seq_len: usize,
        rng: &mut R,
    ) -> Result<Tensor<2, Int>, DiscreteError> {
        const CONTEXT: &str = "Tweedie sampler";
        let vocab_size = sedd.vocab_size();
        ensure_size(
            model.vocab_size() == vocab_size,
            CONTEXT,
            "model vocab_size",
            model.vocab_size(),
            format!("the chain's vocab_size = {vocab_size}"),
        )?;
        ensure_size(batch > 0, CONTEXT, "batch", batch, "at least 1")?;
        ensure_size(seq_len > 0, CONTEXT, "seq_len", seq_len, "at least 1")?;
        if let Some(max) = model.max_seq_len() {
            ensure_size(seq_len <= max, CONTEXT, "seq_len", seq_len, format!("at most {max}"))?;
        }
        let (graph, schedule) = (sedd.graph(), sedd.schedule());
        let draw = TokenSampler::new(1.0)?;
        let mut x = graph.sample_base(batch, seq_len, vocab_size, &model.device(), rng);
        let dt = (1.0 - self.t_end) / self.steps as f64;
        for k in 0..self.steps {
            let t = 1.0 - k as f64 * dt;
            let delta_sigma = schedule.sigma(t) - schedule.sigma(t - dt);
            let probs = Self::step_probabilities(graph, model, x, t, delta_sigma);
            x = draw.sample_with_rng(probs.clamp_min(TINY).log(), rng);
        }
        if self.noise_removal {
            let mut probs =
                Self::step_probabilities(graph, model, x, self.t_end, schedule.sigma(self.t_end));
            if let Graph::Absorbing { mask_id } = graph {
                let is_mask = Tensor::<1, Int>::arange(0..vocab_size as i64, &probs.device())
                    .equal_elem(mask_id as i64)
                    .reshape([1, 1, vocab_size])
                    .expand(probs.dims());
                probs = probs.mask_fill(is_mask, 0.0);
            }
            x = draw.sample_with_rng(probs.clamp_min(TINY).log(), rng);
        }
        Ok(x)
    }
}
