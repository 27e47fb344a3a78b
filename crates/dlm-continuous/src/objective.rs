//! Diffusion-LM's end-to-end training loss.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm_core::CoreError;
use dlm_core::data::SequenceDataset;
use dlm_core::train::{LossSum, Objective};
use dlm_sched::NoiseSchedule;
use rand::rngs::StdRng;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

use crate::error::{ContinuousError, ensure_size};
use crate::gaussian::forward_sample;
use crate::model::{DiffusionLm, X0Predictor};

/// Diffusion-LM's end-to-end loss (Li et al. 2022, §4.1 and App. F; the reference's
/// `training_losses_e2e`), on a grid of `T` noise levels `t_i = i/T`:
///
/// - `x0 = Emb(w) + σ₀·ε₀`, `σ₀ = √(1 − α(1/T))` — the embedding with the noise of the first level;
/// - `z_t = √α_t·x0 + √(1 − α_t)·ε` at a level `i` drawn uniformly (stratified over the batch);
/// - **regression** `‖x0 − f_θ(z_t, t)‖²`, except at the first level, where the target is
///   `Emb(w)` (the `t = 0` anchor);
/// - **prior** `‖√α(1)·x0‖²`, which pushes `q(z_1 | x0)` to `N(0, I)`;
/// - **rounding** `−log p(w | x0)` through the tied head.
///
/// Squared errors are averaged over the embedding dimension; every term is per token, averaged
/// over the tokens. With DiffuSeq's partial noising (Gong et al. 2023, §3), the first
/// `source_len` positions of every sequence stay clean in `z_t`.
#[derive(Debug, Clone)]
pub struct DiffusionLmLoss<S> {
    schedule: S,
    levels: usize,
    source_len: usize,
}

impl<S: NoiseSchedule> DiffusionLmLoss<S> {
    /// The loss on `levels` noise levels (Diffusion-LM: `T = 2000`).
    ///
    /// # Errors
    /// [`ContinuousError::Invalid`] if `levels < 2`.
    pub fn new(schedule: S, levels: usize) -> Result<Self, ContinuousError> {
        ensure_size(levels >= 2, "Diffusion-LM loss", "levels", levels, "at least 2")?;
        Ok(Self { schedule, levels, source_len: 0 })
    }

    /// DiffuSeq's partial noising: the first `source_len` positions are never noised.
    pub fn with_source_len(self, source_len: usize) -> Self {
        Self { source_len, ..self }
    }

    /// The schedule.
    pub fn schedule(&self) -> &S {
        &self.schedule
    }

    /// The loss at given levels (one per sequence, `1..=T`), with the Gaussian noise drawn from
    /// `rng` (deterministic given it).
    ///
    /// # Panics
    /// If `levels.len()` differs from the batch or a level is outside `1..=T`.
    pub fn loss_at(
        &self,
        model: &DiffusionLm,
        tokens: Tensor<2, Int>,
        levels: &[usize],
        rng: &mut StdRng,
    ) -> LossSum {
        let [batch, seq_len] = tokens.dims();
        assert_eq!(levels.len(), batch, "one level per sequence");
        assert!(levels.iter().all(|&i| (1..=self.levels).contains(&i)), "levels in 1..=T");
        let device = tokens.device();
        let embedded = model.embed(tokens.clone());
        let dim = embedded.dims()[2];
        let first = 1.0 / self.levels as f64;
        let x0 = embedded.clone()
            + normal([batch, seq_len, dim], &device, rng)
                .mul_scalar((1.0 - self.schedule.alpha(first)).sqrt());
        let times: Vec<f64> = levels.iter().map(|&i| i as f64 / self.levels as f64).collect();
        let alphas: Vec<f32> = times.iter().map(|&t| self.schedule.alpha(t) as f32).collect();
        let alpha = Tensor::<1>::from_data(TensorData::new(alphas, [batch]), &device);
        let mut z_t =
            forward_sample(x0.clone(), alpha, normal([batch, seq_len, dim], &device, rng));
        if self.source_len > 0 {
            let keep = source_mask(batch, seq_len, dim, self.source_len, &device);
            z_t = z_t.mask_where(keep, x0.clone());
        }
        let t = Tensor::<1>::from_data(
            TensorData::new(times.iter().map(|&t| t as f32).collect::<Vec<_>>(), [batch]),
            &device,
        );
        let previous = (model.is_self_conditioned() && rng.random::<bool>())
            .then(|| model.predict_x0(z_t.clone(), t.clone(), None).detach());
        let x0_hat = model.predict_x0(z_t, t, previous);
        let at_first_level: Vec<f32> =
            levels.iter().map(|&i| if i == 1 { 1.0 } else { 0.0 }).collect();
        let anchor = Tensor::<1>::from_data(TensorData::new(at_first_level, [batch]), &device)
            .reshape([batch, 1, 1]);
        let target = embedded * anchor.clone() + x0.clone() * anchor.neg().add_scalar(1.0);
        let regression = (target - x0_hat).powi_scalar(2).mean_dim(2).sum();
        let prior =
            x0.clone().mul_scalar(self.schedule.alpha(1.0).sqrt()).powi_scalar(2).mean_dim(2).sum();
        let log_probs = log_softmax(model.rounding_logits(x0), 2);
        let rounding = log_probs.gather(2, tokens.unsqueeze_dim(2)).neg().sum();
        LossSum { sum: regression + prior + rounding, count: batch * seq_len }
    }
}

impl<S: NoiseSchedule> Objective<DiffusionLm> for DiffusionLmLoss<S> {
    fn check_data(&self, model: &DiffusionLm, data: &SequenceDataset) -> Result<(), CoreError> {
        model.check_data(data)
    }

    fn loss(&self, model: &DiffusionLm, batch: Tensor<2, Int>, rng: &mut StdRng) -> LossSum {
        let levels = dlm_sched::stratified_steps(batch.dims()[0], self.levels, rng);
        self.loss_at(model, batch, &levels, rng)
    }
}

/// Standard normal noise from the host `rng`.
pub(crate) fn normal<R: Rng + ?Sized>(
    shape: [usize; 3],
    device: &Device,
    rng: &mut R,
) -> Tensor<3> {
    let values: Vec<f32> =
        (0..shape.iter().product()).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// `true` on the first `source_len` positions, `[batch, seq_len, dim]`.
pub(crate) fn source_mask(
    batch: usize,
    seq_len: usize,
    dim: usize,
    source_len: usize,
    device: &Device,
) -> Tensor<3, burn::tensor::Bool> {
    Tensor::<1, Int>::arange(0..seq_len as i64, device)
        .lower_elem(source_len as i64)
        .reshape([1, seq_len, 1])
        .expand([batch, seq_len, dim])
}
