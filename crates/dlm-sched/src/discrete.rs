//! Discrete-time schedules: `T` steps given by their `β_i`, read in continuous time.

use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::error::{ScheduleError, ensure_value};
use crate::invalid::ensure_steps;
use crate::schedule::NoiseSchedule;
use crate::square_root::SquareRoot;

const CONTEXT: &str = "discrete schedule";

/// The largest `β` of the improved-DDPM discretisation (Nichol & Dhariwal 2021, §3.2), which the
/// Diffusion-LM reference code inherits.
pub const MAX_BETA: f64 = 0.999;

/// How a [`DiscreteSchedule`]'s `β_1 … β_T` are defined; this is what a config file stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum DiscreteRule {
    /// Diffusion-LM's square-root schedule as its reference code discretises it (see
    /// [`DiscreteSchedule::square_root`]).
    SquareRoot {
        /// Number of steps `T`.
        steps: usize,
        /// Offset `s` of `ᾱ(τ) = 1 − √(τ + s)`.
        #[serde(default = "SquareRoot::default_s")]
        s: f64,
    },
    /// D3PM's absorbing-state schedule `β_i = 1/(T − i + 1)` (see
    /// [`DiscreteSchedule::absorbing_mutual_information`]).
    AbsorbingMutualInformation {
        /// Number of steps `T`.
        steps: usize,
    },
    /// An explicit list `β_1 … β_T`.
    Betas {
        /// `β_i ∈ [0, 1]`, step `i` at `t = i/T`.
        betas: Vec<f64>,
    },
}

/// A discrete-time schedule with `T` steps, step `i` at `t = i/T` (the project's convention: no
/// integer timestep appears in a public API).
///
/// It is defined by per-step noise rates `β_1 … β_T` (Ho et al. 2020, eq. 2; D3PM, Austin et al.
/// 2021, §2), whose products are the grid values
///
/// `α(i/T) = ᾱ_i = Π_{j ≤ i} (1 − β_j)`, `α(0) = 1`.
///
/// Between grid points `α` is interpolated linearly, so `α′` is constant on each step,
/// `α′ = T·(ᾱ_{i+1} − ᾱ_i)` (the right-hand segment at a grid point). Samplers of discrete-time
/// models only ever evaluate it on the grid; the interpolation makes the schedule usable by code
/// written for continuous time. `t` outside `[0, 1]` is clamped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DiscreteRule", into = "DiscreteRule")]
pub struct DiscreteSchedule {
    rule: DiscreteRule,
    /// `ᾱ_0 = 1, ᾱ_1, …, ᾱ_T`.
    alpha_bar: Arc<[f64]>,
}

impl TryFrom<DiscreteRule> for DiscreteSchedule {
    type Error = ScheduleError;
    fn try_from(rule: DiscreteRule) -> Result<Self, Self::Error> {
        match rule {
            DiscreteRule::SquareRoot { steps, s } => Self::square_root(steps, s),
            DiscreteRule::AbsorbingMutualInformation { steps } => {
                Self::absorbing_mutual_information(steps)
            }
            DiscreteRule::Betas { betas } => Self::from_betas(betas),
        }
    }
}

impl From<DiscreteSchedule> for DiscreteRule {
    fn from(schedule: DiscreteSchedule) -> Self {
        schedule.rule
    }
}

impl DiscreteSchedule {
    /// A schedule from explicit `β_1 … β_T`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] if `betas` is empty, or if a
    /// `β_i` is not in `[0, 1]`.
    pub fn from_betas(betas: Vec<f64>) -> Result<Self, ScheduleError> {
        ensure_steps(CONTEXT, "betas.len()", betas.len())?;
        if let Some((index, &value)) =
            betas.iter().enumerate().find(|(_, b)| !(**b >= 0.0 && **b <= 1.0))
        {
            return Err(ScheduleError::Invalid(InvalidInput::element(
                CONTEXT,
                "betas",
                index,
                value,
                "a value in [0, 1]",
            )));
        }
        Ok(Self::tabulate(DiscreteRule::Betas { betas: betas.clone() }, &betas))
    }

    /// Diffusion-LM's square-root schedule with `T = steps`, discretised as its reference code
    /// does (improved-DDPM style, Nichol & Dhariwal 2021, §3.2):
    ///
    /// `β_i = min(1 − ᾱ(i/T)/ᾱ((i−1)/T), 0.999)`, `ᾱ(τ) = 1 − √(τ + s)`.
    ///
    /// The products telescope, so `α(i/T) = ᾱ(i/T)/ᾱ(0)` until the last step, where `ᾱ(1) < 0`
    /// and `β_T` is clipped at `0.999`. With `T = 2000`, `s = 1e-4` this reproduces the reference
    /// `alphas_cumprod` (0.98536 at its step 0, 0.78288 at step 100, 0.29542 at step 1000; its step
    /// `k` is our `t = (k + 1)/T`).
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] if `steps == 0`, or unless
    /// `0 ≤ s < 1`.
    pub fn square_root(steps: usize, s: f64) -> Result<Self, ScheduleError> {
        ensure_steps(CONTEXT, "steps", steps)?;
        ensure_value((0.0..1.0).contains(&s), CONTEXT, "s", s, "a value in [0, 1)")?;
        let alpha_bar = |tau: f64| 1.0 - (tau + s).sqrt();
        let betas: Vec<f64> = (1..=steps)
            .map(|i| {
                let (t, s_prev) = (i as f64 / steps as f64, (i - 1) as f64 / steps as f64);
                (1.0 - alpha_bar(t) / alpha_bar(s_prev)).min(MAX_BETA)
            })
            .collect();
        Ok(Self::tabulate(DiscreteRule::SquareRoot { steps, s }, &betas))
    }

    /// D3PM's schedule for absorbing-state diffusion, `β_i = 1/(T − i + 1)` (Austin et al. 2021,
    /// §3.2 and App. A.7, after Sohl-Dickstein et al. 2015, §2.4.1): it is the mutual-information
    /// schedule for the absorbing process, and masks exactly a fraction `i/T` of the tokens at
    /// step `i`, since `Π_{j ≤ i} (T − j)/(T − j + 1) = (T − i)/T`.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] if `steps == 0`.
    pub fn absorbing_mutual_information(steps: usize) -> Result<Self, ScheduleError> {
        ensure_steps(CONTEXT, "steps", steps)?;
        let betas: Vec<f64> = (1..=steps).map(|i| 1.0 / (steps - i + 1) as f64).collect();
        Ok(Self::tabulate(DiscreteRule::AbsorbingMutualInformation { steps }, &betas))
    }

    fn tabulate(rule: DiscreteRule, betas: &[f64]) -> Self {
        let mut alpha_bar = Vec::with_capacity(betas.len() + 1);
        alpha_bar.push(1.0);
        let mut running = 1.0;
        for beta in betas {
            running *= 1.0 - beta;
            alpha_bar.push(running);
        }
        Self { rule, alpha_bar: alpha_bar.into() }
    }

    /// Number of steps `T`.
    pub fn steps(&self) -> usize {
        self.alpha_bar.len() - 1
    }

    /// The rule the schedule was built from.
    pub fn rule(&self) -> &DiscreteRule {
        &self.rule
    }

    /// The grid values `ᾱ_0 = 1, ᾱ_1, …, ᾱ_T`; entry `i` is `α(i/T)`.
    pub fn grid_alphas(&self) -> &[f64] {
        &self.alpha_bar
    }

    /// The step `i` whose segment `[i/T, (i+1)/T]` holds `t`, and the fraction of it covered.
    fn segment(&self, t: f64) -> (usize, f64) {
        let steps = self.steps();
        let x = t.clamp(0.0, 1.0) * steps as f64;
        let i = (x.floor() as usize).min(steps - 1);
        (i, x - i as f64)
    }

    /// For the tensor path, on the device and in the float type of `like`: the grid values
    /// `ᾱ_i` and the increments `ᾱ_{i+1} − ᾱ_i`, the latter taken in `f64` so that `α′` does not
    /// suffer the cancellation of subtracting two `f32` table entries.
    fn tables_tensor(&self, like: &Tensor<1>) -> (Tensor<1>, Tensor<1>) {
        let steps = self.steps();
        let increments: Vec<f64> = self.alpha_bar.windows(2).map(|w| w[1] - w[0]).collect();
        let options = (&like.device(), like.dtype());
        let start = TensorData::new(self.alpha_bar[..steps].to_vec(), [steps]);
        let increments = TensorData::new(increments, [steps]);
        (Tensor::from_data(start, options), Tensor::from_data(increments, options))
    }

    /// Segment index and fraction on device.
    fn segment_tensor(&self, t: Tensor<1>) -> (Tensor<1, Int>, Tensor<1>) {
        let steps = self.steps() as f64;
        let x = t.clamp(0.0, 1.0).mul_scalar(steps);
        let i = x.clone().floor().clamp_max(steps - 1.0);
        let frac = x - i.clone();
        (i.int(), frac)
    }
}

impl NoiseSchedule for DiscreteSchedule {
    fn alpha(&self, t: f64) -> f64 {
        let (i, frac) = self.segment(t);
        let (a, b) = (self.alpha_bar[i], self.alpha_bar[i + 1]);
        a + frac * (b - a)
    }

    fn alpha_prime(&self, t: f64) -> f64 {
        let (i, _) = self.segment(t);
        (self.alpha_bar[i + 1] - self.alpha_bar[i]) * self.steps() as f64
    }

    fn alpha_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        let (start, increments) = self.tables_tensor(&t);
        let (i, frac) = self.segment_tensor(t);
        start.select(0, i.clone()) + frac * increments.select(0, i)
    }

    fn alpha_prime_tensor(&self, t: Tensor<1>) -> Tensor<1> {
        let (_, increments) = self.tables_tensor(&t);
        let (i, _) = self.segment_tensor(t);
        increments.select(0, i).mul_scalar(self.steps() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidInput;

    #[test]
    fn square_root_reproduces_the_reference_alphas_cumprod() {
        // Reference `alphas_cumprod[k]` for T = 2000 is our α at t = (k + 1)/T.
        let s = DiscreteSchedule::square_root(2000, 1e-4).unwrap();
        for (k, expected) in [(0, 0.98536), (1, 0.97660), (10, 0.93451), (50, 0.84848)]
            .into_iter()
            .chain([(100, 0.78288), (500, 0.50444), (1000, 0.29542)])
        {
            let t = (k + 1) as f64 / 2000.0;
            assert!((s.alpha(t) - expected).abs() < 5e-6, "step {k}: {}", s.alpha(t));
        }
        // The last step is clipped at β = 0.999: ᾱ_T = 0.001·ᾱ_{T−1}, about 2e-7.
        let grid = s.grid_alphas();
        assert!((grid[2000] / grid[1999] - 0.001).abs() < 1e-12);
        assert!((grid[2000] - 2.0e-7).abs() < 0.05e-7, "{}", grid[2000]);
        // Before clipping the products telescope to ᾱ(i/T)/ᾱ(0).
        let telescoped = (1.0 - (0.5f64 + 1e-4).sqrt()) / (1.0 - 1e-4f64.sqrt());
        assert!((s.alpha(0.5) - telescoped).abs() < 1e-12);
    }

    #[test]
    fn absorbing_schedule_masks_exactly_i_over_t() {
        for steps in [1, 7, 1000] {
            let s = DiscreteSchedule::absorbing_mutual_information(steps).unwrap();
            for i in 0..=steps {
                let t = i as f64 / steps as f64;
                let mask_rate = 1.0 - s.alpha(t);
                assert!((mask_rate - t).abs() < 1e-12, "T = {steps}, i = {i}: {mask_rate}");
            }
        }
    }

    #[test]
    fn interpolates_linearly_between_grid_points() {
        let s = DiscreteSchedule::from_betas(vec![0.5, 0.5]).unwrap();
        assert_eq!(s.grid_alphas(), &[1.0, 0.5, 0.25]);
        assert!((s.alpha(0.25) - 0.75).abs() < 1e-15);
        assert!((s.alpha(0.75) - 0.375).abs() < 1e-15);
        assert_eq!(s.alpha_prime(0.25), -1.0);
        assert_eq!(s.alpha_prime(0.75), -0.5);
        // Clamped outside [0, 1].
        assert_eq!(s.alpha(-1.0), 1.0);
        assert_eq!(s.alpha(2.0), 0.25);
    }

    #[test]
    fn rejects_bad_definitions() {
        assert!(matches!(
            DiscreteSchedule::from_betas(vec![]),
            Err(ScheduleError::Invalid(InvalidInput { .. }))
        ));
        assert!(matches!(
            DiscreteSchedule::from_betas(vec![0.1, 1.5, 0.2]),
            Err(ScheduleError::Invalid(InvalidInput { index: Some(1), .. }))
        ));
        assert!(matches!(
            DiscreteSchedule::from_betas(vec![0.1, f64::NAN]),
            Err(ScheduleError::Invalid(InvalidInput { index: Some(1), .. }))
        ));
        assert!(matches!(
            DiscreteSchedule::square_root(0, 1e-4),
            Err(ScheduleError::Invalid(InvalidInput { name: "steps", .. }))
        ));
        assert!(matches!(
            DiscreteSchedule::square_root(100, -1e-4),
            Err(ScheduleError::Invalid(InvalidInput { name: "s", .. }))
        ));
        assert!(matches!(
            DiscreteSchedule::absorbing_mutual_information(0),
            Err(ScheduleError::Invalid(InvalidInput { name: "steps", .. }))
        ));
    }
}
