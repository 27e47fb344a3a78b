//! MDLM: the continuous-time masked-diffusion objective and its likelihood bound.

use burn::tensor::{Bool, Int, Tensor};
use dlm_core::backbone::Denoiser;
use dlm_core::data::SequenceDataset;
use dlm_core::eval::{BoundReport, EvalBatches, evaluate_bound};
use dlm_core::host::floats;
use dlm_core::train::{LossSum, Objective};
use dlm_sched::{NoiseSchedule, TimeSampler};
use rand::rngs::StdRng;

use crate::denoiser::{MaskedDenoiser, Subs, masked_rows};
use crate::error::{DiscreteError, ensure_size, ensure_value};
use crate::masking::{Masked, MaskingProcess};
use dlm_sched::InvalidInput;

/// Which positions of a training sequence are never masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditioning {
    /// Every position may be masked (pre-training).
    None,
    /// The first `length` positions are a prompt kept clean; only the response is masked and
    /// the loss is normalised by the response length (LLaDA's SFT, Nie et al. 2025, §2.3).
    Prompt {
        /// Prompt length.
        length: usize,
    },
}

/// MDLM's objective (Sahoo et al. 2024, §3.4, eq. 10): with `t` drawn per sequence from a
/// [`TimeSampler`] on `[ε, 1]` (stratified by default) and `z_t` from the [`MaskingProcess`],
///
/// `L = E_t [ w(t) · Σ_{i masked} −log p_θ(x0_i | z_t) ]`, `w(t) = −α′(t)/(1 − α(t))`,
///
/// averaged over the tokens (the scored ones, with a prompt). Under SUBS the unmasked positions
/// contribute nothing. It is an upper bound on `−log p(x0)` per token (dropping `[0, ε]`).
#[derive(Clone)]
pub struct Mdlm<S> {
    process: MaskingProcess<S>,
    time_sampler: TimeSampler,
    conditioning: Conditioning,
    complementary: bool,
}

/// A checkpoint names its run by this text ([`dlm_core::train::Trainer::resume_or_new`] refuses
/// another run's): complementary masking appears only when it is on, so that checkpoints of runs
/// from before it existed still resume.
impl<S: std::fmt::Debug> std::fmt::Debug for Mdlm<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Mdlm");
        out.field("process", &self.process)
            .field("time_sampler", &self.time_sampler)
            .field("conditioning", &self.conditioning);
        if self.complementary {
            out.field("complementary", &true);
        }
        out.finish()
    }
}

impl<S: NoiseSchedule> Mdlm<S> {
    /// MDLM with the stratified ("antithetic") time sampler on `[t_min, 1]`, MDLM's default
    /// `t_min = 1e-3`.
    ///
    /// # Errors
    /// [`DiscreteError::Schedule`] unless `0 ≤ t_min ≤ 1`.
    pub fn new(process: MaskingProcess<S>, t_min: f64) -> Result<Self, DiscreteError> {
        Ok(Self {
            process,
            time_sampler: TimeSampler::antithetic(t_min)?,
            conditioning: Conditioning::None,
            complementary: false,
        })
    }

    /// Complementary masking (LaViDa, Li et al. 2025, arXiv 2505.16839, §3.2; methods_2 §C6):
    /// each training sequence is scored twice per step, masked with `M` at its time `t` and with
    /// the complement of `M` (the positions `M` leaves clean, a prompt still kept), so that every
    /// scored token takes part in the loss once per step instead of a fraction `1 − α(t)` of
    /// them. Position by position the complement of a mask at rate `1 − α(t)` is a mask at rate
    /// `α(t)`, drawn independently per position: exactly the forward process at the time `t′`
    /// with `1 − α(t′) = α(t)` ([`NoiseSchedule::time_of_alpha`]; `t′ = 1 − t` for MDLM's
    /// log-linear schedule as `ε → 0`), which a time-conditioned model is given. As `t` runs
    /// uniformly, `t′` does not (unless `α` is linear): the NELBO `∫ w(s) E[·](s) ds` read at
    /// `s = t′(t)` carries the Jacobian, `w(t′)·|dt′/dt| = −α′(t)/α(t) = σ′(t)`, the weight of the
    /// second copy (from `−α′(t′) dt′ = α′(t) dt`). Each copy is then an unbiased estimate of the
    /// same NELBO, their mean a lower-variance one (an antithetic pair). LaViDa itself drops the
    /// weights (its SFT loss is a plain token mean); this keeps the bound. Only the training loss
    /// changes: [`Mdlm::evaluate`] and [`Mdlm::integrand_at`] score one mask per time.
    ///
    /// # Errors
    /// [`DiscreteError::Unsupported`] for a process with a [`crate::Spindle`]: with
    /// token-dependent rates the complement is not the process at any one time.
    pub fn with_complementary_masking(self) -> Result<Self, DiscreteError> {
        if self.process.has_spindle() {
            return Err(DiscreteError::Unsupported {
                what: "complementary masking with a spindle (token-dependent mask rates)",
            });
        }
        Ok(Self { complementary: true, ..self })
    }

    /// Uses another time sampler (e.g. BD3LM's clipped one).
    pub fn with_time_sampler(self, time_sampler: TimeSampler) -> Self {
        Self { time_sampler, ..self }
    }

    /// Keeps a prompt clean.
    pub fn with_conditioning(self, conditioning: Conditioning) -> Self {
        Self { conditioning, ..self }
    }

    /// The forward process.
    pub fn process(&self) -> &MaskingProcess<S> {
        &self.process
    }

    /// `model` read through SUBS with the objective's mask token ([`MaskingProcess::denoiser`]).
    pub fn denoiser<'a>(&self, model: &'a Denoiser) -> Subs<'a> {
        self.process.denoiser(model)
    }

    /// The denoiser reads the process's mask token as the mask.
    fn check_mask(
        &self,
        model: &impl MaskedDenoiser,
        what: &'static str,
    ) -> Result<(), DiscreteError> {
        let (expected, found) = (self.process.mask_id(), model.mask_id());
        if expected == found {
            Ok(())
        } else {
            Err(DiscreteError::MaskMismatch { what, expected, found })
        }
    }

    fn keep(
        &self,
        batch: usize,
        seq_len: usize,
        device: &burn::tensor::Device,
    ) -> Option<Tensor<2, Bool>> {
        match self.conditioning {
            Conditioning::None => None,
            Conditioning::Prompt { length } => Some(
                Tensor::<1, Int>::arange(0..seq_len as i64, device)
                    .lower_elem(length as i64)
                    .reshape([1, seq_len])
                    .expand([batch, seq_len]),
            ),
        }
    }

    fn scored_per_sequence(&self, seq_len: usize) -> usize {
        match self.conditioning {
            Conditioning::None => seq_len,
            Conditioning::Prompt { length } => seq_len.saturating_sub(length),
        }
    }

    /// The summed NELBO terms of one batch at the given times (one per sequence): the training
    /// loss, with the complementary copies when [`Mdlm::with_complementary_masking`] is on.
    ///
    /// # Shapes
    /// - `x0`: `[batch, seq_len]`; `times.len() == batch`
    pub fn loss_at(
        &self,
        model: &impl MaskedDenoiser,
        x0: Tensor<2, Int>,
        times: &[f64],
        rng: &mut StdRng,
    ) -> LossSum {
        self.nelbo_terms(model, x0, times, rng, self.complementary)
    }

    /// [`Mdlm::loss_at`] with one mask per time (`complementary == false`, what the evaluations
    /// score) or with the complementary copies.
    fn nelbo_terms(
        &self,
        model: &impl MaskedDenoiser,
        x0: Tensor<2, Int>,
        times: &[f64],
        rng: &mut StdRng,
        complementary: bool,
    ) -> LossSum {
        let [batch, seq_len] = x0.dims();
        let device = x0.device();
        let t = floats(times, &device);
        let keep = self.keep(batch, seq_len, &device);
        let masked = self.process.mask(x0.clone(), t.clone(), keep.clone(), rng);
        let weight = self.process.elbo_weights(x0.clone(), t.clone());
        let Masked { mut z_t, mut is_masked } = masked;
        let (mut x0, mut t, mut weight, mut copies) = (x0, t, weight, 1);
        if complementary {
            // The second copy: the complement of the mask, at the time whose mask rate it has,
            // weighted σ′(t) (see `with_complementary_masking`).
            let schedule = self.process.schedule();
            let complement_times: Vec<f64> =
                times.iter().map(|&t| schedule.time_of_alpha(1.0 - schedule.alpha(t))).collect();
            let t_complement = floats(&complement_times, &device);
            let mut complement = is_masked.clone().bool_not();
            if let Some(keep) = keep {
                complement = complement.bool_and(keep.bool_not());
            }
            let z_complement =
                x0.clone().mask_fill(complement.clone(), self.process.mask_id() as i64);
            let sigma_prime: Vec<f64> = times.iter().map(|&t| schedule.sigma_prime(t)).collect();
            let weight_complement =
                floats(&sigma_prime, &device).reshape([batch, 1]).expand([batch, seq_len]);
            z_t = Tensor::cat(vec![z_t, z_complement], 0);
            is_masked = Tensor::cat(vec![is_masked, complement], 0);
            weight = Tensor::cat(vec![weight, weight_complement], 0);
            x0 = Tensor::cat(vec![x0.clone(), x0], 0);
            t = Tensor::cat(vec![t, t_complement], 0);
            copies = 2;
        }
        let sum = masked_nelbo_sum(is_masked, weight, |rows| model.masked_nll(z_t, t, x0, rows));
        LossSum { sum, count: copies * batch * self.scored_per_sequence(seq_len) }
    }

    /// The NELBO's integrand at one time `t`, per scored token:
    /// `w(t) · Σ_{i masked} −log p_θ(x0_i | z_t) / L` over every sequence of `x0`, with
    /// `z_t ~ q(z_t | x0)` drawn from `rng` (MDLM eq. 10 before the expectation over `t`). The
    /// NELBO is its mean over `t ~ U[ε, 1]`; set beside the Bayes-optimal denoiser's
    /// ([`crate::MarkovBayes`], same `x0` and seed) it shows at which noise levels a trained
    /// model loses. In expectation over the masks it is `−α′(t) · E[−log p_θ(x0_i | z_t)]`.
    ///
    /// # Shapes
    /// - `x0`: `[batch, seq_len]`
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] unless `0 < t ≤ 1`, or if the
    /// prompt leaves nothing to score; [`DiscreteError::MaskMismatch`] if `model` reads another
    /// mask token than the process masks with.
    pub fn integrand_at(
        &self,
        model: &impl MaskedDenoiser,
        x0: Tensor<2, Int>,
        t: f64,
        rng: &mut StdRng,
    ) -> Result<f64, DiscreteError> {
        ensure_value(t > 0.0 && t <= 1.0, "MDLM integrand", "t", t, "in (0, 1]")?;
        self.check_seq_len(x0.dims()[1])?;
        self.check_mask(model, "MDLM integrand")?;
        let times = vec![t; x0.dims()[0]];
        let loss = self.nelbo_terms(model, x0, &times, rng, false);
        Ok(loss.sum.into_scalar::<f64>() / loss.count as f64)
    }

    /// The NELBO of `model` on `data`: every sequence is scored at `time_samples` times (drawn
    /// stratified across the batch, seeded), sums accumulate in `f64` ([`evaluate_bound`]). With
    /// a spindle the result is the spindle's weighted surrogate, not a bound (see
    /// [`crate::Spindle`]).
    ///
    /// # Errors
    /// As [`MaskingProcess::check_data`] (context, vocabulary, a mask inside the data);
    /// [`DiscreteError::Invalid`] if the prompt leaves nothing to score;
    /// [`DiscreteError::MaskMismatch`] if `model` reads another mask token than the process
    /// masks with; as [`evaluate_bound`] if `batch_size` or `time_samples` is 0.
    pub fn evaluate(
        &self,
        model: &impl MaskedDenoiser,
        data: &SequenceDataset,
        batch_size: usize,
        time_samples: usize,
        seed: u64,
    ) -> Result<BoundReport, DiscreteError> {
        self.check_data(model, data, "MDLM evaluation")?;
        let batches = EvalBatches { batch_size, max_batches: None, seed };
        let report = evaluate_bound(data, &model.device(), batches, time_samples, |x0, rng| {
            let times = self.time_sampler.sample(x0.dims()[0], rng);
            self.nelbo_terms(model, x0, &times, rng, false)
        })?;
        Ok(report)
    }

    /// One check of `data` against `model` for the trainer and [`Mdlm::evaluate`].
    fn check_data(
        &self,
        model: &impl MaskedDenoiser,
        data: &SequenceDataset,
        what: &'static str,
    ) -> Result<(), DiscreteError> {
        self.check_mask(model, what)?;
        self.check_seq_len(data.seq_len())?;
        self.process.check_data(model, data, what)
    }

    /// Sequences of `seq_len` leave something to score (one check for the trainer and for
    /// [`Mdlm::evaluate`]).
    fn check_seq_len(&self, seq_len: usize) -> Result<(), InvalidInput> {
        ensure_size(
            self.scored_per_sequence(seq_len) > 0,
            "MDLM objective",
            "seq_len",
            seq_len,
            "longer than the prompt",
        )
    }
}

impl<S: NoiseSchedule> Objective<Denoiser> for Mdlm<S> {
    fn check_data(
        &self,
        model: &Denoiser,
        data: &SequenceDataset,
    ) -> Result<(), dlm_core::CoreError> {
        Ok(Mdlm::check_data(self, &self.denoiser(model), data, "MDLM objective")?)
    }

    fn loss(&self, model: &Denoiser, batch: Tensor<2, Int>, rng: &mut StdRng) -> LossSum {
        let times = self.time_sampler.sample(batch.dims()[0], rng);
        self.loss_at(&self.denoiser(model), batch, &times, rng)
    }
}

/// The masked-diffusion NELBO sum `Σ_{b, i masked} w_{b,i} · (−log p_θ(x0_{b,i} | z_t))` (MDLM,
/// Sahoo et al. 2024, eq. 10, before the average; BD3LM's per-block form, Arriola et al. 2025,
/// eq. 8, has the same sum with per-token times), with `nll_at_rows` asked for the masked
/// positions only (their flat indices `b · seq_len + i`, as [`MaskedDenoiser::masked_nll`]).
/// With nothing masked the sum is 0, still a function of the model's output so that it can be
/// differentiated.
///
/// # Shapes
/// - `is_masked`, `weight`: `[batch, seq_len]`; `nll_at_rows`: `[n_rows]` → `[n_rows]`
pub fn masked_nelbo_sum(
    is_masked: Tensor<2, Bool>,
    weight: Tensor<2>,
    nll_at_rows: impl FnOnce(Tensor<1, Int>) -> Tensor<1>,
) -> Tensor<1> {
    let [batch, seq_len] = is_masked.dims();
    let device = is_masked.device();
    match masked_rows(is_masked) {
        Some(rows) => {
            let weight = weight.reshape([batch * seq_len]).select(0, rows.clone());
            (nll_at_rows(rows) * weight).sum()
        }
        None => nll_at_rows(Tensor::zeros([1], &device)).sum().mul_scalar(0.0),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use dlm_core::backbone::{DenoiserConfig, DenoiserIo};
    use dlm_sched::{Cosine, LinearBeta, LogLinear, Polynomial};
    use rand::SeedableRng;

    use super::*;
    use crate::denoiser::NEG_INFINITY;

    const VOCAB: usize = 10;
    const MASK: u32 = 3;

    fn data(device: &Device) -> SequenceDataset {
        let tokens =
            Tensor::<2>::random([64, 16], Distribution::Uniform(4.0, VOCAB as f64), device)
                .int()
                .into_data()
                .iter::<i64>()
                .map(|t| t as u32)
                .collect();
        SequenceDataset::new(16, VOCAB, tokens).unwrap()
    }

    /// A fresh denoiser: zero logits, so uniform over the `V − 1` tokens that are not the mask
    /// under SUBS.
    fn uniform_denoiser(device: &Device) -> Denoiser {
        DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: VOCAB, tie_embeddings: false }, 16)
            .with_d_model(16)
            .with_n_layers(1)
            .init(device)
            .unwrap()
    }

    /// Knows the data: puts all its mass on the true token.
    struct Oracle {
        x0: Tensor<2, Int>,
    }

    impl MaskedDenoiser for Oracle {
        fn log_probs(&self, _z_t: Tensor<2, Int>, _t: Tensor<1>) -> Tensor<3> {
            self.x0.clone().one_hot::<3>(VOCAB).float().sub_scalar(1.0).mul_scalar(-NEG_INFINITY)
        }
        fn is_time_conditioned(&self) -> bool {
            false
        }
        fn mask_id(&self) -> u32 {
            MASK
        }
        fn vocab_size(&self) -> usize {
            VOCAB
        }
        fn max_seq_len(&self) -> Option<usize> {
            None
        }
        fn device(&self) -> Device {
            self.x0.device()
        }
    }

    #[test]
    fn a_uniform_denoiser_scores_ln_v_per_token_under_any_schedule() {
        // A fresh denoiser has zero logits: uniform over the V − 1 tokens that are not the mask.
        let device = Device::flex();
        let model = uniform_denoiser(&device);
        let subs = Subs { model: &model, mask_id: MASK };
        let data = data(&device);
        let t_min = 1e-4;
        let schedules: Vec<Box<dyn NoiseSchedule>> = vec![
            Box::new(LogLinear::default()),
            Box::new(Cosine::default()),
            Box::new(Polynomial::new(1.0).unwrap()),
            Box::new(Polynomial::new(3.0).unwrap()),
            Box::new(LinearBeta::default()),
        ];
        let ln_v = ((VOCAB - 1) as f64).ln();
        for schedule in schedules {
            // E_t[w(t)·(1 − α(t))] = (α(t_min) − α(1))/(1 − t_min) for t ~ U[t_min, 1].
            let expected = ln_v * (schedule.alpha(t_min) - schedule.alpha(1.0)) / (1.0 - t_min);
            let mdlm = Mdlm::new(MaskingProcess::new(schedule.as_ref(), MASK), t_min).unwrap();
            let report = mdlm.evaluate(&subs, &data, 16, 8, 0).unwrap();
            let relative = report.nats_per_token / expected - 1.0;
            assert!(relative.abs() < 0.03, "expected {expected}, got {report:?}");
            assert_eq!(report.tokens, 64 * 16);
        }
    }

    #[test]
    fn the_integrand_of_a_uniform_denoiser_is_minus_alpha_prime_times_ln_v() {
        // Every masked token costs ln(V − 1) and a fraction 1 − α(t) is masked, so the integrand
        // is w(t)·(1 − α(t))·ln(V − 1) = −α′(t)·ln(V − 1) up to the masks' sampling noise.
        let device = Device::flex();
        let model = uniform_denoiser(&device);
        let subs = Subs { model: &model, mask_id: MASK };
        // 8192 tokens: at t = 0.2 the masked count's relative deviation is about 2 %.
        let x0 =
            Tensor::<2>::random([512, 16], Distribution::Uniform(4.0, VOCAB as f64), &device).int();
        let ln_v = ((VOCAB - 1) as f64).ln();
        let schedules: Vec<Box<dyn NoiseSchedule>> =
            vec![Box::new(LogLinear::default()), Box::new(Cosine::default())];
        for schedule in schedules {
            let mdlm = Mdlm::new(MaskingProcess::new(schedule.as_ref(), MASK), 1e-3).unwrap();
            for t in [0.2, 0.5, 0.9] {
                let mut rng = StdRng::seed_from_u64(1);
                let got = mdlm.integrand_at(&subs, x0.clone(), t, &mut rng).unwrap();
                let expected = -schedule.alpha_prime(t) * ln_v;
                assert!((got / expected - 1.0).abs() < 0.1, "t = {t}: {got} vs {expected}");
            }
            for bad in [0.0, -0.5, 1.5, f64::NAN] {
                let mut rng = StdRng::seed_from_u64(1);
                assert!(mdlm.integrand_at(&subs, x0.clone(), bad, &mut rng).is_err());
            }
        }
    }

    #[test]
    fn complementary_masking_scores_every_token_once_at_the_complements_time() {
        // A uniform denoiser costs ln(V − 1) at every masked token. Under the log-linear schedule
        // w(t) = 1/t, and the complement of a mask at t is a mask at t′ ≈ 1 − t.
        let device = Device::flex();
        let model = uniform_denoiser(&device);
        let subs = Subs { model: &model, mask_id: MASK };
        let x0 =
            Tensor::<2>::random([64, 16], Distribution::Uniform(4.0, VOCAB as f64), &device).int();
        let ln_v = ((VOCAB - 1) as f64).ln();
        let process = MaskingProcess::new(LogLinear::new(1e-4).unwrap(), MASK);
        let plain = Mdlm::new(process.clone(), 1e-3).unwrap();
        let pair = plain.clone().with_complementary_masking().unwrap();
        let at = |mdlm: &Mdlm<LogLinear>, t: f64, seed: u64| {
            let mut rng = StdRng::seed_from_u64(seed);
            let loss = mdlm.loss_at(&subs, x0.clone(), &[t; 64], &mut rng);
            loss.sum.into_scalar::<f64>() / loss.count as f64 / ln_v
        };
        // At t = 1/2 both copies weigh 2: whatever the mask, the pair scores every token once
        // at weight 2 over two copies, ln(V − 1) per token with no sampling noise (up to ε).
        // One mask alone counts |M| of the tokens, which varies from mask to mask.
        let pairs: Vec<f64> = (0..4).map(|seed| at(&pair, 0.5, seed)).collect();
        assert!(pairs.iter().all(|v| (v - 1.0).abs() < 1e-3), "{pairs:?}");
        let singles: Vec<f64> = (0..4).map(|seed| at(&plain, 0.5, seed)).collect();
        let spread = singles.iter().fold(0.0_f64, |m, v| m.max((v - singles[0]).abs()));
        assert!(spread > 1e-3, "one mask's score depends on the mask: {singles:?}");
        // At t = 0.2 the complement (80 % masked) must carry σ′(t) = 1/0.8, not w(t) = 5 (which
        // would give 0.2·5 + 0.8·5 = 5 halves: 2.5 ln(V − 1) per token).
        let skewed = at(&pair, 0.2, 0);
        assert!((skewed - 1.0).abs() < 0.05, "{skewed}");
        // Evaluations score one mask per time, complementary training or not.
        let mut rng = StdRng::seed_from_u64(0);
        let single = pair.integrand_at(&subs, x0.clone(), 0.5, &mut rng).unwrap();
        assert!((single / ln_v - singles[0]).abs() < 1e-9, "the plain estimator's draw");
        // Under a schedule that is not linear in t the complement's time t′ does not run
        // uniformly, and its weight carries the Jacobian: the pair's integrand is −α′(t)·ln(V − 1)
        // like one mask's (α = 1 − t², at t = 1/2: 1; the weight w(t′) instead gives ≈ 1.37).
        let square = Polynomial::new(2.0).unwrap();
        let square_pair = Mdlm::new(MaskingProcess::new(square, MASK), 1e-3)
            .unwrap()
            .with_complementary_masking()
            .unwrap();
        let big =
            Tensor::<2>::random([512, 16], Distribution::Uniform(4.0, VOCAB as f64), &device).int();
        let mut rng = StdRng::seed_from_u64(2);
        let loss = square_pair.loss_at(&subs, big, &[0.5; 512], &mut rng);
        let per_token = loss.sum.into_scalar::<f64>() / loss.count as f64 / ln_v;
        let expected = -square.alpha_prime(0.5);
        assert!((per_token / expected - 1.0).abs() < 0.05, "{per_token} vs {expected}");
        // With a prompt, every response token of both copies is counted.
        let prompted = pair.clone().with_conditioning(Conditioning::Prompt { length: 5 });
        let mut rng = StdRng::seed_from_u64(0);
        let loss = prompted.loss_at(&subs, x0.clone(), &[0.3; 64], &mut rng);
        assert_eq!(loss.count, 2 * 64 * (16 - 5));
        let per_token = loss.sum.into_scalar::<f64>() / loss.count as f64 / ln_v;
        assert!((per_token - 1.0).abs() < 0.05, "{per_token}");
        // Checkpoints name their run by the objective's text: a plain run's is what it was before
        // complementary masking existed, so its checkpoints still resume.
        let plain = Mdlm::new(MaskingProcess::new(LogLinear::default(), MASK), 1e-3).unwrap();
        let before = "Mdlm { process: MaskingProcess { schedule: LogLinear { eps: 0.001 }, \
                      mask_id: 3, spindle: None }, time_sampler: TimeSampler { low: 0.001, \
                      high: 1.0, stratification: Antithetic }, conditioning: None }";
        assert_eq!(format!("{plain:?}"), before);
        let pair = plain.with_complementary_masking().unwrap();
        assert!(format!("{pair:?}").ends_with("conditioning: None, complementary: true }"));
        // A spindle's rates depend on the token: its complement is no time of the process.
        let linear = Polynomial::new(1.0).unwrap();
        let counts = [0.0, 0.0, 0.0, 0.0, 5.0, 1.0, 3.0, 2.0, 1.0, 1.0];
        let spindle = crate::Spindle::new(0.05, &counts, &linear).unwrap();
        let spindled = MaskingProcess::new(linear, MASK).with_spindle(spindle).unwrap();
        let refused = Mdlm::new(spindled, 1e-3).unwrap().with_complementary_masking();
        assert!(matches!(refused, Err(DiscreteError::Unsupported { .. })));
    }

    #[test]
    fn a_denoiser_with_another_mask_is_refused_and_the_objective_builds_the_right_one() {
        let device = Device::flex();
        let model = uniform_denoiser(&device);
        let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), MASK), 1e-3).unwrap();
        let data = data(&device);
        let other = Subs { model: &model, mask_id: MASK + 1 };
        match mdlm.evaluate(&other, &data, 16, 1, 0) {
            Err(DiscreteError::MaskMismatch { expected, found, .. }) => {
                assert_eq!((expected, found), (MASK, MASK + 1));
            }
            other => panic!("unexpected {other:?}"),
        }
        let x0 = data.batch(&[0, 1], &device);
        let mut rng = StdRng::seed_from_u64(0);
        assert!(mdlm.integrand_at(&other, x0, 0.5, &mut rng).is_err());
        assert_eq!(mdlm.denoiser(&model).mask_id(), MASK);
        assert!(mdlm.evaluate(&mdlm.denoiser(&model), &data, 16, 1, 0).is_ok());
    }

    #[test]
    fn the_uniform_invariant_holds_with_a_spindle_too() {
        // Each token has its own schedule with the same endpoints, so the uniform denoiser still
        // pays ln(V − 1)·(α_i(t_min) − α_i(1)) per token.
        let device = Device::flex();
        let model = uniform_denoiser(&device);
        let schedule = Polynomial::new(1.0).unwrap();
        let counts: Vec<f64> =
            (0..VOCAB).map(|v| if v < 4 { 0.0 } else { (v * v) as f64 }).collect();
        let spindle = crate::Spindle::new(0.05, &counts, &schedule).unwrap();
        let mdlm =
            Mdlm::new(MaskingProcess::new(schedule, MASK).with_spindle(spindle).unwrap(), 1e-4)
                .unwrap();
        let report = mdlm
            .evaluate(&Subs { model: &model, mask_id: MASK }, &data(&device), 16, 8, 0)
            .unwrap();
        let expected = ((VOCAB - 1) as f64).ln();
        assert!((report.nats_per_token / expected - 1.0).abs() < 0.03, "{report:?}");
    }

    #[test]
    fn an_oracle_scores_zero() {
        let device = Device::flex();
        let data = data(&device);
        let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), MASK), 1e-3).unwrap();
        let mut rng = StdRng::seed_from_u64(0);
        let x0 = data.batch(&(0..64).collect::<Vec<_>>(), &device);
        let times = mdlm.time_sampler.sample(64, &mut rng);
        let loss = mdlm.loss_at(&Oracle { x0: x0.clone() }, x0, &times, &mut rng);
        assert_eq!(loss.sum.into_scalar::<f64>(), 0.0);
    }

    #[test]
    fn a_prompt_is_never_masked_and_not_counted() {
        let device = Device::flex();
        let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), MASK), 1e-3)
            .unwrap()
            .with_conditioning(Conditioning::Prompt { length: 5 });
        let x0 = data(&device).batch(&[0, 1, 2, 3], &device);
        let mut rng = StdRng::seed_from_u64(1);
        // At t = 1 every response token is masked; the uniform denoiser pays ln(V − 1) each.
        let model = DenoiserConfig::tokens(VOCAB, 16)
            .with_d_model(16)
            .with_n_layers(1)
            .init(&device)
            .unwrap();
        let loss = mdlm.loss_at(&Subs { model: &model, mask_id: MASK }, x0, &[1.0; 4], &mut rng);
        assert_eq!(loss.count, 4 * 11);
        let weight = LogLinear::default().masked_elbo_weight(1.0);
        let expected = 4.0 * 11.0 * weight * ((VOCAB - 1) as f64).ln();
        assert!((loss.sum.into_scalar::<f64>() / expected - 1.0).abs() < 1e-5);
        let prompt_only = SequenceDataset::new(5, VOCAB, vec![4; 10]).unwrap();
        assert!(Objective::check_data(&mdlm, &model, &prompt_only).is_err());
    }

    /// Today's training loss written out: SUBS over every position, the true token's NLL
    /// weighted and masked to the scored positions, summed.
    fn full_subs_loss(
        mdlm: &Mdlm<impl NoiseSchedule>,
        model: &Denoiser,
        x0: Tensor<2, Int>,
        times: &[f64],
        rng: &mut StdRng,
    ) -> Tensor<1> {
        let [batch, seq_len] = x0.dims();
        let t = floats(times, &x0.device());
        let keep = mdlm.keep(batch, seq_len, &x0.device());
        let masked = mdlm.process.mask(x0.clone(), t.clone(), keep, rng);
        let log_probs = Subs { model, mask_id: MASK }.log_probs(masked.z_t, t.clone());
        let nll = log_probs.gather(2, x0.clone().unsqueeze_dim(2)).squeeze_dim::<2>(2).neg();
        let weight = mdlm.process.elbo_weights(x0, t);
        (nll * weight).mask_fill(masked.is_masked.bool_not(), 0.0).sum()
    }

    #[test]
    fn the_masked_rows_loss_and_its_gradients_equal_the_full_subs_path() {
        use burn::optim::GradientsParams;
        use dlm_core::testing::{flat_gradients, max_relative_difference, randomised};
        let device = Device::flex().autodiff();
        let x0 = data(&device).batch(&(0..8).collect::<Vec<_>>(), &device);
        let times = [0.05, 0.2, 0.3, 0.45, 0.5, 0.7, 0.85, 1.0];
        let configs = [
            DenoiserConfig::tokens(VOCAB, 16).with_cond_dim(Some(8)),
            DenoiserConfig::new(DenoiserIo::Tokens { vocab_size: VOCAB, tie_embeddings: true }, 16),
        ];
        let objectives = [
            Mdlm::new(MaskingProcess::new(Cosine::default(), MASK), 1e-3).unwrap(),
            Mdlm::new(MaskingProcess::new(Cosine::default(), MASK), 1e-3)
                .unwrap()
                .with_conditioning(Conditioning::Prompt { length: 4 }),
        ];
        for (config, mdlm) in configs.into_iter().zip(&objectives) {
            let config = config.with_d_model(16).with_n_layers(2);
            let model = randomised(config.init(&device).unwrap(), &device);
            let reference =
                full_subs_loss(mdlm, &model, x0.clone(), &times, &mut StdRng::seed_from_u64(3));
            let subs = Subs { model: &model, mask_id: MASK };
            let fast = mdlm.loss_at(&subs, x0.clone(), &times, &mut StdRng::seed_from_u64(3)).sum;
            let (a, b) =
                (fast.clone().into_scalar::<f64>(), reference.clone().into_scalar::<f64>());
            assert!(b > 1.0 && (a / b - 1.0).abs() < 1e-6, "loss {a} vs {b}");
            let grads = |loss: Tensor<1>| {
                flat_gradients(&model, &GradientsParams::from_grads(loss.backward(), &model))
            };
            let (fast, reference) = (grads(fast), grads(reference));
            assert!(reference.iter().any(|&g| g != 0.0));
            let difference = max_relative_difference(&fast, &reference);
            assert!(difference < 1e-5, "gradients differ by {difference}");
        }
    }

    #[test]
    fn nothing_masked_scores_zero_and_still_differentiates() {
        let device = Device::flex().autodiff();
        let model = DenoiserConfig::tokens(VOCAB, 16)
            .with_d_model(16)
            .with_n_layers(1)
            .init(&device)
            .unwrap();
        let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), MASK), 0.0).unwrap();
        let x0 = data(&device).batch(&[0, 1], &device);
        // α(0) = 1: no position is masked.
        let subs = Subs { model: &model, mask_id: MASK };
        let loss = mdlm.loss_at(&subs, x0, &[0.0, 0.0], &mut StdRng::seed_from_u64(0));
        assert_eq!(loss.count, 32);
        assert_eq!(loss.sum.clone().into_scalar::<f64>(), 0.0);
        let _ = loss.sum.backward();
    }
}
