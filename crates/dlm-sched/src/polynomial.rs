//! Polynomial schedule `α = 1 − tⁿ`.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{ScheduleError, ensure_value};
use crate::schedule::NoiseSchedule;

const CONTEXT: &str = "polynomial schedule";

/// Polynomial schedule `α(t) = 1 − tⁿ`, `n > 0`.
///
/// The mask probability is `tⁿ`: `n = 1` is the linear mask schedule `α = 1 − t` (masked
/// diffusion without a floor), `n > 1` keeps tokens longer and masks late, `n < 1` masks early.
/// The default is the cubic, `n = 3`.
///
/// Discrete Flow Matching's polynomial scheduler (Gat et al. 2024; `PolynomialConvexScheduler` of
/// its reference library) is a different family: there `κ(s) = sⁿ` is the probability of the
/// clean token with `s = 0` noise, which in our time is `α(t) = (1 − t)ⁿ`, not `1 − tⁿ`. The two
/// agree only at `n = 1` (see `docs/schedules.md`).
///
/// `α′ = −n·tⁿ⁻¹`, `1 − α = tⁿ`, `σ = −log1p(−tⁿ)`, masked-ELBO weight `n/t`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PolynomialParams")]
pub struct Polynomial {
    exponent: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolynomialParams {
    #[serde(default = "Polynomial::default_exponent")]
    exponent: f64,
}

impl TryFrom<PolynomialParams> for Polynomial {
    type Error = ScheduleError;
    fn try_from(p: PolynomialParams) -> Result<Self, Self::Error> {
        Self::new(p.exponent)
    }
}

impl Polynomial {
    fn default_exponent() -> f64 {
        3.0
    }

    /// Builds `α = 1 − tⁿ` with `n = exponent`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless the exponent is finite and `> 0`.
    pub fn new(exponent: f64) -> Result<Self, ScheduleError> {
        ensure_value(
            exponent.is_finite() && exponent > 0.0,
            CONTEXT,
            "exponent",
            exponent,
            "a finite value > 0",
        )?;
        Ok(Self { exponent })
    }

    /// The exponent `n`.
    pub fn exponent(&self) -> f64 {
        self.exponent
    }
}

impl Default for Polynomial {
    /// `n = 3`, the cubic.
    fn default() -> Self {
        Self { exponent: Self::default_exponent() }
    }
}

impl NoiseSchedule for Polynomial {
    fn alpha(&self, t: f64) -> f64 {
        1.0 - self.one_minus_alpha(t)
    }

    fn alpha_prime(&self, t: f64) -> f64 {
        -self.exponent * t.powf(self.exponent - 1.0)
    }

    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.one_minus_alpha_tensor(t).neg().add_scalar(1.0)
    }

    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.powf_scalar(self.exponent - 1.0).mul_scalar(-self.exponent)
    }

    fn one_minus_alpha(&self, t: f64) -> f64 {
        t.powf(self.exponent)
    }

    fn sigma(&self, t: f64) -> f64 {
        -(-self.one_minus_alpha(t)).ln_1p()
    }

    /// `n/t`: the closed form, which also gives the limit `+∞` at `t = 0` where
    /// `−α′/(1 − α)` would be `0/0` for `n > 1`.
    fn masked_elbo_weight(&self, t: f64) -> f64 {
        self.exponent / t
    }

    fn one_minus_alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.powf_scalar(self.exponent)
    }

    fn masked_elbo_weight_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.recip().mul_scalar(self.exponent)
    }

    fn sigma_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.one_minus_alpha_tensor(t).neg().log1p().neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidInput;

    #[test]
    fn cubic_values_and_weight() {
        let p = Polynomial::default();
        assert!((p.alpha(0.5) - 0.875).abs() < 1e-15);
        assert!((p.alpha_prime(0.5) + 0.75).abs() < 1e-15);
        // w = n/t.
        assert!((p.masked_elbo_weight(0.25) - 12.0).abs() < 1e-12);
        assert_eq!(p.masked_elbo_weight(0.0), f64::INFINITY);
        assert_eq!(p.alpha(0.0), 1.0);
        assert_eq!(p.alpha(1.0), 0.0);
    }

    #[test]
    fn rejects_non_positive_exponents() {
        for n in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                Polynomial::new(n),
                Err(ScheduleError::Invalid(InvalidInput { name: "exponent", .. }))
            ));
        }
    }
}
