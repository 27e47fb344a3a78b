//! Diffusion-LM's square-root schedule, in continuous time.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{ScheduleError, ensure_value};
use crate::schedule::NoiseSchedule;

const CONTEXT: &str = "square-root schedule";

/// Square-root schedule of Diffusion-LM (Li et al. 2022, App. A):
///
/// `α(t) = 1 − √(t + s)`, `s = 1e-4` by default,
///
/// which starts at `α(0) = 1 − √s = 0.99` (already noisy) and adds noise fast at first — the
/// paper's remedy for denoising near `t = 0` being too easy for text. Since `1 − √(t + s)` would
/// turn negative for `t > 1 − s`, `α` is clamped at `0` there (`α′ = 0`, `σ = ∞`).
///
/// `α′(t) = −1/(2√(t + s))`, `1 − α = √(t + s)`, `σ = −log1p(−√(t + s))`.
///
/// The reference code does not use this function directly but its `T`-step discretisation,
/// which is [`DiscreteSchedule::square_root`](crate::DiscreteSchedule::square_root).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SquareRootParams")]
pub struct SquareRoot {
    s: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SquareRootParams {
    #[serde(default = "SquareRoot::default_s")]
    s: f64,
}

impl TryFrom<SquareRootParams> for SquareRoot {
    type Error = ScheduleError;
    fn try_from(p: SquareRootParams) -> Result<Self, Self::Error> {
        Self::new(p.s)
    }
}

impl SquareRoot {
    pub(crate) fn default_s() -> f64 {
        1e-4
    }

    /// Builds the schedule with offset `s`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless `0 ≤ s < 1`.
    pub fn new(s: f64) -> Result<Self, ScheduleError> {
        ensure_value((0.0..1.0).contains(&s), CONTEXT, "s", s, "a value in [0, 1)")?;
        Ok(Self { s })
    }

    /// The offset `s`.
    pub fn s(&self) -> f64 {
        self.s
    }

    /// `√(t + s)` capped at 1, the noise level.
    fn root(&self, t: f64) -> f64 {
        (t + self.s).sqrt().min(1.0)
    }

    fn root_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        t.add_scalar(self.s).sqrt().clamp_max(1.0)
    }
}

impl Default for SquareRoot {
    /// `s = 1e-4` (Diffusion-LM).
    fn default() -> Self {
        Self { s: Self::default_s() }
    }
}

impl NoiseSchedule for SquareRoot {
    fn alpha(&self, t: f64) -> f64 {
        1.0 - self.root(t)
    }

    fn alpha_prime(&self, t: f64) -> f64 {
        if t + self.s >= 1.0 { 0.0 } else { -0.5 / (t + self.s).sqrt() }
    }

    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.root_tensor(t).neg().add_scalar(1.0)
    }

    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        let shifted = t.add_scalar(self.s);
        let clamped = shifted.clone().greater_equal_elem(1.0);
        shifted.sqrt().recip().mul_scalar(-0.5).mask_fill(clamped, 0.0)
    }

    fn one_minus_alpha(&self, t: f64) -> f64 {
        self.root(t)
    }

    fn sigma(&self, t: f64) -> f64 {
        -(-self.root(t)).ln_1p()
    }

    fn one_minus_alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.root_tensor(t)
    }

    fn sigma_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.root_tensor(t).neg().log1p().neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidInput;

    #[test]
    fn matches_the_paper_formula_and_clamps() {
        let s = SquareRoot::default();
        assert!((s.alpha(0.0) - 0.99).abs() < 1e-15);
        assert!((s.alpha(0.25) - (1.0 - 0.2501f64.sqrt())).abs() < 1e-15);
        assert_eq!(s.alpha(1.0), 0.0);
        assert_eq!(s.alpha_prime(1.0), 0.0);
        assert_eq!(s.sigma(1.0), f64::INFINITY);
        assert!((s.alpha_prime(0.0) + 50.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_offsets() {
        for v in [-1e-4, 1.0, f64::NAN] {
            assert!(matches!(
                SquareRoot::new(v),
                Err(ScheduleError::Invalid(InvalidInput { name: "s", .. }))
            ));
        }
    }
}
