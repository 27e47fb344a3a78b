//! [`BertMlm`]: a post-norm BERT encoder with its masked-LM head.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor};

use super::config::BertConfig;
use crate::error::CoreError;
use dlm_sched::InvalidInput;

/// Word, position and token-type embeddings, summed and normalised (Devlin et al. 2019, §3.2).
#[derive(Module, Debug)]
pub(crate) struct BertEmbeddings {
    pub(crate) word: Embedding,
    pub(crate) position: Embedding,
    pub(crate) token_type: Embedding,
    pub(crate) norm: LayerNorm,
}

/// One post-norm encoder layer (Vaswani et al. 2017, §3.1, as BERT uses it):
/// `h = LN(x + Attn(x))`, `y = LN(h + W₂·GELU(W₁·h))`.
#[derive(Module, Debug)]
pub(crate) struct BertLayer {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) attention_out: Linear,
    pub(crate) attention_norm: LayerNorm,
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
    pub(crate) output_norm: LayerNorm,
    n_heads: usize,
}

/// The MLM head: `LN(GELU(W·h))`, then the decoder to the vocabulary (the word embeddings,
/// transposed, when tied) plus a bias.
#[derive(Module, Debug)]
pub(crate) struct MlmHead {
    pub(crate) transform: Linear,
    pub(crate) norm: LayerNorm,
    /// An untied decoder, `[H, V]`, without a bias of its own (none when tied to the word
    /// embeddings).
    pub(crate) decoder: Option<Linear>,
    pub(crate) bias: Param<Tensor<1>>,
}

/// BERT with its masked-LM head (Devlin et al. 2019): learned absolute positions, token types,
/// post-norm layers with exact (erf) GELU, and a tied or untied decoder — the architecture of
/// Hugging Face's `BertForMaskedLM`, whose checkpoints [`BertMlm::load`] reads.
///
/// It reads every position at once (no time input): as a masked diffusion denoiser it is
/// time-agnostic, and the samplers of `dlm-discrete` run on it through their SUBS wrapper.
#[derive(Module, Debug)]
pub struct BertMlm {
    pub(crate) embeddings: BertEmbeddings,
    pub(crate) layers: Vec<BertLayer>,
    pub(crate) head: MlmHead,
    vocab_size: usize,
    max_positions: usize,
}

impl BertConfig {
    /// A randomly initialised model on `device`.
    ///
    /// # Errors
    /// As [`BertConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<BertMlm, CoreError> {
        self.validate()?;
        let h = self.hidden_size;
        let norm = || LayerNormConfig::new(h).with_epsilon(self.layer_norm_eps).init(device);
        let linear = |d_in, d_out| LinearConfig::new(d_in, d_out).init(device);
        let layers = (0..self.num_hidden_layers)
            .map(|_| BertLayer {
                query: linear(h, h),
                key: linear(h, h),
                value: linear(h, h),
                attention_out: linear(h, h),
                attention_norm: norm(),
                intermediate: linear(h, self.intermediate_size),
                output: linear(self.intermediate_size, h),
                output_norm: norm(),
                n_heads: self.num_attention_heads,
            })
            .collect();
        Ok(BertMlm {
            embeddings: BertEmbeddings {
                word: EmbeddingConfig::new(self.vocab_size, h).init(device),
                position: EmbeddingConfig::new(self.max_position_embeddings, h).init(device),
                token_type: EmbeddingConfig::new(self.type_vocab_size, h).init(device),
                norm: norm(),
            },
            layers,
            head: MlmHead {
                transform: linear(h, h),
                norm: norm(),
                decoder: (!self.tie_word_embeddings)
                    .then(|| LinearConfig::new(h, self.vocab_size).with_bias(false).init(device)),
                bias: Param::from_tensor(Tensor::zeros([self.vocab_size], device)),
            },
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
        })
    }
}

impl BertLayer {
    /// # Shapes
    /// - `x`: `[batch, n, H]`; `blocked`: `[batch, n, n]`, `true` = a padding key → `[batch, n, H]`
    fn forward(&self, x: Tensor<3>, blocked: Option<Tensor<3, Bool>>) -> Tensor<3> {
        let [batch, n, hidden] = x.dims();
        let head_dim = hidden / self.n_heads;
        let heads = |t: Tensor<3>| t.reshape([batch, n, self.n_heads, head_dim]).swap_dims(1, 2);
        let (q, k, v) = (
            heads(self.query.forward(x.clone())),
            heads(self.key.forward(x.clone())),
            heads(self.value.forward(x.clone())),
        );
        let blocked = blocked.map(|m| m.unsqueeze_dim::<4>(1).expand([batch, self.n_heads, n, n]));
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let context =
            attention(q, k, v, blocked, None, options).swap_dims(1, 2).reshape([batch, n, hidden]);
        let h = self.attention_norm.forward(x + self.attention_out.forward(context));
        let mlp = self.output.forward(gelu(self.intermediate.forward(h.clone())));
        self.output_norm.forward(h + mlp)
    }
}

impl BertMlm {
    /// Vocabulary size `V`.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The longest input (learned positions).
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// MLM logits for every position, with token type 0 and positions `0..n`. With `attention`
    /// (`true` = a real token), padding keys are ignored, as Hugging Face's attention mask does.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, n]`, `n ≤ max_positions`
    /// - `attention`: `[batch, n]`
    /// - returns `[batch, n, V]`
    ///
    /// # Panics
    /// If `n` exceeds [`BertMlm::max_positions`].
    pub fn forward(&self, tokens: Tensor<2, Int>, attention: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let [batch, n] = tokens.dims();
        assert!(n <= self.max_positions, "{n} tokens, at most {} positions", self.max_positions);
        let device = tokens.device();
        let positions =
            Tensor::<1, Int>::arange(0..n as i64, &device).reshape([1, n]).expand([batch, n]);
        let types = Tensor::<2, Int>::zeros([batch, n], &device);
        let e = &self.embeddings;
        let mut x = e.norm.forward(
            e.word.forward(tokens) + e.position.forward(positions) + e.token_type.forward(types),
        );
        let blocked =
            attention.map(|real| real.bool_not().unsqueeze_dim::<3>(1).expand([batch, n, n]));
        for layer in &self.layers {
            x = layer.forward(x, blocked.clone());
        }
        let head = &self.head;
        let h = head.norm.forward(gelu(head.transform.forward(x)));
        let logits = match &head.decoder {
            Some(decoder) => decoder.forward(h),
            None => {
                let hidden = h.dims()[2];
                let word = e.word.weight.val(); // [V, H]
                h.reshape([batch * n, hidden]).matmul(word.transpose()).reshape([
                    batch,
                    n,
                    self.vocab_size,
                ])
            }
        };
        logits + head.bias.val().reshape([1, 1, self.vocab_size])
    }
}

/// Masked-token prediction on one sequence: how many masked positions the argmax gets right and
/// the summed negative log-likelihood (nats) of the true tokens, the numbers behind masked-token
/// accuracy and masked perplexity `exp(nll_sum / count)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskedScores {
    /// Masked positions whose argmax is the true token.
    pub correct: usize,
    /// `−Σ log p(x_i | x_masked)` over the masked positions, accumulated in `f64`.
    pub nll_sum: f64,
    /// Number of masked positions.
    pub count: usize,
}

impl BertMlm {
    /// Masks `positions` of `tokens` with `mask` all at once and scores the model's predictions
    /// of the true tokens there (one forward pass, softmax over the whole vocabulary).
    ///
    /// # Errors
    /// [`CoreError::Invalid`] for a token or `mask` ≥ V, a position outside the sequence or
    /// a sequence longer than the model's positions.
    pub fn masked_scores(
        &self,
        tokens: &[u32],
        positions: &[usize],
        mask: u32,
        device: &Device,
    ) -> Result<MaskedScores, CoreError> {
        let n = tokens.len();
        crate::error::ensure_size(
            n <= self.max_positions,
            "masked scoring",
            "tokens.len()",
            n,
            format!("at most {} (max_position_embeddings)", self.max_positions),
        )?;
        if let Some(&bad) = tokens.iter().chain([&mask]).find(|&&t| t as usize >= self.vocab_size) {
            return Err(CoreError::Invalid(InvalidInput::size(
                "masked scoring",
                "token id",
                bad as usize,
                format!("below vocab_size = {}", self.vocab_size),
            )));
        }
        if let Some(&p) = positions.iter().find(|&&p| p >= n) {
            return Err(CoreError::Invalid(InvalidInput::size(
                "masked scoring",
                "positions",
                p,
                format!("below the sequence length {n}"),
            )));
        }
        let mut masked: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        for &p in positions {
            masked[p] = mask as i64;
        }
        let input = Tensor::<1, Int>::from_ints(masked.as_slice(), device).reshape([1, n]);
        let log_probs = burn::tensor::activation::log_softmax(self.forward(input, None), 2);
        let rows: Vec<f32> = log_probs.into_data().try_to_vec().expect("f32 logits");
        let v = self.vocab_size;
        let mut scores = MaskedScores { correct: 0, nll_sum: 0.0, count: positions.len() };
        for &p in positions {
            let row = &rows[p * v..(p + 1) * v];
            let argmax = (0..v).fold(0, |best, i| if row[i] > row[best] { i } else { best });
            scores.correct += usize::from(argmax == tokens[p] as usize);
            scores.nll_sum -= f64::from(row[tokens[p] as usize]);
        }
        Ok(scores)
    }
}
