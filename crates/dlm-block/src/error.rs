//! The error type of `dlm-block`.

use dlm_core::CoreError;
use dlm_discrete::DiscreteError;
use dlm_sched::ScheduleError;

/// Invalid input to a `dlm-block` constructor or config, naming the field and the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// A size or count is out of range or inconsistent with another one.
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
    /// BD3LM's vectorised training feeds every block its own time, which a model conditioned on
    /// one time per sequence cannot read.
    #[error("{what} needs a model without time conditioning (BD3LM's default)")]
    TimeConditionedModel {
        /// What needed it.
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

pub(crate) fn ensure_size(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: usize,
    expected: impl Into<String>,
) -> Result<(), BlockError> {
    if valid {
        Ok(())
    } else {
        Err(BlockError::InvalidSize { context, name, value, expected: expected.into() })
    }
}
