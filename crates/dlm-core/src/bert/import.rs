//! Loading Hugging Face BERT-MLM checkpoints (`pytorch_model.bin` or `model.safetensors`) into
//! [`BertMlm`] through the shared import path ([`crate::hf`]).
//!
//! All key renaming lives here, in [`GLOBAL_KEYS`] and [`LAYER_KEYS`]: Hugging Face name →
//! [`BertMlm`] module path. Before anything is applied, the file is checked against the names
//! and shapes the config implies, so a missing, unexpected or mis-shaped tensor is a typed error
//! naming the file's key.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;

use super::config::BertConfig;
use super::model::BertMlm;
use crate::error::CoreError;
use crate::hf::{ExpectedTensor, load_module, read_tensors};

/// Tensors outside the encoder layers: (Hugging Face key, module path).
const GLOBAL_KEYS: &[(&str, &str)] = &[
    ("bert.embeddings.word_embeddings.weight", "embeddings.word.weight"),
    ("bert.embeddings.position_embeddings.weight", "embeddings.position.weight"),
    ("bert.embeddings.token_type_embeddings.weight", "embeddings.token_type.weight"),
    ("bert.embeddings.LayerNorm.weight", "embeddings.norm.weight"),
    ("bert.embeddings.LayerNorm.bias", "embeddings.norm.bias"),
    ("cls.predictions.transform.dense.weight", "head.transform.weight"),
    ("cls.predictions.transform.dense.bias", "head.transform.bias"),
    ("cls.predictions.transform.LayerNorm.weight", "head.norm.weight"),
    ("cls.predictions.transform.LayerNorm.bias", "head.norm.bias"),
    ("cls.predictions.bias", "head.bias"),
];

/// The untied decoder (only read when `tie_word_embeddings` is false).
const DECODER_KEY: (&str, &str) = ("cls.predictions.decoder.weight", "head.decoder.weight");

/// Tensors of encoder layer `i`: (suffix after `bert.encoder.layer.{i}.`, suffix after
/// `layers.{i}.`).
const LAYER_KEYS: &[(&str, &str)] = &[
    ("attention.self.query.weight", "query.weight"),
    ("attention.self.query.bias", "query.bias"),
    ("attention.self.key.weight", "key.weight"),
    ("attention.self.key.bias", "key.bias"),
    ("attention.self.value.weight", "value.weight"),
    ("attention.self.value.bias", "value.bias"),
    ("attention.output.dense.weight", "attention_out.weight"),
    ("attention.output.dense.bias", "attention_out.bias"),
    ("attention.output.LayerNorm.weight", "attention_norm.weight"),
    ("attention.output.LayerNorm.bias", "attention_norm.bias"),
    ("intermediate.dense.weight", "intermediate.weight"),
    ("intermediate.dense.bias", "intermediate.bias"),
    ("output.dense.weight", "output.weight"),
    ("output.dense.bias", "output.bias"),
    ("output.LayerNorm.weight", "output_norm.weight"),
    ("output.LayerNorm.bias", "output_norm.bias"),
];

/// Keys a BERT-MLM checkpoint may hold that this model does not use: buffers, the pooler, other
/// pre-training heads (next-sentence, AntiBERTy's species/chain/graft), and the decoder copies
/// Hugging Face ties to the embeddings.
fn is_ignored(key: &str, tied: bool) -> bool {
    key.ends_with("position_ids")
        || key.starts_with("bert.pooler.")
        || key.starts_with("cls.seq_relationship.")
        || key.starts_with("cls.species.")
        || key.starts_with("cls.chain.")
        || key.starts_with("cls.graft.")
        || key == "cls.predictions.decoder.bias"
        || (tied && key == DECODER_KEY.0)
}

/// The file's name for a tensor, with layer-norm parameters called `weight`/`bias` whatever the
/// file says (old TensorFlow-converted checkpoints use `gamma`/`beta`).
fn canonical(key: &str) -> String {
    if let Some(stem) = key.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = key.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        key.to_string()
    }
}

/// Every tensor the config implies: (Hugging Face key, module path, shape in the file's
/// layout — PyTorch's `[out, in]` for linear weights).
pub(crate) fn expected_tensors(config: &BertConfig) -> Vec<(String, String, Vec<usize>)> {
    let (h, v, ff) = (config.hidden_size, config.vocab_size, config.intermediate_size);
    let global_shape = |key: &str| -> Vec<usize> {
        match key {
            "bert.embeddings.word_embeddings.weight" => vec![v, h],
            "bert.embeddings.position_embeddings.weight" => {
                vec![config.max_position_embeddings, h]
            }
            "bert.embeddings.token_type_embeddings.weight" => vec![config.type_vocab_size, h],
            "cls.predictions.transform.dense.weight" => vec![h, h],
            "cls.predictions.bias" => vec![v],
            _ => vec![h],
        }
    };
    let layer_shape = |suffix: &str| -> Vec<usize> {
        match suffix {
            "intermediate.dense.weight" => vec![ff, h],
            "intermediate.dense.bias" => vec![ff],
            "output.dense.weight" => vec![h, ff],
            s if s.ends_with("weight") && !s.contains("LayerNorm") => vec![h, h],
            _ => vec![h],
        }
    };
    let mut expected: Vec<(String, String, Vec<usize>)> = GLOBAL_KEYS
        .iter()
        .map(|(key, path)| (key.to_string(), path.to_string(), global_shape(key)))
        .collect();
    if !config.tie_word_embeddings {
        expected.push((DECODER_KEY.0.into(), DECODER_KEY.1.into(), vec![v, h]));
    }
    for layer in 0..config.num_hidden_layers {
        for (suffix, path) in LAYER_KEYS {
            expected.push((
                format!("bert.encoder.layer.{layer}.{suffix}"),
                format!("layers.{layer}.{path}"),
                layer_shape(suffix),
            ));
        }
    }
    expected
}

impl BertMlm {
    /// A model from a Hugging Face directory: `config.json` and `model.safetensors` or
    /// `pytorch_model.bin` (the first that exists).
    ///
    /// # Errors
    /// As [`BertConfig::from_json_file`] and [`BertMlm::load`]; [`CoreError::Io`] naming
    /// `pytorch_model.bin` when neither weight file exists.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self, CoreError> {
        let dir = dir.as_ref();
        let config = BertConfig::from_json_file(dir.join("config.json"))?;
        let safetensors = dir.join("model.safetensors");
        let weights =
            if safetensors.exists() { safetensors } else { dir.join("pytorch_model.bin") };
        Self::load(&config, weights, device)
    }

    /// Loads a `BertForMaskedLM` checkpoint (PyTorch `.bin` or `.safetensors`; any float
    /// dtype, cast to `f32`) into a model of `config`.
    ///
    /// # Errors
    /// [`CoreError::Io`] if the file cannot be read; [`CoreError::WeightsFormat`] if it is
    /// neither format; [`CoreError::Weights`] if the reader fails on it;
    /// [`CoreError::MissingTensor`], [`CoreError::UnexpectedTensor`] and
    /// [`CoreError::TensorShape`] naming the file's key when it does not fit `config`; the
    /// errors of [`BertConfig::validate`].
    pub fn load(
        config: &BertConfig,
        weights: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, CoreError> {
        let path = weights.as_ref();
        config.validate()?;
        let tensors: BTreeMap<String, _> = read_tensors(&[path.to_path_buf()])?
            .into_iter()
            .map(|(key, tensor)| (canonical(&key), tensor))
            .collect();
        let expected: Vec<ExpectedTensor> = expected_tensors(config)
            .into_iter()
            .map(|(key, module_path, shape)| ExpectedTensor::new(key, module_path, shape))
            .collect();
        let tied = config.tie_word_embeddings;
        let ignored = |key: &str| is_ignored(key, tied);
        load_module(&tensors, &expected, ignored, path, || config.init(device))
    }
}
