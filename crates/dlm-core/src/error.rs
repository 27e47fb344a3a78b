//! The error type of `dlm-core`.

use std::path::PathBuf;

use dlm_sched::InvalidInput;
pub(crate) use dlm_sched::{ensure_size, ensure_value};

/// `Ok` if `low ≤ value ≤ cap`, else the size error naming `name` (the model configs' caps).
pub(crate) fn ensure_between(
    context: &'static str,
    name: &'static str,
    value: usize,
    low: usize,
    cap: usize,
) -> Result<(), InvalidInput> {
    ensure_size(
        (low..=cap).contains(&value),
        context,
        name,
        value,
        format!("between {low} and {cap}"),
    )
}

/// Invalid input to a `dlm-core` constructor, config or loader.
///
/// Every variant names the object, the field or file, and the offending value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A setting, size or id outside its domain, naming the object, the field and the value.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a `dlm` checkpoint (wrong magic bytes).
    #[error("{}: not a dlm checkpoint (it starts with {found:?}, expected {expected:?})", path.display())]
    ForeignCheckpoint {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        found: Vec<u8>,
        /// The checkpoint magic.
        expected: Vec<u8>,
    },
    /// The checkpoint was written by an incompatible format version.
    #[error("{}: checkpoint format version {found}, this build reads version {supported}", path.display())]
    CheckpointVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The checkpoint ends before its declared contents (e.g. a write was interrupted).
    #[error("{}: truncated checkpoint: {needed} bytes needed, {available} present", path.display())]
    TruncatedCheckpoint {
        /// The file.
        path: PathBuf,
        /// Bytes needed: the header, or the header and the body length it declares.
        needed: u64,
        /// Bytes in the file.
        available: u64,
    },
    /// The checkpoint's checksum does not match its contents.
    #[error("{}: corrupted checkpoint: checksum {found:#018x}, expected {expected:#018x}", path.display())]
    CorruptCheckpoint {
        /// The file.
        path: PathBuf,
        /// Checksum stored in the file.
        expected: u64,
        /// Checksum of the contents.
        found: u64,
    },
    /// A section the reader needs is absent.
    #[error("{}: checkpoint has no `{name}` section", path.display())]
    MissingSection {
        /// The file.
        path: PathBuf,
        /// The section.
        name: String,
    },
    /// A JSON document (checkpoint metadata, config) could not be parsed or written.
    #[error("{what}: {source}")]
    Json {
        /// What was being read.
        what: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A tokenizer could not be loaded, trained, saved, or could not encode or decode.
    #[error("{what}: {message}")]
    Tokenizer {
        /// What was being done.
        what: String,
        /// The tokenizer's explanation.
        message: String,
    },
    /// A loaded tokenizer lacks a special token the project needs.
    #[error("{what}: no special token named {names:?}")]
    MissingSpecialToken {
        /// The tokenizer.
        what: String,
        /// The names that were looked up.
        names: Vec<&'static str>,
    },
    /// A character-level tokenizer met a character outside its alphabet.
    #[error("character {character:?} at byte {offset} is not in the tokenizer's alphabet")]
    UnknownCharacter {
        /// The character.
        character: char,
        /// Its byte offset in the text.
        offset: usize,
    },
    /// A text file is not valid UTF-8.
    #[error("{}: not valid UTF-8 (invalid byte at offset {offset})", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A checkpoint to continue from was saved by a run of another configuration or
    /// objective.
    #[error("{}: saved by another run ({saved}), not this one ({requested})", path.display())]
    ResumeMismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The saved run's [`crate::train::TrainConfig`] or objective, as `Debug` prints it.
        saved: String,
        /// What was asked for.
        requested: String,
    },
    /// The training data differs from the data the run started on (the batch order and the
    /// resumed curve depend on it).
    #[error(
        "the training data has fingerprint {given:016x}, the run started on {saved:016x}: another dataset"
    )]
    TrainingDataChanged {
        /// The fingerprint the run started on.
        saved: u64,
        /// The fingerprint of the data given.
        given: u64,
    },
    /// Training diverged: the step's loss or gradient norm is not finite. The step was not
    /// applied (parameters, optimiser, EMA and data position are as before it).
    #[error("step {step}: the {what} is {value}, training diverged; the step was not applied")]
    Diverged {
        /// The step that failed (0-based: the number of steps taken before it).
        step: usize,
        /// `"loss"` or `"gradient norm"`.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// A corpus has no text.
    #[error("{what}: the corpus is empty")]
    EmptyCorpus {
        /// The corpus (its files).
        what: String,
    },
    /// A weights file is neither a PyTorch checkpoint nor safetensors.
    #[error("{}: not a PyTorch or safetensors weights file (it starts with {head:02x?})", path.display())]
    WeightsFormat {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        head: Vec<u8>,
    },
    /// burn's reader failed on a weights file (truncated or corrupted).
    #[error("{}: {message}", path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// The reader's explanation.
        message: String,
    },
    /// A weights file lacks a tensor the model needs.
    #[error("{}: tensor `{key}` is missing", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the file's convention.
        key: String,
    },
    /// A weights file holds a tensor the model has no place for.
    #[error("{}: unexpected tensor `{key}` (not part of this architecture)", path.display())]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the file.
        key: String,
    },
    /// A tensor of a weights file has another shape than the config implies.
    #[error("{}: tensor `{key}` has shape {found:?}, the config implies {expected:?}", path.display())]
    TensorShape {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the file.
        key: String,
        /// The shape the config implies (in the file's layout).
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// Observed tokens that the source can never produce (probability 0).
    #[error(
        "{context}: the observed tokens have probability 0 (no path remains at position {position})"
    )]
    ImpossibleObservation {
        /// The source.
        context: &'static str,
        /// The first position at which no sequence agrees with the observations.
        position: usize,
    },
    /// A setting names a variant this implementation does not have.
    #[error("{context}: `{name}` = {value:?} is not supported, expected {supported}")]
    Unsupported {
        /// What was being built.
        context: &'static str,
        /// The field's name.
        name: &'static str,
        /// The value that was given.
        value: String,
        /// What is supported, in words.
        supported: &'static str,
    },
    /// burn refused a record: the saved tensors do not fit the model (missing, unexpected or
    /// mis-shaped tensors) or the bytes are not a burnpack.
    #[error("{what}: {message}")]
    Record {
        /// What was being loaded.
        what: String,
        /// burn's explanation.
        message: String,
    },
    /// A chat template does not compile or fails to render (it may raise on purpose, as
    /// templates do for roles they do not know).
    #[error("{what}: chat template: {message}")]
    Template {
        /// Where the template came from.
        what: String,
        /// minijinja's explanation.
        message: String,
    },
    /// An objective of another crate refused the data or the model; its own error inside.
    #[error("the objective refused the run: {0}")]
    Objective(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl CoreError {
    /// The invalid input this error reports, however deep in the crates it was found.
    pub fn invalid(&self) -> Option<&InvalidInput> {
        match self {
            Self::Invalid(invalid) => Some(invalid),
            _ => None,
        }
    }
}
