//! The weight files of a Hugging Face model directory and their tensors.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::store::burn_pack::Tensor as StoredTensor;
use burn::store::{ModuleStore, PytorchStore, SafetensorsStore};
use serde::Deserialize;

use crate::error::CoreError;

/// The index of a sharded checkpoint, `model.safetensors.index.json`.
#[derive(Debug, Deserialize)]
struct ShardIndex {
    /// Tensor name → the shard file that holds it.
    weight_map: BTreeMap<String, String>,
}

/// The weight files of the model in `dir`, in the order Hugging Face looks for them:
/// `model.safetensors`; the shards named by `model.safetensors.index.json`; `pytorch_model.bin`.
/// Returns the files and the path errors should name (the file, or the index for shards).
///
/// # Errors
/// [`CoreError::Io`] naming `model.safetensors` when none exists or a shard is missing;
/// [`CoreError::Json`] for an index that does not parse; [`CoreError::Weights`] for an index
/// naming a shard outside the directory.
pub fn weight_files(dir: &Path) -> Result<(Vec<PathBuf>, PathBuf), CoreError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok((vec![single.clone()], single));
    }
    let index_path = dir.join("model.safetensors.index.json");
    if index_path.is_file() {
        let index: ShardIndex = super::read_json(&index_path)?;
        let shards: BTreeSet<&String> = index.weight_map.values().collect();
        let mut files = Vec::with_capacity(shards.len());
        for shard in shards {
            let name = Path::new(shard);
            if name.components().count() != 1 || name.file_name().is_none() {
                return Err(CoreError::Weights {
                    path: index_path,
                    message: format!("shard `{shard}` is not a file name inside the directory"),
                });
            }
            let file = dir.join(name);
            if !file.is_file() {
                let source = std::io::Error::new(std::io::ErrorKind::NotFound, "shard missing");
                return Err(CoreError::Io { path: file, source });
            }
            files.push(file);
        }
        return Ok((files, index_path));
    }
    let pickle = dir.join("pytorch_model.bin");
    if pickle.is_file() {
        return Ok((vec![pickle.clone()], pickle));
    }
    let source = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no model.safetensors, model.safetensors.index.json or pytorch_model.bin",
    );
    Err(CoreError::Io { path: single, source })
}

/// Every tensor of `files` by its name in the file. Tensors are read lazily: their bytes are
/// loaded when applied to a model, one at a time.
///
/// # Errors
/// [`CoreError::Io`] if a file cannot be read; [`CoreError::WeightsFormat`] for a file of
/// neither format; [`CoreError::Weights`] if the reader fails on one, or if two files hold a
/// tensor of the same name.
pub fn read_tensors(files: &[PathBuf]) -> Result<BTreeMap<String, StoredTensor>, CoreError> {
    let mut all = BTreeMap::new();
    for path in files {
        let weights_error = |message: String| CoreError::Weights { path: path.clone(), message };
        let tensors = match detect_format(path)? {
            Format::PyTorch => {
                let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
                store.get_all_tensors().cloned().map_err(|e| weights_error(e.to_string()))?
            }
            Format::Safetensors => {
                let mut store = SafetensorsStore::from_file(path);
                store.get_all_tensors().cloned().map_err(|e| weights_error(e.to_string()))?
            }
        };
        for (key, tensor) in tensors {
            if all.insert(key.clone(), tensor).is_some() {
                return Err(weights_error(format!("tensor `{key}` is also in another shard")));
            }
        }
    }
    Ok(all)
}

/// The two checkpoint formats, told apart by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// PyTorch's zip archive (or the legacy bare pickle).
    PyTorch,
    /// Safetensors: a little-endian `u64` header length, then a JSON header.
    Safetensors,
}

fn detect_format(path: &Path) -> Result<Format, CoreError> {
    let io = |source| CoreError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut head = [0u8; 9];
    let read = file.read(&mut head).map_err(io)?;
    let head = &head[..read];
    // Safetensors first: its header length may itself begin with 0x80, a pickle's first byte.
    if head.len() == 9 {
        let header_len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if head[8] == b'{' && header_len.saturating_add(8) <= size {
            return Ok(Format::Safetensors);
        }
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(&[0x80]) {
        return Ok(Format::PyTorch);
    }
    Err(CoreError::WeightsFormat { path: path.to_path_buf(), head: head.to_vec() })
}
