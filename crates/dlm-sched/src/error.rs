//! The error type of this crate.

use crate::invalid::InvalidInput;
pub(crate) use crate::invalid::{ensure_size, ensure_value};

/// A schedule, time grid or time sampler was given a parameter outside its domain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A parameter, count or list element is out of range: the object (`context`), the
    /// parameter (`name`, as in the constructor and the config file) and the offending value.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
}

impl ScheduleError {
    /// The invalid input this error reports.
    pub fn invalid(&self) -> Option<&InvalidInput> {
        match self {
            Self::Invalid(invalid) => Some(invalid),
        }
    }
}
