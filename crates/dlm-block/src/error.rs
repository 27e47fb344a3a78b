//! The error type of `dlm-block`.

use dlm_core::CoreError;
use dlm_discrete::DiscreteError;
pub(crate) use dlm_sched::ensure_size;
use dlm_sched::{InvalidInput, ScheduleError};

/// Invalid input to a `dlm-block` constructor or config, naming the field and the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// A setting, size or id outside its domain, naming the object, the field and the value.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// BD3LM's vectorised training feeds every block its own time, which a model conditioned on
    /// one time per sequence cannot read.
    #[error("{what} needs a model without time conditioning (BD3LM's default)")]
    TimeConditionedModel {
        /// What needed it.
        what: &'static str,
    },
    /// A method this library does not have for this input.
    #[error("{what} is not supported")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },
    /// An error of the shared foundation.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of the masked-diffusion crate.
    #[error(transparent)]
    Discrete(#[from] DiscreteError),
    /// An error of a schedule or time sampler.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

impl BlockError {
    /// The invalid input this error reports, however deep in the crates it was found.
    pub fn invalid(&self) -> Option<&InvalidInput> {
        match self {
            Self::Invalid(invalid) => Some(invalid),
            Self::Core(inner) => inner.invalid(),
            Self::Discrete(inner) => inner.invalid(),
            Self::Schedule(inner) => inner.invalid(),
            _ => None,
        }
    }
}

/// A check of BD3LM's objective on the trainer's path: invalid input and core errors keep
/// their variant; anything else travels as [`CoreError::Objective`].
impl From<BlockError> for CoreError {
    fn from(error: BlockError) -> Self {
        match error {
            BlockError::Invalid(invalid) => CoreError::Invalid(invalid),
            BlockError::Core(core) => core,
            BlockError::Discrete(discrete) => discrete.into(),
            other => CoreError::Objective(Box::new(other)),
        }
    }
}
