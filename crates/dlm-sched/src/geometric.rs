//! SEDD's geometric total-noise schedule.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{ScheduleError, ensure_value};
use crate::schedule::NoiseSchedule;
use crate::tensor_math::one_minus_exp_neg;

const CONTEXT: &str = "geometric schedule";

/// Geometric total noise of SEDD (Lou et al. 2024, §5.1 and App. C.1; their `GeometricNoise`):
///
/// `σ(t) = σ_min^{1−t}·σ_max^t`, `α(t) = exp(−σ(t))`,
///
/// defaults `σ_min = 1e-4`, `σ_max = 20` as in the reference code's config (the paper's text
/// quotes `σ_min = 1e-5`). So `α(0) = e^{−σ_min} ≈ 1` and `α(1) = e^{−σ_max}`.
///
/// `σ′(t) = σ(t)·ln(σ_max/σ_min)`, `α′ = −σ′·α`, `1 − α = −expm1(−σ)`; the masked-ELBO weight is
/// `σ′/expm1(σ)`, SEDD's absorbing-state weighting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GeometricParams")]
pub struct Geometric {
    sigma_min: f64,
    sigma_max: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GeometricParams {
    #[serde(default = "Geometric::default_sigma_min")]
    sigma_min: f64,
    #[serde(default = "Geometric::default_sigma_max")]
    sigma_max: f64,
}

impl TryFrom<GeometricParams> for Geometric {
    type Error = ScheduleError;
    fn try_from(p: GeometricParams) -> Result<Self, Self::Error> {
        Self::new(p.sigma_min, p.sigma_max)
    }
}

impl Geometric {
    fn default_sigma_min() -> f64 {
        1e-4
    }
    fn default_sigma_max() -> f64 {
        20.0
    }

    /// Builds the schedule.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless `0 < σ_min < σ_max < ∞`.
    pub fn new(sigma_min: f64, sigma_max: f64) -> Result<Self, ScheduleError> {
        ensure_value(
            sigma_min > 0.0 && sigma_min.is_finite(),
            CONTEXT,
            "sigma_min",
            sigma_min,
            "a finite value > 0",
        )?;
        ensure_value(
            sigma_max > sigma_min && sigma_max.is_finite(),
            CONTEXT,
            "sigma_max",
            sigma_max,
            "a finite value > sigma_min",
        )?;
        Ok(Self { sigma_min, sigma_max })
    }

    /// `σ_min = σ(0)`.
    pub fn sigma_min(&self) -> f64 {
        self.sigma_min
    }

    /// `σ_max = σ(1)`.
    pub fn sigma_max(&self) -> f64 {
        self.sigma_max
    }

    fn log_ratio(&self) -> f64 {
        (self.sigma_max / self.sigma_min).ln()
    }
}

impl Default for Geometric {
    /// `σ_min = 1e-4`, `σ_max = 20` (SEDD).
    fn default() -> Self {
        Self { sigma_min: Self::default_sigma_min(), sigma_max: Self::default_sigma_max() }
    }
}

impl NoiseSchedule for Geometric {
    fn alpha(&self, t: f64) -> f64 {
        (-self.sigma(t)).exp()
    }

    fn alpha_prime(&self, t: f64) -> f64 {
        -self.sigma_prime(t) * self.alpha(t)
    }

    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.sigma_tensor(t).neg().exp()
    }

    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.sigma_prime_tensor(t.clone()).neg() * self.alpha_tensor(t)
    }

    fn one_minus_alpha(&self, t: f64) -> f64 {
        -(-self.sigma(t)).exp_m1()
    }

    fn sigma(&self, t: f64) -> f64 {
        (self.sigma_min.ln() + t * self.log_ratio()).exp()
    }

    fn sigma_prime(&self, t: f64) -> f64 {
        self.sigma(t) * self.log_ratio()
    }

    fn one_minus_alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        one_minus_exp_neg(self.sigma_tensor(t))
    }

    fn sigma_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.mul_scalar(self.log_ratio()).add_scalar(self.sigma_min.ln()).exp()
    }

    fn sigma_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.sigma_tensor(t).mul_scalar(self.log_ratio())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidInput;

    #[test]
    fn interpolates_geometrically() {
        let g = Geometric::default();
        assert!((g.sigma(0.0) - 1e-4).abs() < 1e-18);
        assert!((g.sigma(1.0) - 20.0).abs() < 1e-12);
        // Geometric mean at t = 1/2.
        assert!((g.sigma(0.5) - (1e-4f64 * 20.0).sqrt()).abs() < 1e-14);
        assert!((g.alpha(1.0) - (-20.0f64).exp()).abs() < 1e-20);
    }

    #[test]
    fn weight_is_sigma_prime_over_expm1_sigma() {
        let g = Geometric::default();
        for t in [0.01, 0.3, 0.9] {
            let expected = g.sigma_prime(t) / g.sigma(t).exp_m1();
            assert!((g.masked_elbo_weight(t) / expected - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        for (lo, hi, name) in [
            (0.0, 20.0, "sigma_min"),
            (-1.0, 20.0, "sigma_min"),
            (f64::NAN, 20.0, "sigma_min"),
            (1.0, 1.0, "sigma_max"),
            (1.0, 0.5, "sigma_max"),
            (1e-4, f64::INFINITY, "sigma_max"),
        ] {
            match Geometric::new(lo, hi) {
                Err(ScheduleError::Invalid(InvalidInput { name: n, .. })) => assert_eq!(n, name),
                other => panic!("({lo}, {hi}) gave {other:?}"),
            }
        }
    }
}
