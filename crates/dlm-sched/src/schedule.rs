//! The [`NoiseSchedule`] trait: the signal level `α(t)` and everything derived from it.

use burn::tensor::Tensor;

/// A noise schedule: the signal level `α(t)` of a diffusion process over `t ∈ [0, 1]`, with
/// `t = 0` clean and `t = 1` pure noise.
///
/// `α(t)` means the same thing for every family (see `docs/notation.md`):
/// - Gaussian diffusion: `z_t = √α(t)·x0 + √(1 − α(t))·ε` (DDPM's `ᾱ_t`, Ho et al. 2020, eq. 4);
/// - masked (absorbing) diffusion: a token is kept with probability `α(t)` and masked otherwise
///   (MDLM's `α_t`, Sahoo et al. 2024, §3.1).
///
/// Implementors provide `α` and `α′` twice: on `f64` (exact, for tests and host-side work) and on a
/// burn `Tensor<1>` (on device and differentiable, so a learnable schedule can be a burn `Module`,
/// see [`LearnedLinearLogSnr`](crate::LearnedLinearLogSnr)). Every derived quantity has a provided
/// method; a schedule overrides [`one_minus_alpha`](Self::one_minus_alpha) and
/// [`sigma`](Self::sigma) (and their tensor twins) where a closed form is more accurate than the
/// generic `1 − α` and `−ln α`, and every other provided method inherits that accuracy.
///
/// The trait is object safe: `Box<dyn NoiseSchedule>` works, and [`ScheduleKind`](crate::ScheduleKind)
/// selects a schedule from a config file.
///
/// # Domain
///
/// `t` is expected in `[0, 1]`. Outside it the result is the schedule's formula extrapolated (the
/// tabulated discrete schedules clamp `t` into `[0, 1]`); nothing panics.
pub trait NoiseSchedule {
    /// Signal level `α(t) ∈ [0, 1]`, non-increasing in `t`.
    fn alpha(&self, t: f64) -> f64;

    /// Time derivative `α′(t) = dα/dt ≤ 0`.
    fn alpha_prime(&self, t: f64) -> f64;

    /// `α(t)` element-wise on a device tensor; differentiable with respect to `t` and to any
    /// parameters of the schedule.
    ///
    /// # Shapes
    /// - `t`: `[n]` → `[n]`
    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1>;

    /// `α′(t)` element-wise on a device tensor.
    ///
    /// # Shapes
    /// - `t`: `[n]` → `[n]`
    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1>;

    /// Noise level `1 − α(t)`: the variance of the noise (Gaussian) or the mask probability
    /// (masked diffusion). Override with a closed form that does not cancel when `α → 1`.
    fn one_minus_alpha(&self, t: f64) -> f64 {
        1.0 - self.alpha(t)
    }

    /// Total noise `σ(t) = −ln α(t)` (SEDD's `σ̄(t)`, Lou et al. 2024, App. C.1; MDLM's
    /// `α_t = exp(−σ(t))`, Sahoo et al. 2024, App. E.1). Override with a `log1p` form where one
    /// exists.
    fn sigma(&self, t: f64) -> f64 {
        -self.alpha(t).ln()
    }

    /// Noise rate `σ′(t) = −α′(t)/α(t) ≥ 0`.
    fn sigma_prime(&self, t: f64) -> f64 {
        -self.alpha_prime(t) / self.alpha(t)
    }

    /// Log signal-to-noise ratio `λ(t) = ln(α/(1 − α)) = −σ(t) − ln(1 − α(t))` (VDM, Kingma et
    /// al. 2021, §3.2, eq. 5: `SNR = α²/σ²` in their notation, `α/(1 − α)` in ours).
    fn log_snr(&self, t: f64) -> f64 {
        -self.sigma(t) - self.one_minus_alpha(t).ln()
    }

    /// Weight of the continuous-time masked-diffusion NELBO, `w(t) = −α′(t)/(1 − α(t)) ≥ 0`
    /// (MDLM, Sahoo et al. 2024, §3.4, eq. 10): the loss is `E_t [w(t) · Σ_masked −log p_θ(x0 | z_t)]`.
    fn masked_elbo_weight(&self, t: f64) -> f64 {
        -self.alpha_prime(t) / self.one_minus_alpha(t)
    }

    /// The time at which the signal is `alpha`: `t ∈ [0, 1]` with `α(t) = alpha`, by bisection
    /// (`α` is non-increasing) to the precision of `f64`; `0` for `alpha ≥ α(0)` and `1` for
    /// `alpha ≤ α(1)`. Complementary masking reads the time of a mask's complement from it.
    fn time_of_alpha(&self, alpha: f64) -> f64 {
        if alpha >= self.alpha(0.0) {
            return 0.0;
        }
        if alpha <= self.alpha(1.0) {
            return 1.0;
        }
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        for _ in 0..64 {
            let mid = 0.5 * (lo + hi);
            if self.alpha(mid) > alpha {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    /// [`one_minus_alpha`](Self::one_minus_alpha) on a device tensor.
    ///
    /// # Shapes
    /// - `t`: `[n]` → `[n]`
    fn one_minus_alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.alpha_tensor(t).neg().add_scalar(1.0)
    }

    /// [`sigma`](Self::sigma) on a device tensor.
    ///
    /// # Shapes
    /// - `t`: `[n]` → `[n]`
    fn sigma_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.alpha_tensor(t).log().neg()
    }

    /// [`sigma_prime`](Self::sigma_prime) on a device tensor.
    ///
    /// # Shapes
    /// - `t`: `[n]` → `[n]`
    fn sigma_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.alpha_prime_tensor(t.clone()).neg() / self.alpha_tensor(t)
    }

    /// [`log_snr`](Self::log_snr) on a device tensor.
    ///
    /// # Shapes
    /// - `t`: `[n]` → `[n]`
    fn log_snr_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.sigma_tensor(t.clone()).neg() - self.one_minus_alpha_tensor(t).log()
    }

    /// [`masked_elbo_weight`](Self::masked_elbo_weight) on a device tensor.
    ///
    /// # Shapes
    /// - `t`: `[n]` → `[n]`
    fn masked_elbo_weight_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        self.alpha_prime_tensor(t.clone()).neg() / self.one_minus_alpha_tensor(t)
    }
}

/// A reference to a schedule is a schedule (so `&dyn NoiseSchedule` and `&S` can be passed where
/// a schedule is owned). Every method forwards, so overridden closed forms are kept.
impl<S: NoiseSchedule + ?Sized> NoiseSchedule for &S {
    fn alpha(&self, t: f64) -> f64 {
        (**self).alpha(t)
    }
    fn alpha_prime(&self, t: f64) -> f64 {
        (**self).alpha_prime(t)
    }
    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        (**self).alpha_tensor(t)
    }
    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        (**self).alpha_prime_tensor(t)
    }
    fn one_minus_alpha(&self, t: f64) -> f64 {
        (**self).one_minus_alpha(t)
    }
    fn sigma(&self, t: f64) -> f64 {
        (**self).sigma(t)
    }
    fn sigma_prime(&self, t: f64) -> f64 {
        (**self).sigma_prime(t)
    }
    fn log_snr(&self, t: f64) -> f64 {
        (**self).log_snr(t)
    }
    fn masked_elbo_weight(&self, t: f64) -> f64 {
        (**self).masked_elbo_weight(t)
    }
    fn time_of_alpha(&self, alpha: f64) -> f64 {
        (**self).time_of_alpha(alpha)
    }
    fn one_minus_alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        (**self).one_minus_alpha_tensor(t)
    }
    fn sigma_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        (**self).sigma_tensor(t)
    }
    fn sigma_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        (**self).sigma_prime_tensor(t)
    }
    fn log_snr_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        (**self).log_snr_tensor(t)
    }
    fn masked_elbo_weight_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        (**self).masked_elbo_weight_tensor(t)
    }
}
