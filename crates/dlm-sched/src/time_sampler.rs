//! [`TimeSampler`]: training-time draws of `t` — uniform, stratified (antithetic), clipped.

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::error::{ScheduleError, ensure_value};

const CONTEXT: &str = "time sampler";

/// How the `n` times of one batch are spread over the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stratification {
    /// Independent uniform draws.
    Independent,
    /// One draw per stratum: the `i`-th of `n` times is uniform on the `i`-th of `n` equal
    /// sub-intervals — MDLM's low-discrepancy sampler (Sahoo et al. 2024, App. D.3, after VDM,
    /// Kingma et al. 2021, App. I.1; their code calls it `antithetic_sampling`). It lowers the
    /// variance of a one-sample-per-sequence NELBO estimate without biasing it.
    Antithetic,
}

/// Draws training times `t ∈ [low, high]`, one per sequence (or per block, for BD3LM).
///
/// The deterministic core [`TimeSampler::times_from_uniforms`] maps given uniforms to times, so
/// tests can pin the noise; [`TimeSampler::sample`] draws the uniforms from a seeded RNG.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TimeSamplerParams")]
pub struct TimeSampler {
    low: f64,
    high: f64,
    stratification: Stratification,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeSamplerParams {
    low: f64,
    high: f64,
    stratification: Stratification,
}

impl TryFrom<TimeSamplerParams> for TimeSampler {
    type Error = ScheduleError;
    fn try_from(p: TimeSamplerParams) -> Result<Self, Self::Error> {
        Self::new(p.low, p.high, p.stratification)
    }
}

impl TimeSampler {
    /// Times uniform on `[low, high]`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless `0 ≤ low ≤ high ≤ 1`.
    pub fn new(low: f64, high: f64, stratification: Stratification) -> Result<Self, ScheduleError> {
        ensure_value((0.0..=1.0).contains(&low), CONTEXT, "low", low, "a value in [0, 1]")?;
        ensure_value((low..=1.0).contains(&high), CONTEXT, "high", high, "a value in [low, 1]")?;
        Ok(Self { low, high, stratification })
    }

    /// Independent `t ~ U[t_min, 1]` (SEDD's sampler, `t_min = 1e-3`).
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless `0 ≤ t_min ≤ 1`.
    pub fn uniform(t_min: f64) -> Result<Self, ScheduleError> {
        Self::new(t_min, 1.0, Stratification::Independent)
    }

    /// Stratified `t` on `[t_min, 1]`: MDLM's default (`t_min = 1e-3`).
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless `0 ≤ t_min ≤ 1`.
    pub fn antithetic(t_min: f64) -> Result<Self, ScheduleError> {
        Self::new(t_min, 1.0, Stratification::Antithetic)
    }

    /// BD3LM's clipped schedule: the mask rate is drawn from `U[β, ω]` (Arriola et al. 2025,
    /// §5.2), stratified as in their code. With the linear mask schedule `α = 1 − t` of BD3LM the
    /// mask rate is `t` itself, so this samples `t ~ U[β, ω]`; reported likelihoods still use
    /// `U[ε, 1]`. `β = ω = 1` is BD3LM's full masking for block size 1.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] unless `0 ≤ β ≤ ω ≤ 1`.
    pub fn clipped(beta: f64, omega: f64) -> Result<Self, ScheduleError> {
        ensure_value((0.0..=1.0).contains(&beta), CONTEXT, "beta", beta, "a value in [0, 1]")?;
        ensure_value(
            (beta..=1.0).contains(&omega),
            CONTEXT,
            "omega",
            omega,
            "a value in [beta, 1]",
        )?;
        Self::new(beta, omega, Stratification::Antithetic)
    }

    /// Lower end of the range.
    pub fn low(&self) -> f64 {
        self.low
    }

    /// Upper end of the range.
    pub fn high(&self) -> f64 {
        self.high
    }

    /// The stratification.
    pub fn stratification(&self) -> Stratification {
        self.stratification
    }

    /// Maps `n = uniforms.len()` uniforms `u_i ∈ [0, 1)` to times: `v_i = u_i` (independent) or
    /// `v_i = (i + u_i)/n` (stratified), then `t_i = low + (high − low)·v_i`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] for a `u_i` outside `[0, 1)`.
    pub fn times_from_uniforms(&self, uniforms: &[f64]) -> Result<Vec<f64>, ScheduleError> {
        let n = uniforms.len() as f64;
        uniforms
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                if !(0.0..1.0).contains(&u) {
                    return Err(ScheduleError::Invalid(InvalidInput::element(
                        CONTEXT,
                        "uniforms",
                        i,
                        u,
                        "a value in [0, 1)",
                    )));
                }
                let v = match self.stratification {
                    Stratification::Independent => u,
                    Stratification::Antithetic => (i as f64 + u) / n,
                };
                Ok(self.low + (self.high - self.low) * v)
            })
            .collect()
    }

    /// Draws `n` times with uniforms from `rng`.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<f64> {
        let uniforms: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        self.times_from_uniforms(&uniforms).expect("rng.random::<f64>() lies in [0, 1)")
    }
}

/// One discrete step in `1..=n_steps` per sequence of a batch of `batch`, stratified across the
/// batch: sequence `b` gets `⌊u_b·T⌋ + 1` with `u_b = (b + U_b)/batch`, `U_b ~ U[0, 1)` from
/// `rng` (the discrete-time form of [`Stratification::Antithetic`]: each step is drawn with
/// probability `1/T` and the batch covers `[0, 1)` evenly). The training-time draw of D3PM's
/// step and of Diffusion-LM's noise level.
///
/// # Panics
/// If `n_steps` is 0.
pub fn stratified_steps<R: Rng + ?Sized>(batch: usize, n_steps: usize, rng: &mut R) -> Vec<usize> {
    assert!(n_steps > 0, "at least one step to draw from");
    (0..batch)
        .map(|b| {
            let u = (b as f64 + rng.random::<f64>()) / batch as f64;
            ((u * n_steps as f64) as usize).min(n_steps - 1) + 1
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::InvalidInput;

    #[test]
    fn stratified_steps_cover_every_step_evenly() {
        let mut rng = StdRng::seed_from_u64(3);
        // A batch of T sequences gets each step 1..=T exactly once.
        let mut steps = stratified_steps(10, 10, &mut rng);
        steps.sort_unstable();
        assert_eq!(steps, (1..=10).collect::<Vec<_>>());
        // A batch of 2T gets each step exactly twice, in batch order.
        let steps = stratified_steps(20, 10, &mut rng);
        assert!(steps.windows(2).all(|w| w[0] <= w[1]));
        assert!((1..=10).all(|s| steps.iter().filter(|&&x| x == s).count() == 2));
        // Over many small batches, every step has frequency 1/T.
        let draws: Vec<usize> =
            (0..20_000).flat_map(|_| stratified_steps(3, 4, &mut rng)).collect();
        for step in 1..=4 {
            let share = draws.iter().filter(|&&s| s == step).count() as f64 / draws.len() as f64;
            assert!((share - 0.25).abs() < 0.01, "step {step}: {share}");
        }
    }

    #[test]
    fn antithetic_puts_one_time_in_each_stratum() {
        let sampler = TimeSampler::antithetic(0.0).unwrap();
        let times = sampler.times_from_uniforms(&[0.5, 0.0, 0.99, 0.25]).unwrap();
        assert_eq!(times, vec![0.125, 0.25, 0.7475, 0.8125]);
        let mut rng = StdRng::seed_from_u64(7);
        let times = sampler.sample(64, &mut rng);
        for (i, t) in times.iter().enumerate() {
            assert!(*t >= i as f64 / 64.0 && *t < (i + 1) as f64 / 64.0);
        }
    }

    #[test]
    fn ranges_map_affinely() {
        let mdlm = TimeSampler::antithetic(1e-3).unwrap();
        let t = mdlm.times_from_uniforms(&[0.0, 0.999_999]).unwrap();
        assert!((t[0] - 1e-3).abs() < 1e-15);
        assert!(t[1] < 1.0 && t[1] > 0.99);
        let bd3lm = TimeSampler::clipped(0.3, 0.8).unwrap();
        let t = bd3lm.times_from_uniforms(&[0.5]).unwrap();
        assert!((t[0] - 0.55).abs() < 1e-15);
        let full = TimeSampler::clipped(1.0, 1.0).unwrap();
        assert_eq!(full.times_from_uniforms(&[0.3, 0.7]).unwrap(), vec![1.0, 1.0]);
    }

    #[test]
    fn stratified_mean_has_lower_variance_than_independent() {
        // Variance of the batch mean of t over 2000 batches of 16: stratification must cut it by
        // far more than sampling noise could explain (expected ratio ≈ n² = 256 here).
        let mut rng = StdRng::seed_from_u64(1);
        let batch_mean_var = |s: TimeSampler, rng: &mut StdRng| {
            let means: Vec<f64> =
                (0..2000).map(|_| s.sample(16, rng).iter().sum::<f64>() / 16.0).collect();
            let mu = means.iter().sum::<f64>() / means.len() as f64;
            means.iter().map(|m| (m - mu).powi(2)).sum::<f64>() / means.len() as f64
        };
        let independent = batch_mean_var(TimeSampler::uniform(0.0).unwrap(), &mut rng);
        let stratified = batch_mean_var(TimeSampler::antithetic(0.0).unwrap(), &mut rng);
        assert!((independent - 1.0 / (12.0 * 16.0)).abs() < 0.1 / (12.0 * 16.0), "{independent}");
        assert!(stratified * 50.0 < independent, "{stratified} vs {independent}");
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let s = TimeSampler::uniform(1e-3).unwrap();
        let a = s.sample(8, &mut StdRng::seed_from_u64(3));
        let b = s.sample(8, &mut StdRng::seed_from_u64(3));
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_bad_ranges_and_uniforms() {
        assert!(matches!(
            TimeSampler::clipped(0.8, 0.3),
            Err(ScheduleError::Invalid(InvalidInput { name: "omega", .. }))
        ));
        assert!(matches!(
            TimeSampler::clipped(-0.1, 0.3),
            Err(ScheduleError::Invalid(InvalidInput { name: "beta", .. }))
        ));
        assert!(matches!(
            TimeSampler::uniform(f64::NAN),
            Err(ScheduleError::Invalid(InvalidInput { name: "low", .. }))
        ));
        assert!(matches!(
            TimeSampler::new(0.1, 1.5, Stratification::Independent),
            Err(ScheduleError::Invalid(InvalidInput { name: "high", .. }))
        ));
        let s = TimeSampler::uniform(0.0).unwrap();
        assert!(matches!(
            s.times_from_uniforms(&[0.2, 1.0]),
            Err(ScheduleError::Invalid(InvalidInput { index: Some(1), .. }))
        ));
    }
}
