//! DDPM and DDIM sampling over embeddings, with clamping, rounding and DiffuSeq's anchoring.

use burn::tensor::{Int, Tensor, TensorData};
use dlm_sched::{NoiseSchedule, TimeGrid};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{ContinuousError, ensure_size, ensure_value};
use crate::gaussian::{ddim_step, ddpm_step};
use crate::model::X0Predictor;
use crate::objective::{normal, source_mask};
use crate::rounding::{Distance, clamp_to_embeddings, round_to_tokens};

/// The reverse update.
///
/// Deserialising checks `η` ([`Update::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "update", rename_all = "snake_case")]
pub enum Update {
    /// DDPM ancestral steps (the posterior at the predicted `x̂0`).
    Ddpm,
    /// DDIM steps with stochasticity `η ∈ [0, 1]` (`0`: deterministic).
    Ddim {
        /// `η`.
        eta: f64,
    },
}

dlm_sched::serde_validated!(Update);

impl Update {
    /// DDIM's `η` lies in `[0, 1]`.
    ///
    /// # Errors
    /// [`ContinuousError::Invalid`] naming `eta`.
    pub fn validate(&self) -> Result<(), ContinuousError> {
        if let Self::Ddim { eta } = *self {
            ensure_value((0.0..=1.0).contains(&eta), "DDIM", "eta", eta, "a value in [0, 1]")?;
        }
        Ok(())
    }
}

/// A Gaussian sampler over embeddings: from `z_1 ~ N(0, I)`, walk a [`TimeGrid`] with DDPM or
/// DDIM steps at the model's `x̂0`, optionally snapping `x̂0` to the nearest embedding at every
/// step (Diffusion-LM's clamping trick), and round the final `x̂0` to tokens. Step skipping is a
/// coarser grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianSampler {
    update: Update,
    grid: TimeGrid,
    clamp: Option<Distance>,
    rounding: Distance,
}

/// The result of [`GaussianSampler::sample`].
#[derive(Debug, Clone)]
pub struct Sampled {
    /// The rounded tokens, `[batch, seq_len]`.
    pub tokens: Tensor<2, Int>,
    /// The final `x̂0`, `[batch, seq_len, dim]`.
    pub x0: Tensor<3>,
    /// Model calls.
    pub nfe: usize,
}

impl GaussianSampler {
    /// A sampler on `grid` with L2 rounding and no clamping.
    ///
    /// # Errors
    /// [`ContinuousError::Invalid`] for DDIM with `η ∉ [0, 1]`.
    pub fn new(update: Update, grid: TimeGrid) -> Result<Self, ContinuousError> {
        update.validate()?;
        Ok(Self { update, grid, clamp: None, rounding: Distance::L2 })
    }

    /// Snaps `x̂0` to the nearest embedding at every step.
    pub fn with_clamping(self, distance: Distance) -> Self {
        Self { clamp: Some(distance), ..self }
    }

    /// Rounds with `distance`.
    pub fn with_rounding(self, distance: Distance) -> Self {
        Self { rounding: distance, ..self }
    }

    /// Samples `batch` sequences of `seq_len`. With `source` (`[batch, source_len]` tokens,
    /// DiffuSeq), the first positions hold the source's embeddings and are re-anchored to them
    /// after every step, so only the rest is generated. Noise comes from `rng`. With a
    /// self-conditioned model, each step's unclamped `x̂0` is the next step's previous estimate.
    ///
    /// # Errors
    /// [`ContinuousError::Invalid`] if `source` has another batch size or is longer than
    /// `seq_len`.
    pub fn sample<M: X0Predictor, S: NoiseSchedule>(
        &self,
        model: &M,
        schedule: &S,
        batch: usize,
        seq_len: usize,
        source: Option<Tensor<2, Int>>,
        rng: &mut StdRng,
    ) -> Result<Sampled, ContinuousError> {
        let embeddings = model.embeddings();
        let device = embeddings.device();
        let dim = embeddings.dims()[1];
        if let Some(source) = &source {
            let [rows, source_len] = source.dims();
            ensure_size(
                rows == batch,
                "Gaussian sampler",
                "source rows",
                rows,
                format!("batch = {batch}"),
            )?;
            ensure_size(
                source_len <= seq_len,
                "Gaussian sampler",
                "source length",
                source_len,
                format!("at most seq_len = {seq_len}"),
            )?;
        }
        let anchor = source.map(|source| {
            let [_, source_len] = source.dims();
            let embedded = embeddings
                .clone()
                .select(0, source.reshape([batch * source_len]))
                .reshape([batch, source_len, dim]);
            let padded = Tensor::cat(
                vec![embedded, Tensor::zeros([batch, seq_len - source_len, dim], &device)],
                1,
            );
            (source_mask(batch, seq_len, dim, source_len, &device), padded)
        });
        let anchored = |z: Tensor<3>| match &anchor {
            Some((mask, values)) => z.mask_where(mask.clone(), values.clone()),
            None => z,
        };
        let mut z = anchored(normal([batch, seq_len, dim], &device, rng));
        let mut previous: Option<Tensor<3>> = None;
        let mut last_x0: Option<Tensor<3>> = None;
        let mut nfe = 0;
        for (t, s) in self.grid.pairs() {
            let time =
                Tensor::<1>::from_data(TensorData::new(vec![t as f32; batch], [batch]), &device);
            let predicted = model.predict_x0(z.clone(), time, previous.take());
            nfe += 1;
            let x0_hat = match self.clamp {
                Some(distance) => {
                    clamp_to_embeddings(predicted.clone(), embeddings.clone(), distance)
                }
                None => predicted.clone(),
            };
            let (alpha_t, alpha_s) = (schedule.alpha(t), schedule.alpha(s));
            z = if s <= 0.0 || alpha_s >= 1.0 {
                x0_hat.clone()
            } else {
                let noise = match self.update {
                    Update::Ddim { eta: 0.0 } => z.zeros_like(),
                    _ => normal([batch, seq_len, dim], &device, rng),
                };
                match self.update {
                    Update::Ddpm => ddpm_step(x0_hat.clone(), z, noise, alpha_t, alpha_s),
                    Update::Ddim { eta } => {
                        ddim_step(x0_hat.clone(), z, noise, alpha_t, alpha_s, eta)
                    }
                }
            };
            z = anchored(z);
            previous = Some(predicted);
            last_x0 = Some(x0_hat);
        }
        let x0 = anchored(last_x0.unwrap_or(z));
        Ok(Sampled { tokens: round_to_tokens(x0.clone(), embeddings, self.rounding), x0, nfe })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use dlm_sched::SquareRoot;
    use rand::{RngExt, SeedableRng};

    use super::*;

    #[test]
    fn a_ddim_eta_out_of_range_is_refused_when_read() {
        let ok: Update = serde_json::from_str(r#"{"update": "ddim", "eta": 0.5}"#).unwrap();
        assert_eq!(ok, Update::Ddim { eta: 0.5 });
        let err = serde_json::from_str::<Update>(r#"{"update": "ddim", "eta": 2}"#).unwrap_err();
        assert!(err.to_string().contains("`eta` = 2"), "{err}");
        assert!(
            GaussianSampler::new(Update::Ddim { eta: -0.1 }, TimeGrid::uniform(4, 0.0).unwrap())
                .is_err()
        );
    }

    /// Knows the answer: predicts the embeddings of fixed tokens.
    struct Oracle {
        embeddings: Tensor<2>,
        tokens: Tensor<2, Int>,
    }

    impl X0Predictor for Oracle {
        fn predict_x0(
            &self,
            z_t: Tensor<3>,
            _t: Tensor<1>,
            _previous: Option<Tensor<3>>,
        ) -> Tensor<3> {
            let [batch, seq_len, dim] = z_t.dims();
            self.embeddings
                .clone()
                .select(0, self.tokens.clone().reshape([batch * seq_len]))
                .reshape([batch, seq_len, dim])
        }
        fn embeddings(&self) -> Tensor<2> {
            self.embeddings.clone()
        }
    }

    fn oracle(device: &Device) -> Oracle {
        Oracle {
            embeddings: Tensor::<2>::random([12, 8], Distribution::Normal(0.0, 1.0), device),
            tokens: Tensor::<2>::random([3, 10], Distribution::Uniform(0.0, 12.0), device).int(),
        }
    }

    #[test]
    fn an_oracle_is_recovered_exactly_by_ddpm_and_ddim() {
        let device = Device::flex();
        let oracle = oracle(&device);
        let schedule = SquareRoot::default();
        for update in [Update::Ddpm, Update::Ddim { eta: 0.0 }, Update::Ddim { eta: 0.5 }] {
            let sampler =
                GaussianSampler::new(update, TimeGrid::uniform(20, 0.0).unwrap()).unwrap();
            let out = sampler
                .sample(&oracle, &schedule, 3, 10, None, &mut StdRng::seed_from_u64(1))
                .unwrap();
            assert_eq!(out.tokens.into_data(), oracle.tokens.clone().into_data(), "{update:?}");
            assert_eq!(out.nfe, 20);
        }
    }

    /// Predicts fixed embeddings and records every `z_t` it is shown.
    struct Recording {
        oracle: Oracle,
        inputs: std::cell::RefCell<Vec<Tensor<3>>>,
    }

    impl X0Predictor for Recording {
        fn predict_x0(&self, z_t: Tensor<3>, t: Tensor<1>, p: Option<Tensor<3>>) -> Tensor<3> {
            self.inputs.borrow_mut().push(z_t.clone());
            self.oracle.predict_x0(z_t, t, p)
        }
        fn embeddings(&self) -> Tensor<2> {
            self.oracle.embeddings()
        }
    }

    /// With a model that always predicts the same `x0`, deterministic DDIM keeps `ε̂` fixed
    /// (Song et al. 2021a, eq. 12 with `σ = 0`): every state it visits is
    /// `z_t = √α_t·x0 + √(1 − α_t)·ε̂` with the `ε̂` of the starting noise.
    #[test]
    fn deterministic_ddim_walks_the_line_of_the_starting_noise() {
        let device = Device::flex();
        let model = Recording { oracle: oracle(&device), inputs: Default::default() };
        let schedule = SquareRoot::default();
        let grid = TimeGrid::uniform(8, 0.0).unwrap();
        let sampler = GaussianSampler::new(Update::Ddim { eta: 0.0 }, grid.clone()).unwrap();
        sampler.sample(&model, &schedule, 3, 10, None, &mut StdRng::seed_from_u64(4)).unwrap();
        let x0 = model.oracle.predict_x0(
            Tensor::zeros([3, 10, 8], &device),
            Tensor::zeros([3], &device),
            None,
        );
        let inputs = model.inputs.into_inner();
        let times: Vec<f64> = grid.pairs().map(|(t, _)| t).collect();
        assert_eq!(inputs.len(), times.len());
        let alpha_1 = schedule.alpha(times[0]);
        let eps_hat = (inputs[0].clone() - x0.clone().mul_scalar(alpha_1.sqrt()))
            .div_scalar((1.0 - alpha_1).sqrt());
        for (z_t, &t) in inputs.iter().zip(&times) {
            let alpha = schedule.alpha(t);
            let expected = x0.clone().mul_scalar(alpha.sqrt())
                + eps_hat.clone().mul_scalar((1.0 - alpha).sqrt());
            let error = (z_t.clone() - expected).abs().max().into_scalar::<f64>();
            assert!(error < 1e-4, "t = {t}: {error}");
        }
    }

    /// Deterministic DDIM draws only the starting noise from `rng`; DDPM draws at every step.
    #[test]
    fn ddim_with_eta_zero_consumes_only_the_starting_noise() {
        let device = Device::flex();
        let model = oracle(&device);
        let schedule = SquareRoot::default();
        let next_draw = |update| {
            let sampler =
                GaussianSampler::new(update, TimeGrid::uniform(10, 0.0).unwrap()).unwrap();
            let mut rng = StdRng::seed_from_u64(1);
            sampler.sample(&model, &schedule, 3, 10, None, &mut rng).unwrap();
            rng.random::<u64>()
        };
        let mut rng = StdRng::seed_from_u64(1);
        normal([3, 10, 8], &device, &mut rng);
        let after_start = rng.random::<u64>();
        assert_eq!(next_draw(Update::Ddim { eta: 0.0 }), after_start);
        assert_ne!(next_draw(Update::Ddpm), after_start);
    }

    #[test]
    fn partial_noising_anchors_the_source_whatever_the_model_predicts() {
        let device = Device::flex();
        let oracle = oracle(&device);
        // A source the model disagrees with at every position.
        let source = oracle.tokens.clone().narrow(1, 0, 4).add_scalar(1).remainder_scalar(12);
        let sampler = GaussianSampler::new(Update::Ddpm, TimeGrid::uniform(5, 0.0).unwrap())
            .unwrap()
            .with_clamping(Distance::L2);
        let out = sampler
            .sample(
                &oracle,
                &SquareRoot::default(),
                3,
                10,
                Some(source.clone()),
                &mut StdRng::seed_from_u64(0),
            )
            .unwrap();
        assert_eq!(out.tokens.clone().narrow(1, 0, 4).into_data(), source.clone().into_data());
        let target = oracle.tokens.clone().narrow(1, 4, 6).into_data();
        assert_eq!(out.tokens.narrow(1, 4, 6).into_data(), target);
        // A source of the wrong shape is an error.
        let run = |source: Tensor<2, Int>, seq_len| {
            sampler.sample(
                &oracle,
                &SquareRoot::default(),
                3,
                seq_len,
                Some(source),
                &mut StdRng::seed_from_u64(0),
            )
        };
        assert!(run(source.clone().narrow(0, 0, 2), 10).is_err());
        assert!(run(source, 3).is_err());
    }

    #[test]
    fn ddim_eta_is_validated() {
        let grid = TimeGrid::uniform(5, 0.0).unwrap();
        assert!(GaussianSampler::new(Update::Ddim { eta: 1.5 }, grid.clone()).is_err());
        assert!(GaussianSampler::new(Update::Ddim { eta: -0.1 }, grid).is_err());
    }
}
