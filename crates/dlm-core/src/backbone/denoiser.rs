//! [`Denoiser`]: the one transformer every family wraps.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor};

use super::block::{Block, BlockConfig, modulate, zero_linear};
use super::feature_cache::{
    FeatureCache, FeatureCachedModel, FeaturePass, check_pass, run_cached_layers,
};
use super::kv_cache::KvCache;
use super::mask::AttentionMask;
use super::rope::RotaryTables;
use super::time_embedding::{TimeEmbedding, TimeEmbeddingConfig};
use crate::data::SequenceDataset;
use crate::error::{CoreError, ensure_between, ensure_size, ensure_value};

const CONTEXT: &str = "denoiser config";
/// The largest vocabulary a denoiser may have (`2²⁴`).
pub const MAX_VOCAB_SIZE: usize = 1 << 24;
/// The largest width (`d_model`, vector sizes, `cond_dim`): `2¹⁶`.
pub const MAX_WIDTH: usize = 1 << 16;
/// The most layers: 1024.
pub const MAX_LAYERS: usize = 1024;
/// The longest context: `2²⁰` positions.
pub const MAX_SEQ_LEN: usize = 1 << 20;

/// What the denoiser reads and writes.
#[derive(Config, Debug, PartialEq)]
pub enum DenoiserIo {
    /// Token ids in, logits over the vocabulary out (masked, block and autoregressive models).
    Tokens {
        /// Vocabulary size, special tokens (mask, pad, …) included.
        vocab_size: usize,
        /// Whether the output head is the transpose of the token embedding.
        tie_embeddings: bool,
    },
    /// Vectors in, vectors out (diffusion over embeddings).
    Vectors {
        /// Size of the input vectors (e.g. twice the embedding size with self-conditioning).
        input_dim: usize,
        /// Size of the output vectors.
        output_dim: usize,
    },
}

/// Configuration of [`Denoiser`].
#[derive(Config, Debug)]
pub struct DenoiserConfig {
    /// Inputs and outputs.
    pub io: DenoiserIo,
    /// The context length the model is trained for; data pipelines check sequences against it
    /// (rotary embeddings themselves have no maximum).
    pub max_seq_len: usize,
    /// Width of the residual stream.
    #[config(default = 256)]
    pub d_model: usize,
    /// Number of attention heads; must divide `d_model` into an even head size.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Number of transformer blocks.
    #[config(default = 4)]
    pub n_layers: usize,
    /// MLP width as a multiple of `d_model`.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Dropout after attention and MLP (active only when training on an autodiff device).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Size of the time-conditioning vector; `None` for a model that does not see `t` (MDLM's
    /// default, LLaDA).
    #[config(default = "None")]
    pub cond_dim: Option<usize>,
    /// Base of the rotary frequencies.
    #[config(default = 10000.0)]
    pub rope_base: f64,
    /// The MLP's GELU in its tanh approximation (`GELU(approximate='tanh')`, as MDLM's and
    /// BD3LM's released DiT checkpoints use) instead of the exact one.
    #[config(default = false)]
    pub gelu_tanh: bool,
}

impl DenoiserConfig {
    /// A token model without weight tying or time conditioning, with the default sizes.
    pub fn tokens(vocab_size: usize, max_seq_len: usize) -> Self {
        Self::new(DenoiserIo::Tokens { vocab_size, tie_embeddings: false }, max_seq_len)
    }

    /// Checks every size.
    ///
    /// # Errors
    /// [`CoreError`] naming the first offending field: a zero size, `vocab_size < 2`, `n_heads`
    /// not dividing `d_model`, an odd head size, a `dropout` outside `[0, 1)`, a `rope_base`
    /// not `> 1`, an odd or zero `cond_dim`.
    pub fn validate(&self) -> Result<(), CoreError> {
        // Caps (documented in docs/reliability.md): past them a config is a size bomb, an abort
        // at `init` instead of an error. LLaDA-8B (126,464 tokens, width 4096, 32 layers) and
        // Gemma's 262,144-token vocabulary fit well inside.
        let between = |low, name, value, cap| ensure_between(CONTEXT, name, value, low, cap);
        match self.io {
            DenoiserIo::Tokens { vocab_size, .. } => {
                between(2, "vocab_size", vocab_size, MAX_VOCAB_SIZE)?
            }
            DenoiserIo::Vectors { input_dim, output_dim } => {
                between(1, "input_dim", input_dim, MAX_WIDTH)?;
                between(1, "output_dim", output_dim, MAX_WIDTH)?
            }
        }
        between(1, "max_seq_len", self.max_seq_len, MAX_SEQ_LEN)?;
        between(1, "d_model", self.d_model, MAX_WIDTH)?;
        between(1, "n_layers", self.n_layers, MAX_LAYERS)?;
        between(1, "mlp_ratio", self.mlp_ratio, 64)?;
        ensure_size(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            CONTEXT,
            "n_heads",
            self.n_heads,
            format!("a divisor of d_model = {}", self.d_model),
        )?;
        let head_dim = self.d_model / self.n_heads;
        ensure_size(
            head_dim.is_multiple_of(2),
            CONTEXT,
            "d_model / n_heads",
            head_dim,
            "an even head size (rotary embeddings rotate pairs)",
        )?;
        ensure_value(
            (0.0..1.0).contains(&self.dropout),
            CONTEXT,
            "dropout",
            self.dropout,
            "a value in [0, 1)",
        )?;
        ensure_value(
            self.rope_base > 1.0 && self.rope_base.is_finite(),
            CONTEXT,
            "rope_base",
            self.rope_base,
            "a finite value > 1",
        )?;
        if let Some(cond_dim) = self.cond_dim {
            ensure_size(
                cond_dim > 0 && cond_dim.is_multiple_of(2) && cond_dim <= MAX_WIDTH,
                CONTEXT,
                "cond_dim",
                cond_dim,
                "an even size between 2 and MAX_WIDTH",
            )?;
        }
        Ok(())
    }

    /// Checks that sequences of `seq_len` fit the context the model is configured for.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] if `seq_len` is 0 or exceeds `max_seq_len`.
    pub fn check_seq_len(&self, seq_len: usize) -> Result<(), CoreError> {
        check_seq_len(seq_len, self.max_seq_len)
    }

    /// Builds the model on `device`.
    ///
    /// Token embeddings are drawn from `N(0, 0.02²)`; the untied output head and all adaLN
    /// modulations start at zero, so a fresh token model outputs uniform logits.
    ///
    /// # Errors
    /// As [`DenoiserConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<Denoiser, CoreError> {
        self.validate()?;
        let input = match self.io {
            DenoiserIo::Tokens { vocab_size, .. } => InputLayer::Tokens(
                EmbeddingConfig::new(vocab_size, self.d_model)
                    .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
                    .init(device),
            ),
            DenoiserIo::Vectors { input_dim, .. } => InputLayer::Vectors(
                burn::nn::LinearConfig::new(input_dim, self.d_model).init(device),
            ),
        };
        let head = match self.io {
            DenoiserIo::Tokens { tie_embeddings: true, .. } => None,
            DenoiserIo::Tokens { vocab_size, .. } => {
                Some(zero_linear(self.d_model, vocab_size, device))
            }
            DenoiserIo::Vectors { output_dim, .. } => {
                Some(zero_linear(self.d_model, output_dim, device))
            }
        };
        let block = BlockConfig::new(
            self.d_model,
            self.n_heads,
            self.mlp_ratio * self.d_model,
            self.dropout,
        )
        .with_cond_dim(self.cond_dim)
        .with_gelu_tanh(self.gelu_tanh);
        Ok(Denoiser {
            input,
            time_embedding: self.cond_dim.map(|c| TimeEmbeddingConfig::new(c).init(device)),
            blocks: (0..self.n_layers).map(|_| block.init(device)).collect(),
            final_norm: LayerNormConfig::new(self.d_model).init(device),
            final_modulation: self.cond_dim.map(|c| zero_linear(c, 2 * self.d_model, device)),
            head,
            n_heads: self.n_heads,
            rope_base: self.rope_base,
            max_seq_len: self.max_seq_len,
        })
    }
}

fn check_seq_len(seq_len: usize, max_seq_len: usize) -> Result<(), CoreError> {
    Ok(ensure_size(
        seq_len > 0 && seq_len <= max_seq_len,
        "data",
        "seq_len",
        seq_len,
        format!("between 1 and the model's max_seq_len = {max_seq_len}"),
    )?)
}

/// [`Denoiser::check_data`] for any model with a context length and (for token models) a
/// vocabulary.
///
/// # Errors
/// As [`Denoiser::check_data`].
pub fn check_fits(
    data: &SequenceDataset,
    max_seq_len: usize,
    vocab_size: Option<usize>,
) -> Result<(), CoreError> {
    check_seq_len(data.seq_len(), max_seq_len)?;
    if let Some(vocab_size) = vocab_size {
        ensure_size(
            data.vocab_size() <= vocab_size,
            "data",
            "vocab_size",
            data.vocab_size(),
            format!("at most the model's vocab_size = {vocab_size}"),
        )?;
    }
    Ok(())
}

/// The input layer: a token embedding or a projection of continuous vectors.
#[derive(Module, Debug)]
enum InputLayer {
    Tokens(Embedding),
    Vectors(Linear),
}

/// The values a forward pass reads.
#[derive(Debug, Clone)]
pub enum DenoiserValues {
    /// Token ids, `[batch, n]`.
    Tokens(Tensor<2, Int>),
    /// Vectors, `[batch, n, dim]`.
    Vectors(Tensor<3>),
}

/// The arguments of [`Denoiser::forward`], built with chained methods:
///
/// ```
/// # use burn::tensor::{Device, Int, Tensor};
/// # use dlm_core::backbone::{AttentionMask, DenoiserConfig, DenoiserInput};
/// let device = Device::flex();
/// let model = DenoiserConfig::tokens(100, 64).with_cond_dim(Some(64)).init(&device).unwrap();
/// let z_t = Tensor::<2, Int>::zeros([2, 16], &device);
/// let t = Tensor::<1>::from_floats([0.3, 0.7], &device);
/// let input = DenoiserInput::tokens(z_t).with_time(t).with_mask(AttentionMask::Causal);
/// assert_eq!(model.forward(input).output.dims(), [2, 16, 100]);
/// ```
#[derive(Debug, Clone)]
pub struct DenoiserInput {
    values: DenoiserValues,
    time: Option<Tensor<1>>,
    mask: AttentionMask,
    positions: Option<Tensor<1, Int>>,
    cache: Option<KvCache>,
    keep_cache: bool,
}

impl DenoiserInput {
    /// Token ids `[batch, n]`, full attention, no time, no cache.
    pub fn tokens(tokens: Tensor<2, Int>) -> Self {
        Self::new(DenoiserValues::Tokens(tokens))
    }

    /// Vectors `[batch, n, dim]`, full attention, no time, no cache.
    pub fn vectors(vectors: Tensor<3>) -> Self {
        Self::new(DenoiserValues::Vectors(vectors))
    }

    fn new(values: DenoiserValues) -> Self {
        Self {
            values,
            time: None,
            mask: AttentionMask::Full,
            positions: None,
            cache: None,
            keep_cache: false,
        }
    }

    /// The diffusion time of each sequence, `[batch]`; required by time-conditioned models,
    /// ignored by the others.
    pub fn with_time(self, t: Tensor<1>) -> Self {
        Self { time: Some(t), ..self }
    }

    /// The attention mask (default [`AttentionMask::Full`]).
    pub fn with_mask(self, mask: AttentionMask) -> Self {
        Self { mask, ..self }
    }

    /// Explicit rotary position ids `[n]` (default: `cache_len .. cache_len + n`, or where the
    /// mask's [`MaskRule`](crate::backbone::MaskRule) puts them).
    pub fn with_positions(self, positions: Tensor<1, Int>) -> Self {
        Self { positions: Some(positions), ..self }
    }

    /// Runs the chunk against the keys/values of a processed prefix.
    pub fn with_cache(self, cache: KvCache) -> Self {
        Self { cache: Some(cache), ..self }
    }

    /// Returns the keys/values of the prefix and the chunk, for the next call.
    pub fn keep_cache(self) -> Self {
        Self { keep_cache: true, ..self }
    }

    /// Rows of the input.
    pub(crate) fn batch(&self) -> usize {
        match &self.values {
            DenoiserValues::Tokens(tokens) => tokens.dims()[0],
            DenoiserValues::Vectors(vectors) => vectors.dims()[0],
        }
    }

    /// Whether the input runs against a KV cache.
    pub fn has_cache(&self) -> bool {
        self.cache.is_some()
    }

    /// The token ids `[batch, n]` and times `[batch]` of an input that holds nothing else (full
    /// attention, default positions, no cache in or out): rows that can be stacked with other
    /// such rows of the same length into one call. The input itself otherwise.
    ///
    /// # Errors
    /// The input, unchanged, when it holds vectors, another mask, positions or a cache.
    #[allow(clippy::result_large_err)]
    pub fn into_plain_tokens(self) -> Result<(Tensor<2, Int>, Option<Tensor<1>>), Self> {
        let plain = matches!(self.mask, AttentionMask::Full)
            && self.positions.is_none()
            && self.cache.is_none()
            && !self.keep_cache;
        match self.values {
            DenoiserValues::Tokens(tokens) if plain => Ok((tokens, self.time)),
            values => Err(Self { values, ..self }),
        }
    }

    /// The parts, for another model of the crate that reads the same input.
    pub(crate) fn into_parts(self) -> InputParts {
        InputParts {
            values: self.values,
            time: self.time,
            mask: self.mask,
            positions: self.positions,
            cache: self.cache,
            keep_cache: self.keep_cache,
        }
    }
}

/// The fields of a [`DenoiserInput`].
pub(crate) struct InputParts {
    pub(crate) values: DenoiserValues,
    pub(crate) time: Option<Tensor<1>>,
    pub(crate) mask: AttentionMask,
    pub(crate) positions: Option<Tensor<1, Int>>,
    pub(crate) cache: Option<KvCache>,
    pub(crate) keep_cache: bool,
}

/// The result of [`Denoiser::forward`].
#[derive(Debug, Clone)]
pub struct DenoiserOutput {
    /// Logits `[batch, n, vocab_size]` (token models) or vectors `[batch, n, dim]`.
    pub output: Tensor<3>,
    /// The updated cache, when asked for with [`DenoiserInput::keep_cache`].
    pub cache: Option<KvCache>,
}

/// A DiT-style transformer denoiser (Peebles & Xie 2023; MDLM's DDiT, Sahoo et al. 2024,
/// App. C): input embedding, rotary positions, `n_layers` pre-norm blocks with optional adaLN-zero
/// time conditioning, a final norm (modulated when conditioned) and an output head (tied or not).
#[derive(Module, Debug)]
pub struct Denoiser {
    input: InputLayer,
    time_embedding: Option<TimeEmbedding>,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    final_modulation: Option<Linear>,
    head: Option<Linear>,
    n_heads: usize,
    rope_base: f64,
    max_seq_len: usize,
}

impl Denoiser {
    /// The context length the model was configured for ([`DenoiserConfig::max_seq_len`]).
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// The number of token ids the model reads and scores, `None` for a model over vectors.
    pub fn vocab_size(&self) -> Option<usize> {
        match &self.input {
            InputLayer::Tokens(embedding) => Some(embedding.weight.dims()[0]),
            InputLayer::Vectors(_) => None,
        }
    }

    /// Checks that `data` fits the model: sequences no longer than [`Denoiser::max_seq_len`]
    /// and, for a token model, a vocabulary no larger than the model's (every id of the data
    /// then has an embedding row and a logit).
    ///
    /// # Errors
    /// [`CoreError::Invalid`] naming `seq_len` or `vocab_size`.
    pub fn check_data(&self, data: &SequenceDataset) -> Result<(), CoreError> {
        check_fits(data, self.max_seq_len, self.vocab_size())
    }

    /// The device the model computes on.
    pub fn device(&self) -> Device {
        crate::module_device(self)
    }

    /// Whether the model reads the diffusion time.
    pub fn is_time_conditioned(&self) -> bool {
        self.time_embedding.is_some()
    }

    /// Runs the model on a chunk of `n` positions.
    ///
    /// # Shapes
    /// - tokens `[batch, n]` or vectors `[batch, n, dim]`
    /// - time `[batch]`, positions `[n]`, custom mask `[batch, n, cache_len + n]`
    /// - output `[batch, n, vocab_size]` or `[batch, n, dim]`
    ///
    /// # Panics
    /// If the values do not match the model's [`DenoiserIo`], a time-conditioned model gets no
    /// time, a cache comes from a model of another depth, a shape disagrees with the above, or
    /// the mask cannot serve the chunk (a zero block size, or a chunk its [`MaskRule`](crate::backbone::MaskRule) refuses;
    /// build masks with their validating constructors, e.g. [`AttentionMask::block_causal`], to
    /// get these as errors up front).
    pub fn forward(&self, input: DenoiserInput) -> DenoiserOutput {
        let DenoiserOutput { output: h, cache } = self.forward_hidden(input);
        let [batch, n, d_model] = h.dims();
        let output = match (&self.head, &self.input) {
            (Some(head), _) => head.forward(h),
            (None, InputLayer::Tokens(_)) => {
                let logits = self.head_rows(h.reshape([batch * n, d_model]));
                let vocab_size = logits.dims()[1];
                logits.reshape([batch, n, vocab_size])
            }
            (None, InputLayer::Vectors(_)) => unreachable!("vector models always have a head"),
        };
        DenoiserOutput { output, cache }
    }

    /// Runs the model up to its output head: the final norm's output (modulated when the model is
    /// time-conditioned), from which [`Denoiser::head_rows`] computes the logits. A loss that
    /// needs the logits at a few positions only (the masked ones) applies the head to those rows
    /// alone instead of to all `batch · n` of them.
    ///
    /// # Shapes
    /// - input as [`Denoiser::forward`]
    /// - output `[batch, n, d_model]`
    ///
    /// # Panics
    /// As [`Denoiser::forward`].
    pub fn forward_hidden(&self, input: DenoiserInput) -> DenoiserOutput {
        let InputParts { values, time, mask, positions, cache, keep_cache } = input.into_parts();
        let mut h = match (&self.input, values) {
            (InputLayer::Tokens(embedding), DenoiserValues::Tokens(tokens)) => {
                embedding.forward(tokens)
            }
            (InputLayer::Vectors(projection), DenoiserValues::Vectors(vectors)) => {
                projection.forward(vectors)
            }
            _ => panic!("the input values do not match the model's DenoiserIo"),
        };
        let [batch, n, d_model] = h.dims();
        let device = h.device();
        let offset = cache.as_ref().map_or(0, KvCache::len);
        if let Some(cache) = &cache {
            assert_eq!(
                cache.layers.len(),
                self.blocks.len(),
                "cache from a model of another depth"
            );
        }
        if let Some(problem) = mask.problem(offset, n) {
            panic!("attention mask: {problem}");
        }
        let positions = positions.unwrap_or_else(|| mask.default_positions(offset, n, &device));
        let rotary = RotaryTables::new(positions, d_model / self.n_heads, self.rope_base);
        let cond = self.time_embedding.as_ref().map(|embedding| {
            embedding.forward(time.expect("a time-conditioned denoiser needs `with_time`"))
        });
        let blocked = mask.blocked(batch, offset, n, offset + n, &device);
        let mut kept = Vec::with_capacity(if keep_cache { self.blocks.len() } else { 0 });
        for (layer, block) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_ref().map(|c| &c.layers[layer]);
            let (next, kv) = block.forward(h, cond.as_ref(), &rotary, blocked.clone(), layer_cache);
            h = next;
            if keep_cache {
                kept.push(kv);
            }
        }
        let output = self.final_norm_of(h, cond.as_ref());
        DenoiserOutput { output, cache: keep_cache.then_some(KvCache { layers: kept }) }
    }

    /// The final norm, modulated when the model is time-conditioned.
    ///
    /// # Shapes
    /// - `h`: `[batch, n, d_model]`, `cond`: `[batch, cond_dim]` → `[batch, n, d_model]`
    fn final_norm_of(&self, h: Tensor<3>, cond: Option<&Tensor<2>>) -> Tensor<3> {
        let h = self.final_norm.forward(h);
        match (&self.final_modulation, cond) {
            (Some(modulation), Some(cond)) => {
                let m = modulation.forward(silu(cond.clone())).chunk(2, 1);
                modulate(h, m[0].clone(), m[1].clone())
            }
            _ => h,
        }
    }

    /// The output head on rows of hidden states from [`Denoiser::forward_hidden`]: a linear map,
    /// or the transposed token embedding when the weights are tied.
    ///
    /// # Shapes
    /// - `hidden`: `[rows, d_model]` → `[rows, vocab_size]` (or `[rows, output_dim]`)
    pub fn head_rows(&self, hidden: Tensor<2>) -> Tensor<2> {
        match (&self.head, &self.input) {
            (Some(head), _) => head.forward(hidden),
            (None, InputLayer::Tokens(embedding)) => {
                hidden.matmul(embedding.weight.val().transpose()) // weight: [vocab_size, d_model]
            }
            (None, InputLayer::Vectors(_)) => unreachable!("vector models always have a head"),
        }
    }
}

impl FeatureCachedModel for Denoiser {
    fn forward_features(
        &self,
        tokens: Tensor<2, Int>,
        time: Option<Tensor<1>>,
        cache: &mut FeatureCache,
        pass: FeaturePass,
    ) -> Result<(Tensor<3>, u64), CoreError> {
        check_pass(self, &self.blocks, &tokens, time.as_ref(), cache, pass)?;
        let InputLayer::Tokens(embedding) = &self.input else {
            unreachable!("a model over vectors has vocabulary 0, which `check_pass` refuses");
        };
        let h = embedding.forward(tokens);
        let [_, len, d_model] = h.dims();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &h.device());
        let rotary = RotaryTables::new(positions, d_model / self.n_heads, self.rope_base);
        let cond = match (&self.time_embedding, time) {
            (Some(embedding), Some(t)) => Some(embedding.forward(t)),
            _ => None,
        };
        let (h, flops) = run_cached_layers(&self.blocks, h, cond.as_ref(), &rotary, cache, pass);
        Ok((self.final_norm_of(h, cond.as_ref()), flops))
    }

    fn head_flops_per_row(&self) -> u64 {
        let (d_model, vocab) = match (&self.head, &self.input) {
            (Some(head), _) => {
                let [d_in, d_out] = head.weight.dims();
                (d_in, d_out)
            }
            (None, InputLayer::Tokens(embedding)) => {
                let [vocab, d_model] = embedding.weight.dims();
                (d_model, vocab)
            }
            (None, InputLayer::Vectors(_)) => unreachable!("vector models always have a head"),
        };
        2 * (d_model * vocab) as u64
    }
}
