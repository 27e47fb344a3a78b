//! The one import path for Hugging Face checkpoints, shared by every architecture (BERT, the
//! LLaMA family): find the weight files of a model directory, read their tensors lazily through
//! burn's readers (`burn::store`), check them against the names and shapes the config implies,
//! and apply them to the model under its own module paths.
//!
//! An architecture contributes only its key table: a list of [`ExpectedTensor`] (the file's key,
//! the module path, the shape in the file's layout) and which extra keys a file may hold. A
//! missing, unexpected or mis-shaped tensor is a typed error naming the file and the key, before
//! anything is applied.

mod weights;

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::burn_pack::Tensor as StoredTensor;
use burn::store::{FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter};
use burn::tensor::DType;

pub use weights::{read_tensors, weight_files};

use crate::error::CoreError;

/// One tensor a checkpoint must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTensor {
    /// Its name in the file.
    pub key: String,
    /// The module path it is applied to (`layers.3.q.weight`).
    pub path: String,
    /// Its shape in the file's layout: PyTorch's `[out, in]` for linear weights.
    pub shape: Vec<usize>,
}

impl ExpectedTensor {
    /// `key` → `path` with `shape`.
    pub fn new(key: impl Into<String>, path: impl Into<String>, shape: Vec<usize>) -> Self {
        Self { key: key.into(), path: path.into(), shape }
    }
}

/// Checks `tensors` (read from `source`, by file key) against `expected`, then builds the
/// model with `build` and applies them under their module paths, cast to `f32` and transposed
/// from PyTorch's layout where burn's differs (linear weights; norm parameters renamed
/// `gamma`/`beta`). Keys of the file that are not expected must satisfy `ignored` (buffers,
/// heads the model has no use for).
///
/// The check comes first, so a config whose sizes the file does not bear out never allocates a
/// model: a crafted `config.json` cannot make the loader allocate more than its files hold.
///
/// # Errors
/// [`CoreError::UnexpectedTensor`], [`CoreError::MissingTensor`] and
/// [`CoreError::TensorShape`] naming `source` and the key; the errors of `build`;
/// [`CoreError::Record`] if burn cannot apply a tensor.
pub fn load_module<M: ModuleSnapshot>(
    tensors: &BTreeMap<String, StoredTensor>,
    expected: &[ExpectedTensor],
    ignored: impl Fn(&str) -> bool,
    source: &Path,
    build: impl FnOnce() -> Result<M, CoreError>,
) -> Result<M, CoreError> {
    let known: std::collections::HashSet<&str> = expected.iter().map(|e| e.key.as_str()).collect();
    if let Some(key) = tensors.keys().find(|key| !known.contains(key.as_str()) && !ignored(key)) {
        return Err(CoreError::UnexpectedTensor { path: source.into(), key: key.clone() });
    }
    let mut renamed = Vec::with_capacity(expected.len());
    for ExpectedTensor { key, path, shape } in expected {
        let tensor = tensors
            .get(key)
            .ok_or_else(|| CoreError::MissingTensor { path: source.into(), key: key.clone() })?;
        if tensor.shape.as_slice() != shape.as_slice() {
            return Err(CoreError::TensorShape {
                path: source.into(),
                key: key.clone(),
                expected: shape.clone(),
                found: tensor.shape.to_vec(),
            });
        }
        let mut tensor = tensor.clone();
        tensor.name = path.clone();
        renamed.push(tensor);
    }
    let mut model = build()?;
    let adapter: Box<dyn ModuleAdapter> =
        Box::new(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)));
    let result = model.apply(renamed, None, Some(adapter), true);
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(CoreError::Record {
            what: source.display().to_string(),
            message: result.to_string(),
        });
    }
    Ok(model)
}

/// Reads a `config.json` (or any JSON file) into `T`.
///
/// # Errors
/// [`CoreError::Io`] and [`CoreError::Json`] naming the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CoreError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| CoreError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text)
        .map_err(|source| CoreError::Json { what: path.display().to_string(), source })
}

/// Deserialises a special-token field of a Hugging Face config: one id, a list of ids, or null
/// (an empty list).
///
/// # Errors
/// The deserializer's, for anything else.
pub fn token_ids<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u32>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u32),
        Many(Vec<u32>),
    }
    use serde::Deserialize;
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(id)) => vec![id],
        Some(OneOrMany::Many(ids)) => ids,
    })
}
