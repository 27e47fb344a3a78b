//! [`LlamaLm`]: the LLaMA-family transformer as a token model with masks and a KV cache.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Bool, Device, Int, Tensor};

use super::config::LlamaConfig;
use crate::backbone::{
    DenoiserInput, DenoiserOutput, DenoiserValues, FeatureCache, FeatureCachedModel, FeaturePass,
    InputParts, KvCache, LayerKv, LayerParts, LayerWidths, RotaryTables, TokenModel, attend,
    check_pass, run_cached_layers,
};
use crate::error::CoreError;

impl LlamaConfig {
    /// Builds the model on `device` (weights to be loaded: linear and embedding initialisers
    /// are burn's defaults, norms start at 1).
    ///
    /// # Errors
    /// As [`LlamaConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<LlamaLm, CoreError> {
        self.validate()?;
        let (d, hd) = (self.hidden_size, self.head_dim);
        let linear = |from: usize, to: usize, bias: bool| {
            LinearConfig::new(from, to).with_bias(bias).init(device)
        };
        let norm =
            |size: usize| RmsNormConfig::new(size).with_epsilon(self.rms_norm_eps).init(device);
        let layers = (0..self.num_layers)
            .map(|_| DecoderLayer {
                input_norm: norm(d),
                q: linear(d, self.num_heads * hd, self.qkv_bias),
                k: linear(d, self.num_kv_heads * hd, self.qkv_bias),
                v: linear(d, self.num_kv_heads * hd, self.qkv_bias),
                o: linear(self.num_heads * hd, d, false),
                q_norm: self.qk_norm.then(|| norm(hd)),
                k_norm: self.qk_norm.then(|| norm(hd)),
                post_norm: norm(d),
                gate: linear(d, self.intermediate_size, false),
                up: linear(d, self.intermediate_size, false),
                down: linear(self.intermediate_size, d, false),
                num_heads: self.num_heads,
                num_kv_heads: self.num_kv_heads,
                head_dim: hd,
            })
            .collect();
        Ok(LlamaLm {
            embed: EmbeddingConfig::new(self.vocab_size, d).init(device),
            layers,
            norm: norm(d),
            head: (!self.tie_embeddings).then(|| linear(d, self.vocab_size, false)),
            head_dim: hd,
            rope_theta: self.rope_theta,
            max_seq_len: self.max_seq_len,
        })
    }
}

/// One pre-norm block: `h = x + o(Attn(norm(x)))`, `y = h + down(silu(gate(norm(h))) ⊙ up(norm(h)))`
/// (SwiGLU, Shazeer 2020).
#[derive(Module, Debug)]
struct DecoderLayer {
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    post_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl DecoderLayer {
    /// # Shapes
    /// - `x`: `[batch, n, hidden]`; `blocked`: `[batch, n, cached + n]` (`true` = blocked)
    /// - returns `[batch, n, hidden]` and the keys/values of every position, `[batch,
    ///   num_kv_heads, cached + n, head_dim]` (rotated keys, before the heads are repeated)
    fn forward(
        &self,
        x: Tensor<3>,
        rotary: &RotaryTables,
        blocked: Option<Tensor<3, Bool>>,
        cache: Option<&LayerKv>,
    ) -> (Tensor<3>, LayerKv) {
        let (q, key, value) = self.project(self.attention_input(x.clone(), &()), rotary);
        let (context, kv) = attend(q, key, value, blocked, cache);
        let h = x + self.attention_output(context, &());
        (h.clone() + self.feed_forward(h, &()), kv)
    }

    /// Splits `[batch, n, count · head_dim]` into `count` heads, `[batch, count, n, head_dim]`,
    /// normed per head when `norm` is given (Qwen3's q/k norms).
    fn heads(&self, t: Tensor<3>, count: usize, norm: &Option<RmsNorm>) -> Tensor<4> {
        let [batch, n, _] = t.dims();
        let t = t.reshape([batch, n, count, self.head_dim]);
        let t = match norm {
            Some(norm) => norm.forward(t),
            None => t,
        };
        t.swap_dims(1, 2)
    }
}

impl LayerParts for DecoderLayer {
    type Conditioning = ();

    fn conditioning(&self, _: Option<&Tensor<2>>) {}

    fn attention_input(&self, x: Tensor<3>, _: &()) -> Tensor<3> {
        self.input_norm.forward(x)
    }

    fn project(&self, h: Tensor<3>, rotary: &RotaryTables) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let q = rotary.rotate(self.heads(self.q.forward(h.clone()), self.num_heads, &self.q_norm));
        let key =
            rotary.rotate(self.heads(self.k.forward(h.clone()), self.num_kv_heads, &self.k_norm));
        (q, key, self.values(h))
    }

    fn values(&self, h: Tensor<3>) -> Tensor<4> {
        self.heads(self.v.forward(h), self.num_kv_heads, &None)
    }

    fn attention_output(&self, context: Tensor<4>, _: &()) -> Tensor<3> {
        let [batch, heads, n, head_dim] = context.dims();
        self.o.forward(context.swap_dims(1, 2).reshape([batch, n, heads * head_dim]))
    }

    fn feed_forward(&self, h: Tensor<3>, _: &()) -> Tensor<3> {
        let normed = self.post_norm.forward(h);
        self.down.forward(silu(self.gate.forward(normed.clone())) * self.up.forward(normed))
    }

    fn widths(&self) -> LayerWidths {
        let [hidden, intermediate] = self.gate.weight.dims();
        LayerWidths {
            model: hidden,
            query: self.num_heads * self.head_dim,
            key_value: self.num_kv_heads * self.head_dim,
            feed_forward_macs: 3 * hidden * intermediate,
        }
    }
}

/// A LLaMA-family transformer over tokens. It reads the same [`DenoiserInput`] as the DiT
/// [`crate::backbone::Denoiser`] (mask, explicit positions, KV cache), so the samplers and caches
/// written for one serve the other; it reads no time.
#[derive(Module, Debug)]
pub struct LlamaLm {
    embed: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    head: Option<Linear>,
    head_dim: usize,
    rope_theta: f64,
    max_seq_len: usize,
}

impl LlamaLm {
    /// The device the model computes on.
    pub fn device(&self) -> Device {
        crate::module_device(self)
    }

    /// Rows of the token embedding.
    pub fn vocab_size(&self) -> usize {
        self.embed.weight.dims()[0]
    }

    /// The context length of the checkpoint.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// Logits of every position of a chunk ([`TokenModel::forward`]).
    ///
    /// # Shapes
    /// - tokens `[batch, n]`; positions `[n]`; custom mask `[batch, n, cache_len + n]`
    /// - output `[batch, n, vocab_size]`
    ///
    /// # Panics
    /// As [`LlamaLm::forward_hidden`].
    pub fn forward(&self, input: DenoiserInput) -> DenoiserOutput {
        TokenModel::forward(self, input)
    }

    /// The output of the final norm.
    ///
    /// # Shapes
    /// - tokens `[batch, n]` → `[batch, n, hidden]`
    ///
    /// # Panics
    /// If the input holds vectors, a cache comes from a model of another depth, or the mask
    /// cannot serve the chunk (as [`crate::backbone::Denoiser::forward`]). A time, if given, is
    /// ignored.
    pub fn forward_hidden(&self, input: DenoiserInput) -> DenoiserOutput {
        let InputParts { values, mask, positions, cache, keep_cache, .. } = input.into_parts();
        let DenoiserValues::Tokens(tokens) = values else {
            panic!("a LLaMA-family model reads tokens, not vectors");
        };
        let mut h = self.embed.forward(tokens);
        let [batch, n, _] = h.dims();
        let device = h.device();
        let offset = cache.as_ref().map_or(0, KvCache::len);
        if let Some(cache) = &cache {
            assert_eq!(
                cache.layers.len(),
                self.layers.len(),
                "cache from a model of another depth"
            );
        }
        if let Some(problem) = mask.problem(offset, n) {
            panic!("attention mask: {problem}");
        }
        let positions = positions.unwrap_or_else(|| mask.default_positions(offset, n, &device));
        let rotary = RotaryTables::new(positions, self.head_dim, self.rope_theta);
        let blocked = mask.blocked(batch, offset, n, offset + n, &device);
        let mut kept = Vec::with_capacity(if keep_cache { self.layers.len() } else { 0 });
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_ref().map(|c| &c.layers[i]);
            let (next, kv) = layer.forward(h, &rotary, blocked.clone(), layer_cache);
            h = next;
            if keep_cache {
                kept.push(kv);
            }
        }
        let output = self.norm.forward(h);
        DenoiserOutput { output, cache: keep_cache.then_some(KvCache { layers: kept }) }
    }

    /// The output head on rows of hidden states: a linear map, or the transposed token
    /// embedding when the weights are tied.
    ///
    /// # Shapes
    /// - `hidden`: `[rows, hidden]` → `[rows, vocab_size]`
    pub fn head_rows(&self, hidden: Tensor<2>) -> Tensor<2> {
        match &self.head {
            Some(head) => head.forward(hidden),
            None => hidden.matmul(self.embed.weight.val().transpose()), // weight: [vocab, hidden]
        }
    }
}

impl TokenModel for LlamaLm {
    fn forward_hidden(&self, input: DenoiserInput) -> DenoiserOutput {
        LlamaLm::forward_hidden(self, input)
    }

    fn head_rows(&self, hidden: Tensor<2>) -> Tensor<2> {
        LlamaLm::head_rows(self, hidden)
    }

    fn vocab_size(&self) -> usize {
        LlamaLm::vocab_size(self)
    }

    fn max_seq_len(&self) -> usize {
        LlamaLm::max_seq_len(self)
    }

    fn is_time_conditioned(&self) -> bool {
        false
    }

    fn device(&self) -> Device {
        LlamaLm::device(self)
    }
}

impl FeatureCachedModel for LlamaLm {
    fn forward_features(
        &self,
        tokens: Tensor<2, Int>,
        time: Option<Tensor<1>>,
        cache: &mut FeatureCache,
        pass: FeaturePass,
    ) -> Result<(Tensor<3>, u64), CoreError> {
        check_pass(self, &self.layers, &tokens, time.as_ref(), cache, pass)?;
        let h = self.embed.forward(tokens);
        let len = h.dims()[1];
        let positions = Tensor::<1, Int>::arange(0..len as i64, &h.device());
        let rotary = RotaryTables::new(positions, self.head_dim, self.rope_theta);
        let (h, flops) = run_cached_layers(&self.layers, h, None, &rotary, cache, pass);
        Ok((self.norm.forward(h), flops))
    }

    fn head_flops_per_row(&self) -> u64 {
        let [vocab, hidden] = self.embed.weight.dims();
        2 * (vocab * hidden) as u64
    }
}
