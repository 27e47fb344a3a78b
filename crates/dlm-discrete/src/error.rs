//! The error type of `dlm-discrete`.

use dlm_core::CoreError;
use dlm_sched::{InvalidInput, ScheduleError};
pub(crate) use dlm_sched::{ensure_size, ensure_value};

/// Invalid input to a `dlm-discrete` constructor or config, naming the field and the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscreteError {
    /// A setting, size or id outside its domain, naming the object, the field and the value.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Reusing a prediction across times needs a model that does not read the time.
    #[error(
        "{what} reuses predictions across times, which needs a model without time conditioning"
    )]
    TimeConditionedModel {
        /// What needed it.
        what: &'static str,
    },
    /// A policy that compares confidences with probability thresholds was given a measure that
    /// is not a probability.
    #[error(
        "{policy} compares confidences in [0, 1] with a threshold; `{confidence:?}` is not one"
    )]
    ConfidenceNotAProbability {
        /// The policy.
        policy: &'static str,
        /// The measure that was given.
        confidence: dlm_core::sampling::Confidence,
    },
    /// A method this library does not have for this input.
    #[error("{what} is not supported")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },
    /// A denoiser reads another token as the mask than the process it is scored under.
    #[error("{what}: the denoiser's mask id is {found}, the masking process masks with {expected}")]
    MaskMismatch {
        /// What was being computed.
        what: &'static str,
        /// The process's mask id.
        expected: u32,
        /// The denoiser's.
        found: u32,
    },
    /// A line of a trajectory file that does not parse.
    #[error("trajectory, line {line}: {message}")]
    Trajectory {
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// An error of the shared foundation (data, model, checkpoint).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of a noise schedule, grid or time sampler.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

impl DiscreteError {
    /// The invalid input this error reports, however deep in the crates it was found.
    pub fn invalid(&self) -> Option<&InvalidInput> {
        match self {
            Self::Invalid(invalid) => Some(invalid),
            Self::Core(inner) => inner.invalid(),
            Self::Schedule(inner) => inner.invalid(),
            _ => None,
        }
    }
}

/// A check of an objective on the trainer's path ([`dlm_core::train::Objective::check_data`]):
/// invalid input and core errors keep their variant, so `CoreError::invalid` still finds the
/// field; anything else travels as [`CoreError::Objective`].
impl From<DiscreteError> for CoreError {
    fn from(error: DiscreteError) -> Self {
        match error {
            DiscreteError::Invalid(invalid) => CoreError::Invalid(invalid),
            DiscreteError::Core(core) => core,
            other => CoreError::Objective(Box::new(other)),
        }
    }
}
