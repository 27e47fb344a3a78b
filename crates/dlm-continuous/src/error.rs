//! The error type of `dlm-continuous`.

use dlm_core::CoreError;
use dlm_sched::{InvalidInput, ScheduleError};
pub(crate) use dlm_sched::{ensure_size, ensure_value};

/// Invalid input to a `dlm-continuous` constructor or config, naming the field and the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContinuousError {
    /// A setting, size or id outside its domain, naming the object, the field and the value.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// An error of the shared foundation.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of a schedule or time grid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

impl ContinuousError {
    /// The invalid input this error reports, however deep in the crates it was found.
    pub fn invalid(&self) -> Option<&InvalidInput> {
        match self {
            Self::Invalid(invalid) => Some(invalid),
            Self::Core(inner) => inner.invalid(),
            Self::Schedule(inner) => inner.invalid(),
        }
    }
}
