//! [`DitCheckpoint`]: the MDLM and BD3LM research checkpoints (kuleshov-group, Hugging Face
//! remote code) in this library's DiT [`Denoiser`], which has their architecture.
//!
//! Their DDiT (Sahoo et al. 2024, App. C; `mdlm/models/dit.py`, `bd3lms/models/hf/`) is the
//! backbone here: a raw embedding matrix, pre-norm blocks with a fused bias-free q|k|v projection,
//! rotary q and k (base 10⁴), a bias-free output projection, an MLP with biases and the tanh
//! GELU, adaLN modulations `(shift, scale, gate)` twice per block from `c = silu(σ-map(σ))`, a
//! modulated final norm and a linear head with a bias. Their layer norms have no bias (a zero
//! one here). The released checkpoints do not read the time (`time_conditioning: false`: σ is
//! zeroed before the σ-map, so `c` is one constant vector, adaLN still active), which
//! [`DitCheckpoint`] reproduces by feeding `t = 0`.

use std::path::Path;

use burn::store::burn_pack::Tensor as StoredTensor;
use burn::tensor::{Bytes, DType, Device, Tensor};
use serde::Deserialize;

use super::denoiser::{Denoiser, DenoiserConfig, DenoiserInput, DenoiserIo, DenoiserOutput};
use super::token_model::TokenModel;
use crate::error::CoreError;
use crate::hf::{ExpectedTensor, load_module, read_json, read_tensors, weight_files};

/// The two families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DitFamily {
    /// MDLM (`model_type: mdlm`): full attention.
    Mdlm,
    /// BD3LM (`model_type: bd3lm`): block-causal attention over blocks of `block_size`.
    Bd3lm {
        /// The block length it was trained with.
        block_size: usize,
    },
}

/// The fields of their `config.json` this library reads.
#[derive(Debug, Deserialize)]
struct DitJson {
    model_type: String,
    vocab_size: usize,
    model_length: usize,
    hidden_dim: usize,
    cond_dim: usize,
    n_blocks: usize,
    n_heads: usize,
    #[serde(default)]
    time_conditioning: bool,
    block_size: Option<usize>,
}

/// A loaded MDLM or BD3LM checkpoint.
#[derive(Debug)]
pub struct DitCheckpoint {
    /// The network.
    pub model: Denoiser,
    /// Its configuration in this library's terms.
    pub config: DenoiserConfig,
    /// The family.
    pub family: DitFamily,
    /// The mask token: the last id (`vocab_size − 1`; GPT-2's 50257 in the OpenWebText models).
    pub mask_id: u32,
}

impl DitCheckpoint {
    /// Loads `dir` (`config.json` and the weights, prefix `backbone.`).
    ///
    /// # Errors
    /// [`CoreError::Io`] and [`CoreError::Json`] for the config; [`CoreError::Unsupported`] for
    /// another `model_type` or a time-conditioned checkpoint (their σ is the noise level
    /// `σ(t)`, not the time this backbone reads); the import's errors for weights that do not
    /// fit (naming the key).
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self, CoreError> {
        let dir = dir.as_ref();
        let json: DitJson = read_json(&dir.join("config.json"))?;
        let family = match (json.model_type.as_str(), json.block_size) {
            ("mdlm", _) => DitFamily::Mdlm,
            ("bd3lm", Some(block_size)) if block_size > 0 => DitFamily::Bd3lm { block_size },
            (other, block) => {
                return Err(CoreError::Unsupported {
                    context: "DiT checkpoint config",
                    name: "model_type",
                    value: format!("{other} (block_size {block:?})"),
                    supported: "mdlm, or bd3lm with a block_size",
                });
            }
        };
        if json.time_conditioning {
            return Err(CoreError::Unsupported {
                context: "DiT checkpoint config",
                name: "time_conditioning",
                value: "true".into(),
                supported: "false (the released MDLM and BD3LM checkpoints)",
            });
        }
        let config = DenoiserConfig::new(
            DenoiserIo::Tokens { vocab_size: json.vocab_size, tie_embeddings: false },
            json.model_length,
        )
        .with_d_model(json.hidden_dim)
        .with_n_heads(json.n_heads)
        .with_n_layers(json.n_blocks)
        .with_cond_dim(Some(json.cond_dim))
        .with_gelu_tanh(true);
        config.validate()?;
        let (files, source) = weight_files(dir)?;
        let mut tensors = read_tensors(&files)?;
        let expected = expected_tensors(&config, json.cond_dim);
        // Their layer norms have no bias: a zero one, under a key no file holds.
        for ExpectedTensor { key, shape, .. } in &expected {
            if key.contains("norm") && key.ends_with(".bias") {
                tensors.entry(key.clone()).or_insert_with(|| zeros(key, shape[0]));
            }
        }
        // The rotary buffer, and BD3LM's sampling-range buffers.
        let ignored = |key: &str| {
            key == "backbone.rotary_emb.inv_freq"
                || key.ends_with("sampling_eps_min")
                || key.ends_with("sampling_eps_max")
        };
        let model = load_module(&tensors, &expected, ignored, &source, || config.init(device))?;
        let mask_id = (json.vocab_size - 1) as u32;
        Ok(Self { model, config, family, mask_id })
    }
}

fn zeros(key: &str, len: usize) -> StoredTensor {
    StoredTensor::new(
        key.to_string(),
        DType::F32,
        vec![len],
        None,
        Bytes::from_bytes_vec(vec![0; 4 * len]),
    )
}

/// Their names → the DiT's module paths, with the shapes of their (PyTorch) layout.
fn expected_tensors(config: &DenoiserConfig, cond: usize) -> Vec<ExpectedTensor> {
    let DenoiserIo::Tokens { vocab_size: v, .. } = config.io else { unreachable!("a token model") };
    let (d, ff) = (config.d_model, config.mlp_ratio * config.d_model);
    let mut expected = vec![
        ExpectedTensor::new("backbone.vocab_embed.embedding", "input.weight", vec![v, d]),
        ExpectedTensor::new(
            "backbone.sigma_map.mlp.0.weight",
            "time_embedding.hidden.weight",
            vec![cond, 256],
        ),
        ExpectedTensor::new(
            "backbone.sigma_map.mlp.0.bias",
            "time_embedding.hidden.bias",
            vec![cond],
        ),
        ExpectedTensor::new(
            "backbone.sigma_map.mlp.2.weight",
            "time_embedding.out.weight",
            vec![cond, cond],
        ),
        ExpectedTensor::new("backbone.sigma_map.mlp.2.bias", "time_embedding.out.bias", vec![cond]),
    ];
    for i in 0..config.n_layers {
        let block = |key: &str, path: &str, shape: Vec<usize>| {
            ExpectedTensor::new(
                format!("backbone.blocks.{i}.{key}"),
                format!("blocks.{i}.{path}"),
                shape,
            )
        };
        expected.extend([
            block("norm1.weight", "attention_norm.weight", vec![d]),
            block("norm1.bias", "attention_norm.bias", vec![d]),
            block("attn_qkv.weight", "attention.qkv.weight", vec![3 * d, d]),
            block("attn_out.weight", "attention.out.weight", vec![d, d]),
            block("norm2.weight", "mlp_norm.weight", vec![d]),
            block("norm2.bias", "mlp_norm.bias", vec![d]),
            block("mlp.0.weight", "mlp_in.weight", vec![ff, d]),
            block("mlp.0.bias", "mlp_in.bias", vec![ff]),
            block("mlp.2.weight", "mlp_out.weight", vec![d, ff]),
            block("mlp.2.bias", "mlp_out.bias", vec![d]),
            block("adaLN_modulation.weight", "modulation.weight", vec![6 * d, cond]),
            block("adaLN_modulation.bias", "modulation.bias", vec![6 * d]),
        ]);
    }
    expected.extend([
        ExpectedTensor::new(
            "backbone.output_layer.norm_final.weight",
            "final_norm.weight",
            vec![d],
        ),
        ExpectedTensor::new("backbone.output_layer.norm_final.bias", "final_norm.bias", vec![d]),
        ExpectedTensor::new(
            "backbone.output_layer.adaLN_modulation.weight",
            "final_modulation.weight",
            vec![2 * d, cond],
        ),
        ExpectedTensor::new(
            "backbone.output_layer.adaLN_modulation.bias",
            "final_modulation.bias",
            vec![2 * d],
        ),
        ExpectedTensor::new("backbone.output_layer.linear.weight", "head.weight", vec![v, d]),
        ExpectedTensor::new("backbone.output_layer.linear.bias", "head.bias", vec![v]),
    ]);
    expected
}

/// The checkpoint as its family runs it: σ = 0 whatever time a sampler passes.
impl TokenModel for DitCheckpoint {
    fn forward_hidden(&self, input: DenoiserInput) -> DenoiserOutput {
        let batch = input.batch();
        let zero = Tensor::<1>::zeros([batch], &self.model.device());
        self.model.forward_hidden(input.with_time(zero))
    }

    fn head_rows(&self, hidden: Tensor<2>) -> Tensor<2> {
        self.model.head_rows(hidden)
    }

    fn vocab_size(&self) -> usize {
        TokenModel::vocab_size(&self.model)
    }

    fn max_seq_len(&self) -> usize {
        self.model.max_seq_len()
    }

    fn is_time_conditioned(&self) -> bool {
        false
    }

    fn device(&self) -> Device {
        self.model.device()
    }
}
