//! Linear-β variance-preserving schedule (DDPM in continuous time).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{ScheduleError, ensure_value};
use crate::schedule::NoiseSchedule;
use crate::tensor_math::one_minus_exp_neg;

const CONTEXT: &str = "linear-beta schedule";

/// Variance-preserving schedule with a noise rate linear in time,
/// `β(t) = β_min + t·(β_max − β_min)`, so that
///
/// `σ(t) = ∫₀ᵗ β(u) du = β_min·t + ½·(β_max − β_min)·t²`, `α(t) = exp(−σ(t))`.
///
/// This is the continuous-time limit of DDPM's linear `β_i` from `1e-4` to `0.02` over
/// `T = 1000` steps (Ho et al. 2020, §4), written as the VP SDE of Song et al. 2021 (eq. 11), whose
/// perturbation kernel (their App. C) has mean `exp(−σ(t)/2)·x0 = √α(t)·x0`, with
/// `β̄_min = 0.1`, `β̄_max = 20`. Those are the defaults.
///
/// `α′(t) = −β(t)·α(t)`; `1 − α = −expm1(−σ)` is evaluated without cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LinearBetaParams")]
pub struct LinearBeta {
    beta_min: f64,
    beta_max: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearBetaParams {
    #[serde(default = "LinearBeta::default_beta_min")]
    beta_min: f64,
    #[serde(default = "LinearBeta::default_beta_max")]
    beta_max: f64,
}

impl TryFrom<LinearBetaParams> for LinearBeta {
    type Error = ScheduleError;
    fn try_from(p: LinearBetaParams) -> Result<Self, Self::Error> {
        Self::new(p.beta_min, p.beta_max)
    }
}

impl LinearBeta {
    fn default_beta_min() -> f64 {
        0.1
    }
    fn default_beta_max() -> f64 {
        20.0
    }

    /// Builds the schedule.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless `β_min` is finite and `≥ 0`, and `β_max` is
    /// finite, `> 0` and `≥ β_min`.
    pub fn new(beta_min: f64, beta_max: f64) -> Result<Self, ScheduleError> {
        ensure_value(
            beta_min.is_finite() && beta_min >= 0.0,
            CONTEXT,
            "beta_min",
            beta_min,
            "a finite value >= 0",
        )?;
        ensure_value(
            beta_max.is_finite() && beta_max > 0.0 && beta_max >= beta_min,
            CONTEXT,
            "beta_max",
            beta_max,
            "a finite value > 0 and >= beta_min",
        )?;
        Ok(Self { beta_min, beta_max })
    }

    /// `β_min`, the noise rate at `t = 0`.
    pub fn beta_min(&self) -> f64 {
        self.beta_min
    }

    /// `β_max`, the noise rate at `t = 1`.
    pub fn beta_max(&self) -> f64 {
        self.beta_max
    }

    /// The instantaneous noise rate `β(t) = σ′(t)`.
    pub fn beta(&self, t: f64) -> f64 {
        self.beta_min + t * (self.beta_max - self.beta_min)
    }

    fn beta_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.mul_scalar(self.beta_max - self.beta_min).add_scalar(self.beta_min)
    }
}

impl Default for LinearBeta {
    /// `β_min = 0.1`, `β_max = 20` (Song et al. 2021, DDPM's schedule in continuous time).
    fn default() -> Self {
        Self { beta_min: Self::default_beta_min(), beta_max: Self::default_beta_max() }
    }
}

impl NoiseSchedule for LinearBeta {
    fn alpha(&self, t: f64) -> f64 {
        (-self.sigma(t)).exp()
    }

    fn alpha_prime(&self, t: f64) -> f64 {
        -self.beta(t) * self.alpha(t)
    }

    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.sigma_tensor(t).neg().exp()
    }

    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.beta_tensor(t.clone()).neg() * self.alpha_tensor(t)
    }

    fn one_minus_alpha(&self, t: f64) -> f64 {
        -(-self.sigma(t)).exp_m1()
    }

    fn sigma(&self, t: f64) -> f64 {
        t * (self.beta_min + 0.5 * (self.beta_max - self.beta_min) * t)
    }

    fn sigma_prime(&self, t: f64) -> f64 {
        self.beta(t)
    }

    fn one_minus_alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        one_minus_exp_neg(self.sigma_tensor(t))
    }

    fn sigma_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        let half_slope = 0.5 * (self.beta_max - self.beta_min);
        t.clone() * t.mul_scalar(half_slope).add_scalar(self.beta_min)
    }

    fn sigma_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.beta_tensor(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidInput;

    #[test]
    fn closed_form_matches_the_integral_of_beta() {
        let s = LinearBeta::default();
        // σ(1) = 0.1 + ½·19.9 = 10.05; σ(0.5) = 0.05 + ½·19.9·0.25 = 2.5375.
        assert!((s.sigma(1.0) - 10.05).abs() < 1e-12);
        assert!((s.sigma(0.5) - 2.5375).abs() < 1e-12);
        assert!((s.alpha(0.5) - (-2.5375f64).exp()).abs() < 1e-15);
        assert_eq!(s.alpha(0.0), 1.0);
        assert!((s.sigma_prime(0.25) - (0.1 + 0.25 * 19.9)).abs() < 1e-12);
    }

    #[test]
    fn one_minus_alpha_keeps_precision_near_t0() {
        let s = LinearBeta::default();
        let t = 1e-9;
        // 1 − exp(−σ) ≈ σ for tiny σ; the naive 1 − α would lose ~7 digits here.
        let sigma = s.sigma(t);
        assert!((s.one_minus_alpha(t) / sigma - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_parameters() {
        for (bmin, bmax, name) in [
            (-0.1, 20.0, "beta_min"),
            (f64::NAN, 20.0, "beta_min"),
            (0.1, f64::INFINITY, "beta_max"),
            (5.0, 1.0, "beta_max"),
            (0.0, 0.0, "beta_max"),
        ] {
            match LinearBeta::new(bmin, bmax) {
                Err(ScheduleError::Invalid(InvalidInput { name: n, .. })) => assert_eq!(n, name),
                other => panic!("({bmin}, {bmax}) gave {other:?}"),
            }
        }
    }
}
