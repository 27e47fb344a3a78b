//! [`ScheduleKind`]: any fixed schedule, selected by name from a config file.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{
    Cosine, DiscreteSchedule, Geometric, LinearBeta, LogLinear, NoiseSchedule, Polynomial,
    ScheduleError, SquareRoot,
};

/// Any of the fixed schedules, as a tagged enum for config files.
///
/// In JSON/TOML the tag is `kind` and the parameters sit beside it; omitted parameters take the
/// literature defaults, unknown ones are rejected, and out-of-range ones fail deserialisation
/// with the [`ScheduleError`] message:
///
/// ```
/// # use dlm_sched::{NoiseSchedule, ScheduleKind};
/// let s: ScheduleKind = serde_json::from_str(r#"{"kind": "log_linear", "eps": 1e-3}"#).unwrap();
/// assert!((s.masked_elbo_weight(0.25) - 4.0).abs() < 1e-12);
/// let d: ScheduleKind =
///     serde_json::from_str(r#"{"kind": "discrete", "rule": "square_root", "steps": 2000}"#).unwrap();
/// assert!(serde_json::from_str::<ScheduleKind>(r#"{"kind": "cosine", "s": -1}"#).is_err());
/// # let _ = d;
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleKind {
    /// [`LinearBeta`].
    LinearBeta(LinearBeta),
    /// [`Cosine`].
    Cosine(Cosine),
    /// [`LogLinear`].
    LogLinear(LogLinear),
    /// [`SquareRoot`].
    SquareRoot(SquareRoot),
    /// [`Polynomial`].
    Polynomial(Polynomial),
    /// [`Geometric`].
    Geometric(Geometric),
    /// [`DiscreteSchedule`].
    Discrete(DiscreteSchedule),
}

/// Every schedule is a [`ScheduleKind`]: a sampler is handed the schedule its model was trained
/// with, not a second copy written by hand.
macro_rules! schedule_kind_from {
    ($($schedule:ident),*) => {$(
        impl From<$schedule> for ScheduleKind {
            fn from(schedule: $schedule) -> Self {
                Self::$schedule(schedule)
            }
        }
    )*};
}

schedule_kind_from!(LinearBeta, Cosine, LogLinear, SquareRoot, Polynomial, Geometric);

impl From<DiscreteSchedule> for ScheduleKind {
    fn from(schedule: DiscreteSchedule) -> Self {
        Self::Discrete(schedule)
    }
}

impl ScheduleKind {
    /// A short human-readable name with the defining parameters, e.g. `"cosine(s=0.008)"`.
    pub fn label(&self) -> String {
        match self {
            Self::LinearBeta(s) => format!("linear-beta({}..{})", s.beta_min(), s.beta_max()),
            Self::Cosine(s) => format!("cosine(s={})", s.s()),
            Self::LogLinear(s) => format!("log-linear(eps={})", s.eps()),
            Self::SquareRoot(s) => format!("sqrt(s={})", s.s()),
            Self::Polynomial(s) => format!("poly(n={})", s.exponent()),
            Self::Geometric(s) => format!("geometric({}..{})", s.sigma_min(), s.sigma_max()),
            Self::Discrete(s) => match s.rule() {
                crate::DiscreteRule::SquareRoot { steps, s } => format!("sqrt-T{steps}(s={s})"),
                crate::DiscreteRule::AbsorbingMutualInformation { steps } => {
                    format!("absorbing-MI-T{steps}")
                }
                crate::DiscreteRule::Betas { betas } => format!("betas-T{}", betas.len()),
            },
        }
    }

    /// Every schedule with the defaults of the paper that introduced it: DDPM/VP linear-β,
    /// improved-DDPM cosine, MDLM log-linear, Diffusion-LM square-root (continuous, and discretised
    /// with `T = 2000` as its reference code), the cubic polynomial, SEDD geometric, and D3PM's
    /// absorbing mutual-information schedule with `T = 1000`.
    ///
    /// # Errors
    /// Never in practice: the defaults are valid. The `Result` carries the constructors' errors.
    pub fn presets() -> Result<Vec<Self>, ScheduleError> {
        Ok(vec![
            Self::LinearBeta(LinearBeta::default()),
            Self::Cosine(Cosine::default()),
            Self::LogLinear(LogLinear::default()),
            Self::SquareRoot(SquareRoot::default()),
            Self::Discrete(DiscreteSchedule::square_root(2000, 1e-4)?),
            Self::Polynomial(Polynomial::default()),
            Self::Geometric(Geometric::default()),
            Self::Discrete(DiscreteSchedule::absorbing_mutual_information(1000)?),
        ])
    }
}

/// Forwards one `NoiseSchedule` method to the selected schedule, so that each schedule's own
/// closed forms (not the trait defaults) are used.
macro_rules! forward {
    ($($method:ident($arg:ident: $ty:ty) -> $ret:ty;)*) => {$(
        fn $method(&self, $arg: $ty) -> $ret {
            match self {
                Self::LinearBeta(s) => s.$method($arg),
                Self::Cosine(s) => s.$method($arg),
                Self::LogLinear(s) => s.$method($arg),
                Self::SquareRoot(s) => s.$method($arg),
                Self::Polynomial(s) => s.$method($arg),
                Self::Geometric(s) => s.$method($arg),
                Self::Discrete(s) => s.$method($arg),
            }
        }
    )*};
}

impl NoiseSchedule for ScheduleKind {
    forward! {
        alpha(t: f64) -> f64;
        alpha_prime(t: f64) -> f64;
        alpha_tensor(t: Tensor<1>) -> Tensor<1>;
        alpha_prime_tensor(t: Tensor<1>) -> Tensor<1>;
        one_minus_alpha(t: f64) -> f64;
        sigma(t: f64) -> f64;
        sigma_prime(t: f64) -> f64;
        log_snr(t: f64) -> f64;
        masked_elbo_weight(t: f64) -> f64;
        one_minus_alpha_tensor(t: Tensor<1>) -> Tensor<1>;
        sigma_tensor(t: Tensor<1>) -> Tensor<1>;
        sigma_prime_tensor(t: Tensor<1>) -> Tensor<1>;
        log_snr_tensor(t: Tensor<1>) -> Tensor<1>;
        masked_elbo_weight_tensor(t: Tensor<1>) -> Tensor<1>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_round_trips_through_json_and_toml_like_maps() {
        for kind in ScheduleKind::presets().unwrap() {
            let json = serde_json::to_string(&kind).unwrap();
            let back: ScheduleKind = serde_json::from_str(&json).unwrap();
            assert_eq!(back, kind, "{json}");
            // The dispatch uses the schedule's own closed forms.
            for t in [0.1, 0.5, 0.9] {
                assert_eq!(back.sigma(t).to_bits(), kind.sigma(t).to_bits());
            }
        }
    }

    #[test]
    fn defaults_fill_omitted_parameters() {
        let s: ScheduleKind = serde_json::from_str(r#"{"kind": "linear_beta"}"#).unwrap();
        assert_eq!(s, ScheduleKind::LinearBeta(LinearBeta::default()));
        let g: ScheduleKind =
            serde_json::from_str(r#"{"kind": "geometric", "sigma_max": 10}"#).unwrap();
        assert_eq!(g, ScheduleKind::Geometric(Geometric::new(1e-4, 10.0).unwrap()));
        let d: ScheduleKind = serde_json::from_str(
            r#"{"kind": "discrete", "rule": "absorbing_mutual_information", "steps": 10}"#,
        )
        .unwrap();
        assert!((d.alpha(0.3) - 0.7).abs() < 1e-12);
    }

    #[test]
    fn invalid_configs_fail_with_the_parameter_named() {
        for (json, needle) in [
            (r#"{"kind": "log_linear", "eps": 0}"#, "`eps` = 0"),
            (r#"{"kind": "linear_beta", "beta_min": 5, "beta_max": 1}"#, "`beta_max` = 1"),
            (r#"{"kind": "polynomial", "exponent": -2}"#, "`exponent` = -2"),
            (r#"{"kind": "discrete", "rule": "square_root", "steps": 0}"#, "`steps` = 0"),
            (r#"{"kind": "discrete", "rule": "betas", "betas": [0.5, 2]}"#, "`betas[1]` = 2"),
            (r#"{"kind": "cosine", "offset": 0.1}"#, "unknown field"),
            (r#"{"kind": "quadratic"}"#, "unknown variant"),
        ] {
            let err = serde_json::from_str::<ScheduleKind>(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
