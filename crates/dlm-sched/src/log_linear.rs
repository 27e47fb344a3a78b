//! MDLM's log-linear schedule: a mask probability linear in time.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{ScheduleError, ensure_value};
use crate::schedule::NoiseSchedule;

const CONTEXT: &str = "log-linear schedule";

/// Log-linear schedule of SEDD and MDLM:
///
/// `α(t) = 1 − (1 − ε)·t`, i.e. total noise `σ(t) = −log1p(−(1 − ε)·t)` — linear in `t` for the
/// mask probability `1 − α = (1 − ε)·t`, logarithmic for `σ`, hence the name (Lou et al. 2024,
/// App. C.1; MDLM, Sahoo et al. 2024, App. E.1 writes it with `ε = 0`, and its reference code's
/// `LogLinearNoise` uses `ε = 1e-3`). The floor `ε` (default `1e-3`) keeps `α(1) = ε > 0`, so
/// `σ(1) = −ln ε ≈ 6.91` stays finite.
///
/// Its masked-ELBO weight (MDLM, eq. 10) is exactly `−α′/(1 − α) = (1 − ε)/((1 − ε)·t) = 1/t`,
/// the `1/t` of MDLM's and LLaDA's losses.
///
/// LLaDA's "linear" masking (Nie et al. 2025, eq. 3: each token masked with probability `t`) is
/// this family, an `α` affine in `t`: its reference code masks with `p = (1 − ε)·t + ε`, i.e.
/// `α = (1 − ε)(1 − t)`, the same line with the floor moved from `t = 1` to `t = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LogLinearParams")]
pub struct LogLinear {
    eps: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLinearParams {
    #[serde(default = "LogLinear::default_eps")]
    eps: f64,
}

impl TryFrom<LogLinearParams> for LogLinear {
    type Error = ScheduleError;
    fn try_from(p: LogLinearParams) -> Result<Self, Self::Error> {
        Self::new(p.eps)
    }
}

impl LogLinear {
    fn default_eps() -> f64 {
        1e-3
    }

    /// Builds the schedule with floor `ε = α(1)`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless `0 < ε < 1`.
    pub fn new(eps: f64) -> Result<Self, ScheduleError> {
        ensure_value(eps > 0.0 && eps < 1.0, CONTEXT, "eps", eps, "a value in (0, 1)")?;
        Ok(Self { eps })
    }

    /// The floor `ε = α(1)`.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    fn slope(&self) -> f64 {
        1.0 - self.eps
    }
}

impl Default for LogLinear {
    /// `ε = 1e-3` (MDLM).
    fn default() -> Self {
        Self { eps: Self::default_eps() }
    }
}

impl NoiseSchedule for LogLinear {
    fn alpha(&self, t: f64) -> f64 {
        1.0 - self.slope() * t
    }

    fn alpha_prime(&self, _t: f64) -> f64 {
        -self.slope()
    }

    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        // (1 − t) + ε·t: `1 − t` is exact for t ∈ [1/2, 1], so α keeps its relative precision
        // as it falls to ε (1 − (1 − ε)·t would cancel).
        t.clone().neg().add_scalar(1.0) + t.mul_scalar(self.eps)
    }

    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.zeros_like().add_scalar(-self.slope())
    }

    fn one_minus_alpha(&self, t: f64) -> f64 {
        self.slope() * t
    }

    fn sigma(&self, t: f64) -> f64 {
        -(-self.slope() * t).ln_1p()
    }

    fn one_minus_alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.mul_scalar(self.slope())
    }

    fn sigma_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.mul_scalar(-self.slope()).log1p().neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidInput;

    #[test]
    fn the_time_of_a_signal_level_inverts_alpha() {
        // α(t) = 1 − (1 − ε)t, so t = (1 − α)/(1 − ε); outside [α(1), α(0)] the ends.
        let s = LogLinear::new(1e-3).unwrap();
        for alpha in [0.9, 0.5, 0.25, 0.01] {
            let t = (1.0 - alpha) / (1.0 - 1e-3);
            assert!((s.time_of_alpha(alpha) - t).abs() < 1e-12, "{alpha}");
        }
        assert_eq!((s.time_of_alpha(1.5), s.time_of_alpha(1e-4)), (0.0, 1.0));
    }

    #[test]
    fn weight_is_one_over_t() {
        let s = LogLinear::default();
        for t in [1e-6, 1e-3, 0.1, 0.37, 0.5, 0.999, 1.0] {
            let w = s.masked_elbo_weight(t);
            assert!((w * t - 1.0).abs() < 4.0 * f64::EPSILON, "t = {t}: w·t = {}", w * t);
        }
    }

    #[test]
    fn endpoints_and_total_noise() {
        let s = LogLinear::default();
        assert_eq!(s.alpha(0.0), 1.0);
        assert!((s.alpha(1.0) - 1e-3).abs() < 1e-15);
        // σ_max = −ln ε ≈ 6.9078.
        assert!((s.sigma(1.0) - (1e-3f64).ln().abs()).abs() < 1e-12);
        // σ(t) ≈ (1 − ε)·t near 0, kept by log1p.
        assert!((s.sigma(1e-12) / (0.999 * 1e-12) - 1.0).abs() < 1e-10);
    }

    #[test]
    fn rejects_eps_outside_the_open_unit_interval() {
        for eps in [0.0, 1.0, -0.5, 2.0, f64::NAN] {
            assert!(matches!(
                LogLinear::new(eps),
                Err(ScheduleError::Invalid(InvalidInput { name: "eps", .. }))
            ));
        }
    }
}
