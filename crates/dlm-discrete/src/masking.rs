//! The masking (absorbing-state) forward process of masked diffusion.

use burn::tensor::{Bool, Int, Tensor, TensorData};
use dlm_core::backbone::{Denoiser, MAX_SEQ_LEN, check_fits};
use dlm_core::data::SequenceDataset;
use dlm_sched::{InvalidInput, NoiseSchedule};
use rand::{Rng, RngExt};

use crate::denoiser::{MaskedDenoiser, Subs};
use crate::error::{DiscreteError, ensure_size};
use crate::spindle::Spindle;

/// `Ok` if no position of `data` holds `mask_id`.
///
/// # Errors
/// [`DiscreteError::Invalid`] naming the first flat position (`sequence · seq_len + i`) that
/// does.
pub(crate) fn ensure_absent(
    data: &SequenceDataset,
    mask_id: u32,
    context: &'static str,
) -> Result<(), DiscreteError> {
    match data.position_of(mask_id) {
        None => Ok(()),
        Some(position) => Err(DiscreteError::Invalid(InvalidInput::size_element(
            context,
            "data tokens",
            position,
            mask_id as usize,
            "no mask token in clean data (the mask marks noise)",
        ))),
    }
}

/// A sequence after masking.
#[derive(Debug, Clone)]
pub struct Masked {
    /// `z_t`: the tokens with masked positions set to the mask id, `[batch, seq_len]`.
    pub z_t: Tensor<2, Int>,
    /// Which positions were masked, `[batch, seq_len]`.
    pub is_masked: Tensor<2, Bool>,
}

/// The forward process of masked diffusion: every token independently stays with probability
/// `α(t)` and becomes the mask token otherwise, `q(z_t | x0) = Cat(α_t x0 + (1 − α_t) m)`
/// (MDLM, Sahoo et al. 2024, §3.2; D3PM's absorbing state, Austin et al. 2021, App. A.2.2).
///
/// Positions marked `keep` are never masked: a prompt kept clean (LLaDA's SFT), or the fixed
/// positions of an infilling task. With a [`Spindle`], the keep probability depends on the token
/// (DiffusionBERT).
#[derive(Debug, Clone)]
pub struct MaskingProcess<S> {
    schedule: S,
    mask_id: u32,
    spindle: Option<Spindle>,
}

impl<S: NoiseSchedule> MaskingProcess<S> {
    /// The process with schedule `schedule` and mask token `mask_id`.
    pub fn new(schedule: S, mask_id: u32) -> Self {
        Self { schedule, mask_id, spindle: None }
    }

    /// Token-dependent keep probabilities (DiffusionBERT's spindle schedule).
    ///
    /// # Errors
    /// As [`Spindle::check_schedule`]: a spindle whose `λ` would make some `α_i` increase under
    /// this process's schedule.
    pub fn with_spindle(self, spindle: Spindle) -> Result<Self, DiscreteError> {
        spindle.check_schedule(&self.schedule)?;
        Ok(Self { spindle: Some(spindle), ..self })
    }

    /// Checks that `data` can be noised by this process and scored by `model`: sequences within
    /// the model's context, the data's vocabulary and the mask id among the ids the model reads,
    /// the mask id the one of the tokenizer that produced the data (when it is known,
    /// [`SequenceDataset::special`]), and no mask token inside the data (the objective scores the positions it masked; a mask
    /// token already there would read as noise and never be scored).
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] naming `seq_len`, `vocab_size`, `mask_id` or the first
    /// position of the data that holds the mask.
    pub fn check_data(
        &self,
        model: &impl MaskedDenoiser,
        data: &SequenceDataset,
        context: &'static str,
    ) -> Result<(), DiscreteError> {
        let vocab_size = model.vocab_size();
        check_fits(data, model.max_seq_len().unwrap_or(MAX_SEQ_LEN), Some(vocab_size))?;
        ensure_size(
            (self.mask_id as usize) < vocab_size,
            context,
            "mask_id",
            self.mask_id as usize,
            format!("an id the model reads, below its vocab_size = {vocab_size}"),
        )?;
        if let Some(special) = data.special() {
            ensure_size(
                special.mask == self.mask_id,
                context,
                "mask_id",
                self.mask_id as usize,
                format!("the mask id of the data's tokenizer, {}", special.mask),
            )?;
        }
        ensure_absent(data, self.mask_id, context)
    }

    /// The mask probability of every token, `1 − α_i(t)`.
    ///
    /// # Shapes
    /// - `x0`: `[batch, seq_len]`, `t`: `[batch]` → `[batch, seq_len]`
    pub fn mask_rates(&self, x0: Tensor<2, Int>, t: Tensor<1>) -> Tensor<2> {
        let [batch, seq_len] = x0.dims();
        match &self.spindle {
            None => {
                self.schedule.one_minus_alpha_tensor(t).reshape([batch, 1]).expand([batch, seq_len])
            }
            Some(spindle) => spindle.token_alphas(&self.schedule, x0, t).0.neg().add_scalar(1.0),
        }
    }

    /// The NELBO weight of every token, `w_i(t) = −α_i′(t)/(1 − α_i(t))` (the schedule's careful
    /// closed form without a spindle).
    ///
    /// # Shapes
    /// - `x0`: `[batch, seq_len]`, `t`: `[batch]` → `[batch, seq_len]`
    pub fn elbo_weights(&self, x0: Tensor<2, Int>, t: Tensor<1>) -> Tensor<2> {
        let [batch, seq_len] = x0.dims();
        match &self.spindle {
            None => self
                .schedule
                .masked_elbo_weight_tensor(t)
                .reshape([batch, 1])
                .expand([batch, seq_len]),
            Some(spindle) => {
                let (alpha, alpha_prime) = spindle.token_alphas(&self.schedule, x0, t);
                alpha_prime.neg()
                    / alpha.neg().add_scalar(1.0).clamp_min(f64::from(f32::MIN_POSITIVE))
            }
        }
    }

    /// The noise schedule.
    pub fn schedule(&self) -> &S {
        &self.schedule
    }

    /// The mask token.
    pub fn mask_id(&self) -> u32 {
        self.mask_id
    }

    /// Whether the keep probabilities depend on the token (a [`Spindle`]).
    pub fn has_spindle(&self) -> bool {
        self.spindle.is_some()
    }

    /// `model` read through SUBS with this process's mask token: the denoiser to evaluate and
    /// sample a model trained on this process with, so that the mask the samplers look for is
    /// the one training masked with.
    pub fn denoiser<'a>(&self, model: &'a Denoiser) -> Subs<'a> {
        Subs { model, mask_id: self.mask_id }
    }

    /// Masks position `(b, i)` iff `uniforms[b, i] < 1 − α(t_b)` and it is not kept
    /// (deterministic core).
    ///
    /// # Shapes
    /// - `x0`, `uniforms`, `keep`: `[batch, seq_len]`, `t`: `[batch]`
    pub fn mask_with_uniforms(
        &self,
        x0: Tensor<2, Int>,
        t: Tensor<1>,
        uniforms: Tensor<2>,
        keep: Option<Tensor<2, Bool>>,
    ) -> Masked {
        let rates = self.mask_rates(x0.clone(), t);
        self.mask_at_rates_with_uniforms(x0, rates, uniforms, keep)
    }

    /// The masking step itself, at given per-token mask rates: position `(b, i)` is masked iff
    /// `uniforms[b, i] < rates[b, i]` and it is not kept (deterministic core). Every masking of
    /// the library goes through it: MDLM's rates `1 − α(t_b)` per sequence, BD3LM's
    /// `1 − α(t_{b,block(i)})` per block.
    ///
    /// # Shapes
    /// - `x0`, `rates`, `uniforms`, `keep`: `[batch, seq_len]`
    pub fn mask_at_rates_with_uniforms(
        &self,
        x0: Tensor<2, Int>,
        rates: Tensor<2>,
        uniforms: Tensor<2>,
        keep: Option<Tensor<2, Bool>>,
    ) -> Masked {
        let mut is_masked = uniforms.lower(rates);
        if let Some(keep) = keep {
            is_masked = is_masked.bool_and(keep.bool_not());
        }
        Masked { z_t: x0.mask_fill(is_masked.clone(), self.mask_id as i64), is_masked }
    }

    /// Masks `x0` at per-token mask rates with uniforms drawn from `rng` on the host.
    ///
    /// # Shapes
    /// As [`MaskingProcess::mask_at_rates_with_uniforms`].
    pub fn mask_at_rates<R: Rng + ?Sized>(
        &self,
        x0: Tensor<2, Int>,
        rates: Tensor<2>,
        keep: Option<Tensor<2, Bool>>,
        rng: &mut R,
    ) -> Masked {
        let uniforms = host_uniforms(x0.dims(), &x0.device(), rng);
        self.mask_at_rates_with_uniforms(x0, rates, uniforms, keep)
    }

    /// Masks `x0` at times `t` with uniforms drawn from `rng` on the host (so the draw is the same
    /// on every backend and is reproduced by a resumed run).
    ///
    /// # Shapes
    /// As [`MaskingProcess::mask_with_uniforms`].
    pub fn mask<R: Rng + ?Sized>(
        &self,
        x0: Tensor<2, Int>,
        t: Tensor<1>,
        keep: Option<Tensor<2, Bool>>,
        rng: &mut R,
    ) -> Masked {
        let uniforms = host_uniforms(x0.dims(), &x0.device(), rng);
        self.mask_with_uniforms(x0, t, uniforms, keep)
    }
}

/// A `shape` tensor of uniforms in `[0, 1)` drawn from `rng` on the host, row-major, as `f32`
/// (the same draws on every backend).
fn host_uniforms<R: Rng + ?Sized>(
    shape: [usize; 2],
    device: &burn::tensor::Device,
    rng: &mut R,
) -> Tensor<2> {
    let values: Vec<f32> = (0..shape[0] * shape[1]).map(|_| rng.random::<f32>()).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use dlm_sched::{Cosine, LogLinear};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use dlm_core::host::floats;

    #[test]
    fn masking_rate_matches_one_minus_alpha() {
        let device = Device::flex();
        let (batch, seq_len) = (4, 25_000);
        let x0 = Tensor::<2, Int>::ones([batch, seq_len], &device).mul_scalar(7);
        let times = [0.1, 0.35, 0.6, 0.95];
        let t = floats(&times, &device);
        let mut rng = StdRng::seed_from_u64(0);
        for schedule in
            [Box::new(LogLinear::default()) as Box<dyn NoiseSchedule>, Box::new(Cosine::default())]
        {
            let process = MaskingProcess::new(schedule.as_ref(), 3);
            let masked = process.mask(x0.clone(), t.clone(), None, &mut rng);
            let rates: Vec<f64> =
                masked.is_masked.int().float().mean_dim(1).into_data().iter::<f64>().collect();
            for (rate, &time) in rates.iter().zip(&times) {
                let p = schedule.one_minus_alpha(time);
                // Four binomial standard deviations.
                let tolerance = 4.0 * (p * (1.0 - p) / seq_len as f64).sqrt();
                assert!((rate - p).abs() < tolerance, "t = {time}: {rate} vs {p}");
            }
            // Masked positions hold the mask id, the others x0.
            let z: Vec<i64> = masked.z_t.into_data().iter::<i64>().collect();
            assert!(z.iter().all(|&v| v == 3 || v == 7));
        }
    }

    #[test]
    fn kept_positions_are_never_masked() {
        let device = Device::flex();
        let x0 = Tensor::<2, Int>::ones([2, 6], &device).mul_scalar(5);
        let keep = Tensor::<2, Int>::from_ints([[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1]], &device)
            .equal_elem(1);
        let t = floats(&[1.0, 1.0], &device);
        let masked = MaskingProcess::new(dlm_sched::Polynomial::new(1.0).unwrap(), 3).mask(
            x0,
            t,
            Some(keep),
            &mut StdRng::seed_from_u64(1),
        );
        let z: Vec<i64> = masked.z_t.into_data().iter::<i64>().collect();
        // At t = 1 with α = 1 − t everything else is masked.
        assert_eq!(z, vec![5, 5, 3, 3, 3, 3, 5, 3, 3, 3, 3, 5]);
    }
}
