//! The error type of `dlm-continuous`.

use dlm_core::CoreError;
use dlm_sched::ScheduleError;

/// Invalid input to a `dlm-continuous` constructor or config, naming the field and the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContinuousError {
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
    /// A size or count is out of range.
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
    /// An error of the shared foundation.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of a schedule or time grid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

pub(crate) fn ensure_value(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: f64,
    expected: impl Into<String>,
) -> Result<(), ContinuousError> {
    if valid {
        Ok(())
    } else {
        Err(ContinuousError::InvalidValue { context, name, value, expected: expected.into() })
    }
}

pub(crate) fn ensure_size(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: usize,
    expected: impl Into<String>,
) -> Result<(), ContinuousError> {
    if valid {
        Ok(())
    } else {
        Err(ContinuousError::InvalidSize { context, name, value, expected: expected.into() })
    }
}
