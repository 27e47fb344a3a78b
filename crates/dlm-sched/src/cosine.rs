//! Cosine schedule of Nichol & Dhariwal (improved DDPM).

use std::f64::consts::FRAC_PI_2;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{ScheduleError, ensure_value};
use crate::schedule::NoiseSchedule;

const CONTEXT: &str = "cosine schedule";

/// Cosine schedule of improved DDPM (Nichol & Dhariwal 2021, §3.2, eq. 17), in continuous time:
///
/// `α(t) = f(t)/f(0)`, `f(t) = cos²(u(t))`, `u(t) = (t + s)/(1 + s) · π/2`,
///
/// with offset `s = 0.008` by default (so that `β` is not vanishingly small near `t = 0`). The
/// discrete version clips `β_t` at `0.999`; in continuous time no clipping is needed and
/// `α(1) = 0` up to rounding.
///
/// `α′(t) = −sin(2u)·π/(2(1 + s)) / cos²(u₀)` with `u₀ = u(0)`, and
/// `1 − α = sin(u − u₀)·sin(u + u₀)/cos²(u₀)` (from `cos²a − cos²b = sin(b − a)·sin(b + a)`),
/// which does not cancel as `t → 0`.
///
/// Not to be confused with MDLM's "cosine" (`α = ε + (1 − ε)·cos(πt/2)`) or dLLM's
/// (`α = 1 − cos(π/2·(1 − t))`): see `docs/schedules.md`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CosineParams")]
pub struct Cosine {
    s: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CosineParams {
    #[serde(default = "Cosine::default_s")]
    s: f64,
}

impl TryFrom<CosineParams> for Cosine {
    type Error = ScheduleError;
    fn try_from(p: CosineParams) -> Result<Self, Self::Error> {
        Self::new(p.s)
    }
}

impl Cosine {
    fn default_s() -> f64 {
        0.008
    }

    /// Builds the schedule with offset `s`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless `s` is finite and `≥ 0`.
    pub fn new(s: f64) -> Result<Self, ScheduleError> {
        ensure_value(s.is_finite() && s >= 0.0, CONTEXT, "s", s, "a finite value >= 0")?;
        Ok(Self { s })
    }

    /// The offset `s`.
    pub fn s(&self) -> f64 {
        self.s
    }

    /// `du/dt = π/(2(1 + s))`.
    fn angle_rate(&self) -> f64 {
        FRAC_PI_2 / (1.0 + self.s)
    }

    fn angle(&self, t: f64) -> f64 {
        (t + self.s) * self.angle_rate()
    }

    fn angle_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.add_scalar(self.s).mul_scalar(self.angle_rate())
    }

    /// `f(0) = cos²(u₀)`.
    fn f0(&self) -> f64 {
        self.angle(0.0).cos().powi(2)
    }
}

impl Default for Cosine {
    /// `s = 0.008` (Nichol & Dhariwal 2021).
    fn default() -> Self {
        Self { s: Self::default_s() }
    }
}

impl NoiseSchedule for Cosine {
    fn alpha(&self, t: f64) -> f64 {
        self.angle(t).cos().powi(2) / self.f0()
    }

    fn alpha_prime(&self, t: f64) -> f64 {
        -(2.0 * self.angle(t)).sin() * self.angle_rate() / self.f0()
    }

    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.angle_tensor(t).cos().powi_scalar(2).div_scalar(self.f0())
    }

    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.angle_tensor(t).mul_scalar(2.0).sin().mul_scalar(-self.angle_rate() / self.f0())
    }

    fn one_minus_alpha(&self, t: f64) -> f64 {
        let (u, u0) = (self.angle(t), self.angle(0.0));
        (u - u0).sin() * (u + u0).sin() / self.f0()
    }

    fn one_minus_alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        let u0 = self.angle(0.0);
        let u = self.angle_tensor(t);
        (u.clone().sub_scalar(u0).sin() * u.add_scalar(u0).sin()).div_scalar(self.f0())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidInput;

    #[test]
    fn matches_the_improved_ddpm_formula() {
        let c = Cosine::default();
        let f = |t: f64| (((t + 0.008) / 1.008) * FRAC_PI_2).cos().powi(2);
        for t in [0.0, 0.1, 0.5, 0.9] {
            assert!((c.alpha(t) - f(t) / f(0.0)).abs() < 1e-14, "t = {t}");
        }
        assert_eq!(c.alpha(0.0), 1.0);
        assert!(c.alpha(1.0) < 1e-30);
        // Half-way: cos²((0.508/1.008)·π/2)/cos²((0.008/1.008)·π/2) ≈ 0.493844.
        assert!((c.alpha(0.5) - 0.493_843_590_440_6).abs() < 1e-12);
    }

    #[test]
    fn one_minus_alpha_keeps_precision_near_t0() {
        let c = Cosine::default();
        let t = 1e-10;
        // 1 − α ≈ −α′(0)·t to first order.
        let expected = -c.alpha_prime(0.0) * t;
        assert!((c.one_minus_alpha(t) / expected - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_offsets() {
        for s in [-1e-3, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                Cosine::new(s),
                Err(ScheduleError::Invalid(InvalidInput { name: "s", .. }))
            ));
        }
    }
}
