//! The one invalid-input payload of every `dlm` crate: what was being built, which field, the
//! value given and what was expected. Each crate's error enum wraps it as its `Invalid` variant,
//! so one check reads the same wherever it fails.

use std::borrow::Cow;
use std::fmt;

/// The most steps a time grid or a discrete schedule may have (`2²⁰`, about a million; D3PM uses
/// 1000, samplers a few thousand): past it, the tables these build would be a size bomb, an
/// abort instead of an error.
pub const MAX_STEPS: usize = 1 << 20;

/// The offending value of an [`InvalidInput`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputValue {
    /// A real-valued setting (NaN and infinities included).
    Real(f64),
    /// A size, count, length or token id.
    Size(usize),
}

impl fmt::Display for InputValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Real(value) => write!(f, "{value}"),
            Self::Size(value) => write!(f, "{value}"),
        }
    }
}

/// A field outside its domain, naming the object being built (`context`), the field (`name`,
/// as in the constructor and the config file; with `index` for one element of a list), the value
/// and the admissible range in words, so that a message read from a config file points at the
/// line to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{context}: `{name}{}` = {value} is invalid, expected {expected}", index.map(|i| format!("[{i}]")).unwrap_or_default())]
pub struct InvalidInput {
    /// What was being built.
    pub context: &'static str,
    /// The field's name.
    pub name: &'static str,
    /// The element of a list field, when one element is out of range.
    pub index: Option<usize>,
    /// The value that was given.
    pub value: InputValue,
    /// The admissible range, in words.
    pub expected: Cow<'static, str>,
}

impl InvalidInput {
    /// A real-valued field out of range.
    pub fn real(
        context: &'static str,
        name: &'static str,
        value: f64,
        expected: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            context,
            name,
            index: None,
            value: InputValue::Real(value),
            expected: expected.into(),
        }
    }

    /// A size, count or id out of range.
    pub fn size(
        context: &'static str,
        name: &'static str,
        value: usize,
        expected: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            context,
            name,
            index: None,
            value: InputValue::Size(value),
            expected: expected.into(),
        }
    }

    /// Element `index` of a real-valued list out of range.
    pub fn element(
        context: &'static str,
        name: &'static str,
        index: usize,
        value: f64,
        expected: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            context,
            name,
            index: Some(index),
            value: InputValue::Real(value),
            expected: expected.into(),
        }
    }

    /// Element `index` of a list of sizes or ids out of range (a token id at a position).
    pub fn size_element(
        context: &'static str,
        name: &'static str,
        index: usize,
        value: usize,
        expected: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            context,
            name,
            index: Some(index),
            value: InputValue::Size(value),
            expected: expected.into(),
        }
    }
}

/// `Ok` if `valid`, else [`InvalidInput::real`] (`?` turns it into the caller's error). Write
/// `valid` as a positive condition, so that NaN, for which every comparison is false, is
/// rejected.
///
/// # Errors
/// The [`InvalidInput`] when `valid` is false.
pub fn ensure_value(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: f64,
    expected: impl Into<Cow<'static, str>>,
) -> Result<(), InvalidInput> {
    if valid { Ok(()) } else { Err(InvalidInput::real(context, name, value, expected)) }
}

/// `Ok` if `valid`, else [`InvalidInput::size`] (`?` turns it into the caller's error).
///
/// # Errors
/// The [`InvalidInput`] when `valid` is false.
pub fn ensure_size(
    valid: bool,
    context: &'static str,
    name: &'static str,
    value: usize,
    expected: impl Into<Cow<'static, str>>,
) -> Result<(), InvalidInput> {
    if valid { Ok(()) } else { Err(InvalidInput::size(context, name, value, expected)) }
}

/// `Ok` if `steps` is a number of steps a table may have, `1..=MAX_STEPS` (grids, discrete
/// schedules, D3PM's mutual-information schedule all check it here).
///
/// # Errors
/// The [`InvalidInput`] naming `name` otherwise.
pub fn ensure_steps(
    context: &'static str,
    name: &'static str,
    steps: usize,
) -> Result<(), InvalidInput> {
    ensure_size(
        steps > 0 && steps <= MAX_STEPS,
        context,
        name,
        steps,
        format!("between 1 and MAX_STEPS = {MAX_STEPS}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_context_field_element_value_and_range() {
        let real = InvalidInput::real("cosine schedule", "eps", f64::NAN, "in [0, 1)");
        assert_eq!(real.to_string(), "cosine schedule: `eps` = NaN is invalid, expected in [0, 1)");
        let size = InvalidInput::size("trainer", "batch_size", 0, format!("at least {}", 1));
        assert_eq!(size.to_string(), "trainer: `batch_size` = 0 is invalid, expected at least 1");
        let element = InvalidInput::element("betas", "betas", 3, 1.5, "in (0, 1]");
        assert_eq!(element.to_string(), "betas: `betas[3]` = 1.5 is invalid, expected in (0, 1]");
        let ok = ensure_value(0.5 < 1.0, "c", "x", 0.5, "below 1");
        assert!(ok.is_ok());
        let nan = f64::NAN;
        let nan = ensure_value((0.0..1.0).contains(&nan), "c", "x", nan, "in [0, 1)");
        assert_eq!(nan.unwrap_err().value.to_string(), "NaN");
        let err = ensure_size(false, "c", "n", 7, "even");
        assert_eq!(err.unwrap_err().value, InputValue::Size(7));
    }
}
