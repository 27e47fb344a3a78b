//! ReMDM: remasking decoded tokens during ancestral sampling.

use dlm_sched::{NoiseSchedule, ScheduleKind};
use serde::{Deserialize, Serialize};

use crate::error::{DiscreteError, ensure_value};

/// How ReMDM chooses `σ_t`, the probability that a decoded token is masked again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum ReMdmStrategy {
    /// `σ_t = min(η, (1 − α_s)/α_t)` (their script: `η = 0.008`).
    Cap {
        /// `η`.
        eta: f64,
    },
    /// `σ_t = η · σ_t^max`, `σ_t^max = min(1, (1 − α_s)/α_t)` (their script: `η = 0.015`).
    Rescale {
        /// `η`.
        eta: f64,
    },
    /// Three phases, as in their `remdm-loop` (defaults `η = 0.02`, `t_on = 0.55`,
    /// `t_off = 0.05`, `α_on = 0.9`), on a continuous piecewise-linear signal `α(u)`: MDLM steps while
    /// `α` climbs to `α_on` above `t_on`; steps wholly inside `[t_off, t_on]` hold `α = α_on` and
    /// remask with `σ = η` (capped at `σ^max`); MDLM steps again from `α_on` to 1 below `t_off`.
    /// It replaces the model's schedule, which it assumes linear in `t` (MDLM's log-linear).
    Loop {
        /// `η`.
        eta: f64,
        /// Start of the loop phase.
        t_on: f64,
        /// End of the loop phase.
        t_off: f64,
        /// Signal level held during the loop.
        alpha_on: f64,
    },
}

/// The loop strategy's signal level at time `u`: `(1 − u)·α_on/(1 − t_on)` above `t_on`, `α_on`
/// on `[t_off, t_on]`, `1 − u·(1 − α_on)/t_off` below `t_off`. Continuous, with `α(1) = 0` and
/// `α(0) = 1`; one function serves both ends of a step, so a step that crosses a phase boundary
/// sees the right `α` on each side.
fn loop_alpha(u: f64, t_on: f64, t_off: f64, alpha_on: f64) -> f64 {
    if u > t_on {
        (1.0 - u) * alpha_on / (1.0 - t_on)
    } else if u >= t_off {
        alpha_on
    } else {
        1.0 - u * (1.0 - alpha_on) / t_off
    }
}

/// ReMDM (Wang et al. 2025, "Remasking discrete diffusion models with inference-time scaling",
/// §3): the posterior
///
/// - decoded token (`z_t ≠ m`): `q(z_s) = (1 − σ_t)·x + σ_t·m`,
/// - masked token: `q(z_s) = [(α_s − (1 − σ_t)α_t)/(1 − α_t)]·x + [(1 − α_s − σ_t α_t)/(1 − α_t)]·m`,
///
/// with `0 ≤ σ_t ≤ min(1, (1 − α_s)/α_t)`. Its marginals are MDLM's, so MDLM models sample with it
/// unchanged; `σ_t = 0` is MDLM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ReMdm {
    schedule: ScheduleKind,
    strategy: ReMdmStrategy,
}

dlm_sched::serde_validated!(ReMdm);

impl ReMdm {
    /// The checks of [`ReMdm::new`], for a value read from a config.
    pub(crate) fn validate(&self) -> Result<(), DiscreteError> {
        Self::new(self.schedule.clone(), self.strategy).map(drop)
    }

    /// ReMDM on the model's `schedule`.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] for `η ∉ [0, 1]`, or a loop without
    /// `0 < t_off < t_on < 1` and `α_on ∈ (0, 1)`.
    pub fn new(schedule: ScheduleKind, strategy: ReMdmStrategy) -> Result<Self, DiscreteError> {
        const CONTEXT: &str = "ReMDM";
        let eta = match strategy {
            ReMdmStrategy::Cap { eta } | ReMdmStrategy::Rescale { eta } => eta,
            ReMdmStrategy::Loop { eta, t_on, t_off, alpha_on } => {
                ensure_value(t_on > 0.0 && t_on < 1.0, CONTEXT, "t_on", t_on, "a value in (0, 1)")?;
                ensure_value(
                    t_off > 0.0 && t_off < t_on,
                    CONTEXT,
                    "t_off",
                    t_off,
                    "a value in (0, t_on)",
                )?;
                ensure_value(
                    alpha_on > 0.0 && alpha_on < 1.0,
                    CONTEXT,
                    "alpha_on",
                    alpha_on,
                    "a value in (0, 1)",
                )?;
                eta
            }
        };
        ensure_value((0.0..=1.0).contains(&eta), CONTEXT, "eta", eta, "a value in [0, 1]")?;
        Ok(Self { schedule, strategy })
    }

    /// `(α_t, α_s, σ_t)` of a step from `t` to `s`.
    fn step_parameters(&self, t: f64, s: f64) -> (f64, f64, f64) {
        let sigma_max = |alpha_t: f64, alpha_s: f64| {
            if alpha_t > 0.0 { ((1.0 - alpha_s) / alpha_t).min(1.0) } else { 1.0 }
        };
        match self.strategy {
            ReMdmStrategy::Cap { eta } => {
                let (alpha_t, alpha_s) = (self.schedule.alpha(t), self.schedule.alpha(s));
                (alpha_t, alpha_s, eta.min(sigma_max(alpha_t, alpha_s)))
            }
            ReMdmStrategy::Rescale { eta } => {
                let (alpha_t, alpha_s) = (self.schedule.alpha(t), self.schedule.alpha(s));
                (alpha_t, alpha_s, eta * sigma_max(alpha_t, alpha_s))
            }
            ReMdmStrategy::Loop { eta, t_on, t_off, alpha_on } => {
                let alpha = |u: f64| loop_alpha(u, t_on, t_off, alpha_on);
                let (alpha_t, alpha_s) = (alpha(t), alpha(s));
                // Remask only on steps that lie wholly inside the loop phase; a step that
                // straddles `t_on` or `t_off` is a plain MDLM step on the piecewise line.
                let in_loop = t <= t_on && s >= t_off;
                let sigma = if in_loop { eta.min(sigma_max(alpha_t, alpha_s)) } else { 0.0 };
                (alpha_t, alpha_s, sigma)
            }
        }
    }

    /// `(p_unmask, p_remask)` of a step: the probability that a masked token is decoded,
    /// `(α_s − (1 − σ)α_t)/(1 − α_t)`, and that a decoded one is masked again, `σ`.
    pub fn probabilities(&self, t: f64, s: f64) -> (f64, f64) {
        let (alpha_t, alpha_s, sigma) = self.step_parameters(t, s);
        if alpha_t >= 1.0 {
            return (1.0, 0.0);
        }
        let p_unmask = ((alpha_s - (1.0 - sigma) * alpha_t) / (1.0 - alpha_t)).clamp(0.0, 1.0);
        (p_unmask, sigma)
    }
}

#[cfg(test)]
mod tests {
    use dlm_sched::LogLinear;

    use super::*;

    fn linear() -> ScheduleKind {
        ScheduleKind::LogLinear(LogLinear::new(1e-12).unwrap())
    }

    #[test]
    fn zero_eta_is_mdlm_and_marginals_are_preserved() {
        let mdlm = ReMdm::new(linear(), ReMdmStrategy::Rescale { eta: 0.0 }).unwrap();
        let (p, r) = mdlm.probabilities(0.5, 0.4);
        assert!((p - 0.2).abs() < 1e-9 && r == 0.0, "(t − s)/t = 0.2: {p}");
        // With remasking, the masked fraction after the step is still 1 − α_s:
        // P(masked at s) = (1 − α_t)(1 − p_unmask) + α_t·σ.
        for strategy in [ReMdmStrategy::Cap { eta: 0.05 }, ReMdmStrategy::Rescale { eta: 0.5 }] {
            let remdm = ReMdm::new(linear(), strategy).unwrap();
            let (t, s) = (0.5, 0.45);
            let (p, sigma) = remdm.probabilities(t, s);
            let (alpha_t, alpha_s) = (1.0 - t, 1.0 - s);
            let masked_after = (1.0 - alpha_t) * (1.0 - p) + alpha_t * sigma;
            assert!((masked_after - (1.0 - alpha_s)).abs() < 1e-9, "{strategy:?}");
            assert!(sigma > 0.0);
        }
    }

    #[test]
    fn loop_holds_alpha_and_remasks_in_the_middle() {
        let strategy = ReMdmStrategy::Loop { eta: 0.02, t_on: 0.55, t_off: 0.05, alpha_on: 0.9 };
        let remdm = ReMdm::new(linear(), strategy).unwrap();
        let (p, sigma) = remdm.probabilities(0.3, 0.29);
        assert!((sigma - 0.02).abs() < 1e-12);
        assert!((p - 0.02 * 0.9 / 0.1).abs() < 1e-9, "{p}");
        // Before t_on: MDLM on the rescaled line, no remasking.
        let (_, sigma) = remdm.probabilities(0.8, 0.79);
        assert_eq!(sigma, 0.0);
        // The last step reaches α = 1: everything is decoded.
        assert!((remdm.probabilities(0.01, 0.0).0 - 1.0).abs() < 1e-9);
    }

    /// On a 10-step grid, steps straddle both phase boundaries: t = 0.6 → 0.5 crosses `t_on`
    /// (α goes 0.8 → 0.9) and t = 0.1 → 0.0 crosses `t_off`. Simulating the masked fraction
    /// through the whole grid must land on `1 − α(s)` after every step and on 0 at the end.
    #[test]
    fn loop_on_a_coarse_grid_keeps_the_marginals_across_phase_boundaries() {
        let (t_on, t_off, alpha_on) = (0.55, 0.05, 0.9);
        let strategy = ReMdmStrategy::Loop { eta: 0.02, t_on, t_off, alpha_on };
        let remdm = ReMdm::new(linear(), strategy).unwrap();
        let crossing = remdm.probabilities(0.6, 0.5);
        // α(0.6) = 0.4·0.9/0.45 = 0.8, α(0.5) = 0.9: unmask (0.9 − 0.8)/(1 − 0.8) = 0.5, no remask.
        assert!((crossing.0 - 0.5).abs() < 1e-9 && crossing.1 == 0.0, "{crossing:?}");
        let mut masked = 1.0;
        for step in 0..10 {
            let (t, s) = (1.0 - step as f64 / 10.0, 1.0 - (step + 1) as f64 / 10.0);
            let (p_unmask, p_remask) = remdm.probabilities(t, s);
            masked = masked * (1.0 - p_unmask) + (1.0 - masked) * p_remask;
            let expected = 1.0 - loop_alpha(s, t_on, t_off, alpha_on);
            assert!((masked - expected).abs() < 1e-9, "after t = {s}: {masked} vs {expected}");
        }
        assert!(masked.abs() < 1e-12);
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(ReMdm::new(linear(), ReMdmStrategy::Cap { eta: -0.1 }).is_err());
        assert!(ReMdm::new(linear(), ReMdmStrategy::Rescale { eta: 1.5 }).is_err());
        let bad_loop = ReMdmStrategy::Loop { eta: 0.02, t_on: 0.3, t_off: 0.5, alpha_on: 0.9 };
        assert!(ReMdm::new(linear(), bad_loop).is_err());
    }
}
