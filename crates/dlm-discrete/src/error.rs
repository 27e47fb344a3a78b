//! The error type of `dlm-discrete`.

use dlm_core::CoreError;
use dlm_sched::ScheduleError;

/// Invalid input to a `dlm-discrete` constructor or config, naming the field and the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscreteError {
    /// A real-valued setting is out of range (NaN included).
    #[error("{context}: `{name}` = {value} is invalid, expected {expected}")]
    InvalidValue {
        /// What was being built.
        context: &'static str,
        /// The field's name.
        name: &'static str,
        /// The value that was given.
        value: f64,
        /// The admissible range, in words.
        expected: String,
    },
    /// A size, count or token id is out of range.
    #[error("{context}: `{name}` = {value} is invalid, expected {expected}")]
    InvalidSize {
        /// What was being built.
        context: &'static str,
        /// The field's name.
        name: &'static str,
        /// The value that was given.
        value: usize,
        /// The admissible range, in words.
        expected: String,
    },
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
    /// An error of the shared foundation (data, model, checkpoint).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of a noise schedule, grid or time sampler.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

pub(crate) fn ensure_value(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: f64,
    expected: impl Into<String>,
) -> Result<(), DiscreteError> {
    if valid {
        Ok(())
    } else {
        Err(DiscreteError::InvalidValue { context, name, value, expected: expected.into() })
    }
}

pub(crate) fn ensure_size(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: usize,
    expected: impl Into<String>,
) -> Result<(), DiscreteError> {
    if valid {
        Ok(())
    } else {
        Err(DiscreteError::InvalidSize { context, name, value, expected: expected.into() })
    }
}
