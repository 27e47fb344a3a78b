//! A learnable schedule: VDM's linear log-SNR with learned endpoints, as a burn `Module`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::{sigmoid, softplus};
use burn::tensor::{Device, Tensor};

use crate::error::{ScheduleError, ensure_value};
use crate::schedule::NoiseSchedule;

const CONTEXT: &str = "learned linear log-SNR schedule";

/// Configuration of [`LearnedLinearLogSnr`]: the initial endpoints `γ(0)` and `γ(1)`.
#[derive(Config, Debug)]
pub struct LearnedLinearLogSnrConfig {
    /// Initial `γ(0) = −log-SNR(0)`; Plaid (Gulrajani & Hashimoto 2023) starts at `−3`.
    #[config(default = -3.0)]
    pub gamma_min: f64,
    /// Initial `γ(1) = −log-SNR(1)`; Plaid starts at `6`.
    #[config(default = 6.0)]
    pub gamma_max: f64,
}

impl LearnedLinearLogSnrConfig {
    /// Creates the module on `device`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless both endpoints are finite and
    /// `gamma_min < gamma_max`.
    pub fn init(&self, device: &Device) -> Result<LearnedLinearLogSnr, ScheduleError> {
        ensure_value(
            self.gamma_min.is_finite(),
            CONTEXT,
            "gamma_min",
            self.gamma_min,
            "a finite value",
        )?;
        ensure_value(
            self.gamma_max.is_finite() && self.gamma_max > self.gamma_min,
            CONTEXT,
            "gamma_max",
            self.gamma_max,
            "a finite value > gamma_min",
        )?;
        let span = self.gamma_max - self.gamma_min;
        // Inverse softplus, so that softplus(raw) = span at initialisation.
        let raw_span = span.exp_m1().ln();
        Ok(LearnedLinearLogSnr {
            gamma_min: Param::from_tensor(Tensor::from_floats([self.gamma_min as f32], device)),
            raw_span: Param::from_tensor(Tensor::from_floats([raw_span as f32], device)),
        })
    }
}

/// Learnable Gaussian schedule with a linear `γ(t) = −log-SNR(t)` and trainable endpoints (VDM,
/// Kingma et al. 2021, §3.2, eqs. 3–5 for `α² = sigmoid(−γ)`; its linear schedule with learned
/// endpoints; Plaid, Gulrajani & Hashimoto 2023, learns the same endpoints):
///
/// `γ(t) = γ_min + Δ·t`, `Δ = softplus(ρ) > 0`, `α(t) = sigmoid(−γ(t))`,
///
/// so `1 − α = sigmoid(γ)`, `σ = −ln α = softplus(γ)`, `log-SNR = −γ` exactly, and
/// `α′ = −α·(1 − α)·Δ`. The softplus keeps `γ` increasing whatever the optimiser does.
///
/// The tensor path is differentiable in `t` and in both parameters; the `f64` path reads the
/// parameters back from the device on every call (a synchronisation: use it for host-side work,
/// not in a loop).
#[derive(Module, Debug)]
pub struct LearnedLinearLogSnr {
    /// `γ_min = γ(0)`, shape `[1]`.
    gamma_min: Param<Tensor<1>>,
    /// `ρ` with `Δ = softplus(ρ) = γ(1) − γ(0)`, shape `[1]`.
    raw_span: Param<Tensor<1>>,
}

impl LearnedLinearLogSnr {
    /// `γ(t)` on device.
    ///
    /// # Shapes
    /// - `t`: `[n]` → `[n]`
    pub fn gamma(&self, t: Tensor<1>) -> Tensor<1> {
        t * self.span() + self.gamma_min.val()
    }

    /// `Δ = γ(1) − γ(0)`, shape `[1]`.
    fn span(&self) -> Tensor<1> {
        softplus(self.raw_span.val(), 1.0)
    }

    /// Current `(γ(0), γ(1))`, read back to the host.
    pub fn endpoints(&self) -> (f64, f64) {
        let gamma_min = self.gamma_min.val().into_scalar::<f64>();
        let span = self.span().into_scalar::<f64>();
        (gamma_min, gamma_min + span)
    }

    fn gamma_host(&self, t: f64) -> (f64, f64) {
        let (gamma_min, gamma_max) = self.endpoints();
        (gamma_min + (gamma_max - gamma_min) * t, gamma_max - gamma_min)
    }
}

fn sigmoid_f64(x: f64) -> f64 {
    if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) }
}

fn softplus_f64(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl NoiseSchedule for LearnedLinearLogSnr {
    fn alpha(&self, t: f64) -> f64 {
        sigmoid_f64(-self.gamma_host(t).0)
    }

    fn alpha_prime(&self, t: f64) -> f64 {
        let (gamma, span) = self.gamma_host(t);
        -sigmoid_f64(-gamma) * sigmoid_f64(gamma) * span
    }

    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        sigmoid(self.gamma(t).neg())
    }

    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        let gamma = self.gamma(t);
        (sigmoid(gamma.clone().neg()) * sigmoid(gamma)).neg() * self.span()
    }

    fn one_minus_alpha(&self, t: f64) -> f64 {
        sigmoid_f64(self.gamma_host(t).0)
    }

    fn sigma(&self, t: f64) -> f64 {
        softplus_f64(self.gamma_host(t).0)
    }

    fn log_snr(&self, t: f64) -> f64 {
        -self.gamma_host(t).0
    }

    fn one_minus_alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        sigmoid(self.gamma(t))
    }

    fn sigma_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        softplus(self.gamma(t), 1.0)
    }

    fn log_snr_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.gamma(t).neg()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::InvalidInput;

    #[test]
    fn initial_endpoints_and_closed_forms() {
        let device = Device::flex();
        let s = LearnedLinearLogSnrConfig::new().init(&device).unwrap();
        let (g0, g1) = s.endpoints();
        assert!((g0 + 3.0).abs() < 1e-6 && (g1 - 6.0).abs() < 1e-5, "{g0} {g1}");
        assert!((s.alpha(0.0) - sigmoid_f64(3.0)).abs() < 1e-6);
        assert!((s.log_snr(1.0) + 6.0).abs() < 1e-5);
        assert!((s.sigma(0.5) + s.alpha(0.5).ln()).abs() < 1e-12);
    }

    #[test]
    fn gradients_reach_both_endpoints() {
        let device = Device::flex().autodiff();
        let s = LearnedLinearLogSnrConfig::new().init(&device).unwrap();
        let t = Tensor::<1>::from_floats([0.1, 0.5, 0.9], &device);
        // d/dγ_min Σ α = Σ −α(1 − α); d/dρ includes a factor t·softplus′(ρ).
        let grads = s.alpha_tensor(t).sum().backward();
        let g_min = s.gamma_min.grad(&grads).unwrap().into_scalar::<f64>();
        let g_span = s.raw_span.grad(&grads).unwrap().into_scalar::<f64>();
        let expected_min: f64 = [0.1, 0.5, 0.9]
            .iter()
            .map(|&t| {
                let a = sigmoid_f64(3.0 - 9.0 * t);
                -a * (1.0 - a)
            })
            .sum();
        assert!((g_min - expected_min).abs() < 1e-5, "{g_min} vs {expected_min}");
        assert!(g_span < 0.0, "a larger span lowers α: {g_span}");
    }

    #[test]
    fn rejects_bad_endpoints() {
        let device = Device::flex();
        let bad = LearnedLinearLogSnrConfig::new().with_gamma_max(-4.0).init(&device);
        assert!(matches!(bad, Err(ScheduleError::Invalid(InvalidInput { name: "gamma_max", .. }))));
        let nan = LearnedLinearLogSnrConfig::new().with_gamma_min(f64::NAN).init(&device);
        assert!(matches!(nan, Err(ScheduleError::Invalid(InvalidInput { name: "gamma_min", .. }))));
    }
}
