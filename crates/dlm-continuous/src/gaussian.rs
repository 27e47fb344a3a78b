//! Gaussian diffusion in closed form: the forward marginal, the posterior, DDPM and DDIM steps.

use burn::tensor::Tensor;

/// `z_t = √α·x0 + √(1 − α)·ε` (DDPM, Ho et al. 2020, eq. 4), for one `α` per sequence.
///
/// # Shapes
/// - `x0`, `noise`: `[batch, seq_len, dim]`; `alpha`: `[batch]` → `[batch, seq_len, dim]`
pub fn forward_sample(x0: Tensor<3>, alpha: Tensor<1>, noise: Tensor<3>) -> Tensor<3> {
    let batch = x0.dims()[0];
    let alpha = alpha.reshape([batch, 1, 1]);
    x0 * alpha.clone().sqrt() + noise * alpha.neg().add_scalar(1.0).sqrt()
}

/// Mean and variance of the posterior `q(z_s | z_t, x0)` for `s < t` (DDPM eqs. 6–7, with
/// `α_{t|s} = α_t/α_s` between arbitrary times, as in VDM, Kingma et al. 2021, eq. 32):
///
/// `μ = [√α_s·(1 − α_{t|s})/(1 − α_t)]·x0 + [√α_{t|s}·(1 − α_s)/(1 − α_t)]·z_t`,
/// `σ² = (1 − α_{t|s})(1 − α_s)/(1 − α_t)`.
///
/// Scalars `alpha_t ≤ alpha_s ≤ 1` (one step of a sampler). The ends are taken as limits: at
/// `α_t = 1` nothing is noised and `z_s = z_t` exactly; at `α_s = 0` (so `α_t = 0`) `z_s` is
/// pure noise, `N(0, I)`.
///
/// # Shapes
/// - `x0`, `z_t`: `[batch, seq_len, dim]` → mean of the same shape
pub fn posterior(x0: Tensor<3>, z_t: Tensor<3>, alpha_t: f64, alpha_s: f64) -> (Tensor<3>, f64) {
    if alpha_t >= 1.0 {
        return (z_t, 0.0);
    }
    if alpha_s <= 0.0 {
        return (z_t.zeros_like(), 1.0);
    }
    let alpha_ts = alpha_t / alpha_s;
    let one_minus_t = 1.0 - alpha_t;
    let coef_x0 = alpha_s.sqrt() * (1.0 - alpha_ts) / one_minus_t;
    let coef_z = alpha_ts.sqrt() * (1.0 - alpha_s) / one_minus_t;
    let variance = (1.0 - alpha_ts) * (1.0 - alpha_s) / one_minus_t;
    (x0.mul_scalar(coef_x0) + z_t.mul_scalar(coef_z), variance.max(0.0))
}

/// One DDPM ancestral step from `t` to `s`: `z_s = μ + σ·ε` with the posterior at the predicted
/// `x̂0` (Ho et al. 2020, Alg. 2, for arbitrary `s < t`).
///
/// # Shapes
/// - `x0_hat`, `z_t`, `noise`: `[batch, seq_len, dim]` → `[batch, seq_len, dim]`
pub fn ddpm_step(
    x0_hat: Tensor<3>,
    z_t: Tensor<3>,
    noise: Tensor<3>,
    alpha_t: f64,
    alpha_s: f64,
) -> Tensor<3> {
    let (mean, variance) = posterior(x0_hat, z_t, alpha_t, alpha_s);
    mean + noise.mul_scalar(variance.sqrt())
}

/// One DDIM step (Song et al. 2021a, eq. 12):
///
/// `z_s = √α_s·x̂0 + √(1 − α_s − σ²)·ε̂ + σ·ε`, `ε̂ = (z_t − √α_t·x̂0)/√(1 − α_t)`,
/// `σ = η·√((1 − α_s)/(1 − α_t))·√(1 − α_t/α_s)`.
///
/// `η = 0` is deterministic; `η = 1` has DDPM's variance. At `α_t = 1` the step returns `z_t`
/// (`z_t = x0` there); at `α_s = 0` (so `α_t = 0` and `z_t` is pure noise, `ε̂ = z_t`) it
/// returns `√(1 − η²)·z_t + η·ε`, unit variance, `z_t` itself for `η = 0`.
///
/// # Shapes
/// - `x0_hat`, `z_t`, `noise`: `[batch, seq_len, dim]` → `[batch, seq_len, dim]`
pub fn ddim_step(
    x0_hat: Tensor<3>,
    z_t: Tensor<3>,
    noise: Tensor<3>,
    alpha_t: f64,
    alpha_s: f64,
    eta: f64,
) -> Tensor<3> {
    if alpha_t >= 1.0 {
        return z_t;
    }
    if alpha_s <= 0.0 {
        return z_t.mul_scalar((1.0 - eta * eta).max(0.0).sqrt()) + noise.mul_scalar(eta);
    }
    let sigma = eta
        * ((1.0 - alpha_s) / (1.0 - alpha_t)).sqrt()
        * (1.0 - alpha_t / alpha_s).max(0.0).sqrt();
    let eps_hat =
        (z_t - x0_hat.clone().mul_scalar(alpha_t.sqrt())).div_scalar((1.0 - alpha_t).sqrt());
    let direction = (1.0 - alpha_s - sigma * sigma).max(0.0).sqrt();
    x0_hat.mul_scalar(alpha_s.sqrt()) + eps_hat.mul_scalar(direction) + noise.mul_scalar(sigma)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    #[test]
    fn forward_marginals_have_the_right_mean_and_variance() {
        let device = Device::flex();
        let n = 200_000;
        let x0 = Tensor::<3>::ones([1, n, 1], &device).mul_scalar(1.5);
        let noise = Tensor::<3>::random([1, n, 1], Distribution::Normal(0.0, 1.0), &device);
        let z = forward_sample(x0, Tensor::from_floats([0.36], &device), noise);
        let mean = z.clone().mean().into_scalar::<f64>();
        let variance = (z.sub_scalar(mean)).powi_scalar(2).mean().into_scalar::<f64>();
        assert!((mean - 0.6 * 1.5).abs() < 0.01, "{mean}");
        assert!((variance - 0.64).abs() < 0.01, "{variance}");
    }

    #[test]
    fn posterior_matches_bayes_for_scalar_gaussians() {
        // q(z_s | z_t, x0) ∝ q(z_t | z_s)·q(z_s | x0): a product of Gaussians in z_s.
        let device = Device::flex();
        let (alpha_t, alpha_s, x0, z_t): (f64, f64, f64, f64) = (0.3, 0.7, 1.2, -0.4);
        let alpha_ts = alpha_t / alpha_s;
        // q(z_t | z_s) = N(√α_{t|s} z_s, 1 − α_{t|s}) as a function of z_s: precision α_{t|s}/(1 − α_{t|s}).
        let precision_1 = alpha_ts / (1.0 - alpha_ts);
        let mean_1 = z_t / alpha_ts.sqrt();
        let precision_2 = 1.0 / (1.0 - alpha_s);
        let mean_2 = alpha_s.sqrt() * x0;
        let precision = precision_1 + precision_2;
        let bayes_mean = (precision_1 * mean_1 + precision_2 * mean_2) / precision;
        let (mean, variance) = posterior(
            Tensor::from_floats([[[x0 as f32]]], &device),
            Tensor::from_floats([[[z_t as f32]]], &device),
            alpha_t,
            alpha_s,
        );
        assert!((mean.into_scalar::<f64>() - bayes_mean).abs() < 1e-6);
        assert!((variance - 1.0 / precision).abs() < 1e-12);
    }

    #[test]
    fn ddim_with_eta_one_has_the_ddpm_variance_and_zero_is_deterministic() {
        let device = Device::flex();
        let x0 = Tensor::<3>::from_floats([[[0.5]]], &device);
        let z_t = Tensor::<3>::from_floats([[[-1.0]]], &device);
        let zero = Tensor::<3>::zeros([1, 1, 1], &device);
        let one = Tensor::<3>::ones([1, 1, 1], &device);
        let (alpha_t, alpha_s) = (0.4, 0.8);
        // With the noise as a probe, the noise coefficient of a step is its standard deviation.
        let ddim_sd = ddim_step(x0.clone(), z_t.clone(), one.clone(), alpha_t, alpha_s, 1.0)
            .into_scalar::<f64>()
            - ddim_step(x0.clone(), z_t.clone(), zero.clone(), alpha_t, alpha_s, 1.0)
                .into_scalar::<f64>();
        let (_, variance) = posterior(x0.clone(), z_t.clone(), alpha_t, alpha_s);
        assert!((ddim_sd - variance.sqrt()).abs() < 1e-6);
        // The DDIM(η = 1) mean equals the DDPM posterior mean.
        let ddim_mean = ddim_step(x0.clone(), z_t.clone(), zero.clone(), alpha_t, alpha_s, 1.0)
            .into_scalar::<f64>();
        let ddpm_mean =
            ddpm_step(x0.clone(), z_t.clone(), zero, alpha_t, alpha_s).into_scalar::<f64>();
        assert!((ddim_mean - ddpm_mean).abs() < 1e-6);
        let a = ddim_step(x0.clone(), z_t.clone(), one.clone(), alpha_t, alpha_s, 0.0)
            .into_scalar::<f64>();
        let b =
            ddim_step(x0, z_t, one.mul_scalar(-3.0), alpha_t, alpha_s, 0.0).into_scalar::<f64>();
        assert_eq!(a, b, "η = 0 ignores the noise");
    }

    #[test]
    fn steps_at_the_ends_of_the_schedule_stay_finite() {
        let device = Device::flex();
        let x0 = Tensor::<3>::from_floats([[[0.5, -2.0]]], &device);
        let z_t = Tensor::<3>::from_floats([[[0.7, 1.1]]], &device);
        let noise = Tensor::<3>::from_floats([[[0.3, -0.2]]], &device);
        let host = |t: Tensor<3>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        // α_t = 1: nothing to denoise, the state is kept.
        for step in [
            ddpm_step(x0.clone(), z_t.clone(), noise.clone(), 1.0, 1.0),
            ddim_step(x0.clone(), z_t.clone(), noise.clone(), 1.0, 1.0, 0.5),
        ] {
            assert_eq!(host(step), host(z_t.clone()));
        }
        // α_s = 0: pure noise; DDPM draws it fresh, deterministic DDIM keeps z_t (= ε̂).
        assert_eq!(host(ddpm_step(x0.clone(), z_t.clone(), noise.clone(), 0.0, 0.0)), host(noise));
        let ddim = ddim_step(x0, z_t.clone(), Tensor::zeros([1, 1, 2], &device), 0.0, 0.0, 0.0);
        assert_eq!(host(ddim), host(z_t));
    }
}
