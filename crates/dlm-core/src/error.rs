//! The error type of `dlm-core`.

/// Invalid input to a `dlm-core` constructor, config or loader.
///
/// Every variant names the object, the field and the offending value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
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
        expected: &'static str,
    },
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
}

pub(crate) fn ensure_value(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: f64,
    expected: &'static str,
) -> Result<(), CoreError> {
    if valid { Ok(()) } else { Err(CoreError::InvalidValue { context, name, value, expected }) }
}

pub(crate) fn ensure_size(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: usize,
    expected: impl Into<String>,
) -> Result<(), CoreError> {
    if valid {
        Ok(())
    } else {
        Err(CoreError::InvalidSize { context, name, value, expected: expected.into() })
    }
}
