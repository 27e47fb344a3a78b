//! DDPM and DDIM sampling over embeddings, with clamping, rounding and DiffuSeq's anchoring.

use burn::tensor::{Int, Tensor, TensorData};
use dlm_sched::{NoiseSchedule, TimeGrid};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{ContinuousError, ensure_value};
use crate::gaussian::{ddim_step, ddpm_step};
use crate::model::X0Predictor;
use crate::objective::{normal, source_mask};
use crate::rounding::{Distance, clamp_to_embeddings, round_to_tokens};

/// The reverse update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum Update {
    /// DDPM ancestral steps (the posterior at the predicted `x̂0`).
    Ddpm,
    /// DDIM steps with stochasticity `η ∈ [0, 1]` (`0`: deterministic).
    Ddim {
        /// `η`.
        eta: f64,
    },
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
    /// [`ContinuousError::InvalidValue`] for DDIM with `η ∉ [0, 1]`.
    pub fn new(update: Update, grid: TimeGrid) -> Result<Self, ContinuousError> {
        if let Update::Ddim { eta } = update {
            ensure_value((0.0..=1.0).contains(&eta), "DDIM", "eta", eta, "a value in [0, 1]")?;
        }
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
    /// after every step, so only the rest is generated. Noise comes from `rng`.
    ///
    /// # Panics
    /// If `source` is longer than `seq_len` or has another batch size.
    pub fn sample<M: X0Predictor, S: NoiseSchedule>(
        &self,
        model: &M,
        schedule: &S,
        batch: usize,
        seq_len: usize,
        source: Option<Tensor<2, Int>>,
        rng: &mut StdRng,
    ) -> Sampled {
        let embeddings = model.embeddings();
        let device = embeddings.device();
        let dim = embeddings.dims()[1];
        let anchor = source.map(|source| {
            let [rows, source_len] = source.dims();
            assert!(rows == batch && source_len <= seq_len, "source of the wrong shape");
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
        let mut nfe = 0;
        for (t, s) in self.grid.pairs() {
            let time =
                Tensor::<1>::from_data(TensorData::new(vec![t as f32; batch], [batch]), &device);
            let mut x0_hat = model.predict_x0(z.clone(), time, previous.take());
            nfe += 1;
            if let Some(distance) = self.clamp {
                x0_hat = clamp_to_embeddings(x0_hat, embeddings.clone(), distance);
            }
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
            previous = Some(x0_hat);
        }
        let x0 = anchored(previous.unwrap_or(z));
        Sampled { tokens: round_to_tokens(x0.clone(), embeddings, self.rounding), x0, nfe }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use dlm_sched::SquareRoot;
    use rand::SeedableRng;

    use super::*;

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
            let out =
                sampler.sample(&oracle, &schedule, 3, 10, None, &mut StdRng::seed_from_u64(1));
            assert_eq!(out.tokens.into_data(), oracle.tokens.clone().into_data(), "{update:?}");
            assert_eq!(out.nfe, 20);
        }
    }

    #[test]
    fn ddim_with_eta_zero_is_deterministic_and_ddpm_is_not() {
        // A model whose x̂0 depends on z_t: a fixed linear map.
        struct Shrink(Tensor<2>);
        impl X0Predictor for Shrink {
            fn predict_x0(
                &self,
                z_t: Tensor<3>,
                _t: Tensor<1>,
                _p: Option<Tensor<3>>,
            ) -> Tensor<3> {
                z_t.mul_scalar(0.5)
            }
            fn embeddings(&self) -> Tensor<2> {
                self.0.clone()
            }
        }
        let device = Device::flex();
        let model = Shrink(Tensor::<2>::random([5, 4], Distribution::Normal(0.0, 1.0), &device));
        let schedule = SquareRoot::default();
        let run = |update, seed| {
            let sampler =
                GaussianSampler::new(update, TimeGrid::uniform(10, 0.0).unwrap()).unwrap();
            // The same starting noise (first draw), different later draws.
            let mut rng = StdRng::seed_from_u64(seed);
            sampler.sample(&model, &schedule, 1, 6, None, &mut rng).x0
        };
        let a = run(Update::Ddim { eta: 0.0 }, 1);
        assert_eq!(a.clone().into_data(), run(Update::Ddim { eta: 0.0 }, 1).into_data());
        let diff = (run(Update::Ddpm, 1) - a).abs().max().into_scalar::<f64>();
        assert!(diff > 1e-3, "DDPM adds noise along the way: {diff}");
    }

    #[test]
    fn partial_noising_keeps_the_source() {
        let device = Device::flex();
        let oracle = oracle(&device);
        let source = oracle.tokens.clone().narrow(1, 0, 4);
        let sampler = GaussianSampler::new(Update::Ddpm, TimeGrid::uniform(5, 0.0).unwrap())
            .unwrap()
            .with_clamping(Distance::L2);
        let out = sampler.sample(
            &oracle,
            &SquareRoot::default(),
            3,
            10,
            Some(source.clone()),
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(out.tokens.narrow(1, 0, 4).into_data(), source.into_data());
    }

    #[test]
    fn ddim_eta_is_validated() {
        let grid = TimeGrid::uniform(5, 0.0).unwrap();
        assert!(GaussianSampler::new(Update::Ddim { eta: 1.5 }, grid.clone()).is_err());
        assert!(GaussianSampler::new(Update::Ddim { eta: -0.1 }, grid).is_err());
    }
}
