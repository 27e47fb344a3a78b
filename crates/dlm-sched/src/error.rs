//! The error type of this crate and the checks that produce it.

/// A schedule, time grid or time sampler was given a parameter outside its domain.
///
/// Every variant names the object (`context`), the parameter (`name`) and the offending value, so
/// that a message read from a config file points at the line to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A real-valued parameter is out of range (NaN and infinities included).
    #[error("{context}: `{name}` = {value} is invalid, expected {expected}")]
    InvalidParameter {
        /// The schedule, grid or sampler being built.
        context: &'static str,
        /// The parameter's name, as in the constructor and the config file.
        name: &'static str,
        /// The value that was given.
        value: f64,
        /// The admissible range, in words.
        expected: &'static str,
    },
    /// A count (number of steps, of samples) is out of range.
    #[error("{context}: `{name}` = {value} is invalid, expected {expected}")]
    InvalidCount {
        /// The schedule, grid or sampler being built.
        context: &'static str,
        /// The parameter's name.
        name: &'static str,
        /// The value that was given.
        value: usize,
        /// The admissible range, in words.
        expected: &'static str,
    },
    /// One element of a sequence parameter (a list of betas, times or uniforms) is out of range.
    #[error("{context}: `{name}[{index}]` = {value} is invalid, expected {expected}")]
    InvalidElement {
        /// The schedule, grid or sampler being built.
        context: &'static str,
        /// The sequence's name.
        name: &'static str,
        /// Position of the offending element.
        index: usize,
        /// The value that was given.
        value: f64,
        /// The admissible range, in words.
        expected: &'static str,
    },
}

/// Returns `InvalidParameter` unless `valid`. Write `valid` as a positive condition so that NaN,
/// for which every comparison is false, is rejected.
pub(crate) fn ensure(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: f64,
    expected: &'static str,
) -> Result<(), ScheduleError> {
    if valid {
        Ok(())
    } else {
        Err(ScheduleError::InvalidParameter { context, name, value, expected })
    }
}

/// Returns `InvalidCount` unless `valid`.
pub(crate) fn ensure_count(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: usize,
    expected: &'static str,
) -> Result<(), ScheduleError> {
    if valid { Ok(()) } else { Err(ScheduleError::InvalidCount { context, name, value, expected }) }
}
