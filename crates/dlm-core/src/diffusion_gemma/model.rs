//! [`DiffusionGemmaLm`]: the DiffusionGemma text model — a causal encoder that fills a KV cache
//! and a bidirectional canvas decoder that reads it, sharing every weight.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::{Bool, Device, Distribution, IndexingUpdateOp, Int, Tensor, TensorData};

use super::config::{AttentionKind, DiffusionGemmaConfig, LayerAttention, rotary_frequencies};
use crate::backbone::{LayerKv, RotaryTables, attend_scaled};
use crate::error::CoreError;

/// `x · (mean(x²) + ε)^(−1/2)` over the last axis: RMSNorm without a weight (Gemma's value norm,
/// router norm and self-conditioning output norm).
fn rms_normalize<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    let mean_square = x.clone().powi_scalar(2).mean_dim(D - 1).add_scalar(eps);
    x * mean_square.powf_scalar(-0.5)
}

/// The gated MLP of Gemma, `down(GELU_tanh(gate(x)) ⊙ up(x))` (GeGLU; Shazeer 2020).
#[derive(Module, Debug)]
struct GatedMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl GatedMlp {
    fn new(hidden: usize, inner: usize, device: &Device) -> Self {
        let linear = |from, to| LinearConfig::new(from, to).with_bias(false).init(device);
        Self { gate: linear(hidden, inner), up: linear(hidden, inner), down: linear(inner, hidden) }
    }

    /// # Shapes
    /// - `x`: `[.., hidden]` → `[.., hidden]`
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.down.forward(gelu_approximate(self.gate.forward(x.clone())) * self.up.forward(x))
    }
}

/// Gemma 4 attention: q/k RMSNorm per head before the rotation, the values normalised without
/// a weight, scores unscaled (`q·kᵀ`, the norms take the place of `1/√d`). A layer without a
/// value projection reads its values from the raw key projection.
#[derive(Module, Debug)]
struct GemmaAttention {
    q: Linear,
    k: Linear,
    v: Option<Linear>,
    o: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    eps: f64,
}

impl GemmaAttention {
    /// # Shapes
    /// - `x`: `[batch, n, hidden]` (normed); `blocked`: `[1 or batch, n, cached + n]`
    /// - returns `[batch, n, hidden]` and the keys/values of the cached and new positions,
    ///   `[batch, num_kv_heads, cached + n, head_dim]`
    fn forward(
        &self,
        x: Tensor<3>,
        rotary: &RotaryTables,
        blocked: Option<Tensor<3, Bool>>,
        cache: Option<&LayerKv>,
    ) -> (Tensor<3>, LayerKv) {
        let [batch, n, _] = x.dims();
        let heads = |t: Tensor<3>, count: usize| t.reshape([batch, n, count, self.head_dim]);
        let q = self.q_norm.forward(heads(self.q.forward(x.clone()), self.num_heads));
        let raw_key = heads(self.k.forward(x.clone()), self.num_kv_heads);
        let raw_value = match &self.v {
            Some(v) => heads(v.forward(x), self.num_kv_heads),
            None => raw_key.clone(),
        };
        let q = rotary.rotate(q.swap_dims(1, 2));
        let key = rotary.rotate(self.k_norm.forward(raw_key).swap_dims(1, 2));
        let value = rms_normalize(raw_value, self.eps).swap_dims(1, 2);
        let (context, kv) = attend_scaled(q, key, value, blocked, cache, Some(1.0));
        let context = context.swap_dims(1, 2).reshape([batch, n, self.num_heads * self.head_dim]);
        (self.o.forward(context), kv)
    }
}

/// Gemma 4's mixture of experts: a router reads the residual stream, each token goes to its
/// `top_k` experts, whose GeGLU outputs are summed with the router's renormalised weights.
///
/// Router: `z = RMSNorm(h) ⊙ scale / √hidden`, `p = softmax(W z)`, the `top_k` largest `p_e`
/// renormalised to sum to 1, times `per_expert_scale_e`. The experts are stored as two stacked
/// tensors in the checkpoint's layout: `gate_up [experts, 2·inner, hidden]` (gate rows first)
/// and `down [experts, hidden, inner]`.
#[derive(Module, Debug)]
struct Experts {
    router: Linear,
    scale: Param<Tensor<1>>,
    per_expert_scale: Param<Tensor<1>>,
    gate_up: Param<Tensor<3>>,
    down: Param<Tensor<3>>,
    top_k: usize,
    eps: f64,
}

impl Experts {
    /// # Shapes
    /// - `residual`: `[tokens, hidden]`, what the router reads; `x`: `[tokens, hidden]`, what
    ///   the experts transform
    /// - returns `[tokens, hidden]`
    fn forward(&self, residual: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        let [tokens, hidden] = x.dims();
        let [num_experts, two_inner, _] = self.gate_up.dims();
        let (inner, k) = (two_inner / 2, self.top_k);
        let device = x.device();
        let z = rms_normalize(residual, self.eps) * self.scale.val().unsqueeze::<2>();
        let probabilities =
            softmax(self.router.forward(z.mul_scalar((hidden as f64).powf(-0.5))), 1);
        let (top, chosen) = probabilities.topk_with_indices(k, 1);
        let top = top.clone() / top.sum_dim(1);
        let chosen = chosen.reshape([tokens * k]);
        let weights =
            top.reshape([tokens * k]) * self.per_expert_scale.val().select(0, chosen.clone());
        // Group the (token, slot) pairs by expert on the host: one matrix product per expert hit.
        let mut routed: Vec<Vec<i64>> = vec![Vec::new(); num_experts];
        for (pair, expert) in chosen.into_data().iter::<i64>().enumerate() {
            routed[expert as usize].push(pair as i64);
        }
        let mut output = Tensor::<2>::zeros([tokens, hidden], &device);
        for (expert, pairs) in routed.into_iter().enumerate() {
            if pairs.is_empty() {
                continue;
            }
            let m = pairs.len();
            let token_of: Vec<i64> = pairs.iter().map(|pair| pair / k as i64).collect();
            let token_of = Tensor::<1, Int>::from_data(TensorData::new(token_of, [m]), &device);
            let pairs = Tensor::<1, Int>::from_data(TensorData::new(pairs, [m]), &device);
            let gate_up = self.gate_up.val().narrow(0, expert, 1).reshape([two_inner, hidden]);
            let down = self.down.val().narrow(0, expert, 1).reshape([hidden, inner]);
            let projected = x.clone().select(0, token_of.clone()).matmul(gate_up.transpose());
            let gated = gelu_approximate(projected.clone().narrow(1, 0, inner))
                * projected.narrow(1, inner, inner);
            let out = gated.matmul(down.transpose())
                * weights.clone().select(0, pairs).unsqueeze_dim::<2>(1);
            output = output.select_assign(0, token_of, out, IndexingUpdateOp::Add);
        }
        output
    }
}

/// Which stack a layer runs in: the weights are shared, the per-layer output scalars are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    Encoder,
    Decoder,
}

/// One Gemma 4 block with its mixture of experts:
/// `h = x + norm(Attn(norm(x)))`,
/// `y = (h + norm(norm₁(MLP(norm(h))) + norm₂(MoE(norm(h); h)))) · s`, with `s` the layer scalar
/// of the stack (encoder or decoder).
#[derive(Module, Debug)]
struct GemmaLayer {
    input_norm: RmsNorm,
    attention: GemmaAttention,
    post_attention_norm: RmsNorm,
    pre_feedforward_norm: RmsNorm,
    mlp: GatedMlp,
    post_feedforward_norm_1: RmsNorm,
    pre_feedforward_norm_2: RmsNorm,
    experts: Experts,
    post_feedforward_norm_2: RmsNorm,
    post_feedforward_norm: RmsNorm,
    encoder_scalar: Param<Tensor<1>>,
    decoder_scalar: Param<Tensor<1>>,
    sliding: bool,
}

impl GemmaLayer {
    /// # Shapes
    /// - `x`: `[batch, n, hidden]`; `blocked`: `[1 or batch, n, cached + n]`
    /// - returns `[batch, n, hidden]` and the keys/values `[batch, kv_heads, cached + n, d]`
    fn forward(
        &self,
        x: Tensor<3>,
        rotary: &RotaryTables,
        blocked: Option<Tensor<3, Bool>>,
        cache: Option<&LayerKv>,
        stack: Stack,
    ) -> (Tensor<3>, LayerKv) {
        let [batch, n, hidden] = x.dims();
        let (attended, kv) =
            self.attention.forward(self.input_norm.forward(x.clone()), rotary, blocked, cache);
        let h = x + self.post_attention_norm.forward(attended);
        let dense = self
            .post_feedforward_norm_1
            .forward(self.mlp.forward(self.pre_feedforward_norm.forward(h.clone())));
        let flat = h.clone().reshape([batch * n, hidden]);
        let sparse = self.experts.forward(flat.clone(), self.pre_feedforward_norm_2.forward(flat));
        let sparse = self.post_feedforward_norm_2.forward(sparse.reshape([batch, n, hidden]));
        let y = h + self.post_feedforward_norm.forward(dense + sparse);
        let scalar = match stack {
            Stack::Encoder => &self.encoder_scalar,
            Stack::Decoder => &self.decoder_scalar,
        };
        (y * scalar.val().unsqueeze::<3>(), kv)
    }
}

/// The decoder's self-conditioning: the previous step's distribution as a soft embedding `s`,
/// `input = RMSNorm(embed(canvas) + MLP(norm(s)))` (the output norm has no weight; at the first
/// step `s = 0`, so the MLP adds nothing).
#[derive(Module, Debug)]
struct SelfConditioning {
    pre_norm: RmsNorm,
    mlp: GatedMlp,
    eps: f64,
}

/// The rotary settings of one kind of layer.
#[derive(Module, Debug)]
struct Rotary {
    head_dim: usize,
    rope_theta: f64,
    rotated_pairs: usize,
}

impl Rotary {
    fn new(shape: &LayerAttention) -> Self {
        Self {
            head_dim: shape.head_dim,
            rope_theta: shape.rope_theta,
            rotated_pairs: shape.rotated_pairs,
        }
    }

    fn tables(&self, positions: Tensor<1, Int>) -> RotaryTables {
        let frequencies = rotary_frequencies(self.head_dim, self.rope_theta, self.rotated_pairs);
        let half = frequencies.len();
        let device = positions.device();
        let frequencies = Tensor::<1>::from_data(TensorData::new(frequencies, [half]), &device);
        RotaryTables::from_inverse_frequencies(positions, frequencies)
    }
}

/// The keys and values the encoder has written: every position for the global layers, the last
/// `sliding_window − 1` for the sliding ones (all a later position can see), as transformers'
/// `DynamicCache` keeps them.
#[derive(Debug, Clone)]
pub struct EncoderCache {
    layers: Vec<LayerKv>,
    len: usize,
}

impl EncoderCache {
    /// Positions encoded so far (the next position's index).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is encoded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows of the batch it was encoded for.
    pub fn batch(&self) -> usize {
        self.layers.first().map_or(0, |kv| kv.key.dims()[0])
    }
}

/// The DiffusionGemma text model (`DiffusionGemmaForBlockDiffusion` of transformers without its
/// vision tower): [`DiffusionGemmaLm::encode`] runs the prompt (and each finished canvas)
/// through the causal encoder into an [`EncoderCache`]; [`DiffusionGemmaLm::decode`] reads a
/// canvas bidirectionally against that cache and returns its soft-capped logits. Encoder and
/// decoder share every weight but the per-layer output scalars; the output head is the token
/// embedding.
#[derive(Module, Debug)]
pub struct DiffusionGemmaLm {
    embed: Embedding,
    layers: Vec<GemmaLayer>,
    norm: RmsNorm,
    self_conditioning: SelfConditioning,
    sliding_rotary: Rotary,
    full_rotary: Rotary,
    sliding_window: usize,
    final_logit_softcap: Option<f64>,
    canvas_length: usize,
    max_seq_len: usize,
}

impl DiffusionGemmaConfig {
    /// Builds the model on `device` (weights to be loaded: norms, scales and layer scalars start
    /// at 1, the experts at N(0, 0.02²), the rest at burn's default initialisers).
    ///
    /// # Errors
    /// As [`DiffusionGemmaConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<DiffusionGemmaLm, CoreError> {
        self.validate()?;
        let (d, eps) = (self.hidden_size, self.rms_norm_eps);
        let linear =
            |from, to| LinearConfig::new(from, to).with_bias(self.attention_bias).init(device);
        let norm = |size| RmsNormConfig::new(size).with_epsilon(eps).init(device);
        let ones = |size| Param::from_tensor(Tensor::<1>::ones([size], device));
        // transformers' initialiser for the stacked experts: N(0, 0.02²).
        let normal = |shape: [usize; 3]| {
            Param::from_tensor(Tensor::<3>::random(shape, Distribution::Normal(0.0, 0.02), device))
        };
        let layers = self
            .layers
            .iter()
            .map(|&kind| {
                let shape = self.layer_attention(kind);
                let (hd, kv) = (shape.head_dim, shape.num_kv_heads);
                let (experts, inner) = (self.num_experts, self.moe_intermediate_size);
                GemmaLayer {
                    input_norm: norm(d),
                    attention: GemmaAttention {
                        q: linear(d, self.num_heads * hd),
                        k: linear(d, kv * hd),
                        v: shape.value_projection.then(|| linear(d, kv * hd)),
                        o: linear(self.num_heads * hd, d),
                        q_norm: norm(hd),
                        k_norm: norm(hd),
                        num_heads: self.num_heads,
                        num_kv_heads: kv,
                        head_dim: hd,
                        eps,
                    },
                    post_attention_norm: norm(d),
                    pre_feedforward_norm: norm(d),
                    mlp: GatedMlp::new(d, self.intermediate_size, device),
                    post_feedforward_norm_1: norm(d),
                    pre_feedforward_norm_2: norm(d),
                    experts: Experts {
                        router: LinearConfig::new(d, experts).with_bias(false).init(device),
                        scale: ones(d),
                        per_expert_scale: ones(experts),
                        gate_up: normal([experts, 2 * inner, d]),
                        down: normal([experts, d, inner]),
                        top_k: self.top_k_experts,
                        eps,
                    },
                    post_feedforward_norm_2: norm(d),
                    post_feedforward_norm: norm(d),
                    encoder_scalar: ones(1),
                    decoder_scalar: ones(1),
                    sliding: kind == AttentionKind::Sliding,
                }
            })
            .collect();
        Ok(DiffusionGemmaLm {
            embed: EmbeddingConfig::new(self.vocab_size, d).init(device),
            layers,
            norm: norm(d),
            self_conditioning: SelfConditioning {
                pre_norm: norm(d),
                mlp: GatedMlp::new(d, self.intermediate_size, device),
                eps,
            },
            sliding_rotary: Rotary::new(&self.sliding),
            full_rotary: Rotary::new(&self.full),
            sliding_window: self.sliding_window,
            final_logit_softcap: self.final_logit_softcap,
            canvas_length: self.canvas_length,
            max_seq_len: self.max_seq_len,
        })
    }
}

impl DiffusionGemmaLm {
    /// The device the model computes on.
    pub fn device(&self) -> Device {
        crate::module_device(self)
    }

    /// Rows of the token embedding.
    pub fn vocab_size(&self) -> usize {
        self.embed.weight.dims()[0]
    }

    /// Tokens per canvas.
    pub fn canvas_length(&self) -> usize {
        self.canvas_length
    }

    /// The context length of the checkpoint.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// `embed(ids) · √hidden` (Gemma's scaled embedding, the scale rounded to `f32`).
    fn embed_scaled(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let hidden = self.embed.weight.dims()[1];
        self.embed.forward(tokens).mul_scalar((hidden as f64).sqrt() as f32)
    }

    /// Runs `tokens` through the causal encoder after what `cache` holds, and returns the
    /// final-norm hidden states and the cache extended by them. Sliding layers see the last
    /// `sliding_window` positions (themselves included), global layers every earlier one.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, n]` → `[batch, n, hidden]`
    ///
    /// # Panics
    /// If `cache` was encoded for another batch size or by a model of another depth.
    pub fn encode(
        &self,
        tokens: Tensor<2, Int>,
        cache: Option<EncoderCache>,
    ) -> (Tensor<3>, EncoderCache) {
        let mut h = self.embed_scaled(tokens);
        let [batch, n, _] = h.dims();
        let device = h.device();
        let offset = cache.as_ref().map_or(0, EncoderCache::len);
        if let Some(cache) = &cache {
            assert_eq!(cache.layers.len(), self.layers.len(), "cache of a model of another depth");
            assert_eq!(cache.batch(), batch, "cache of another batch size");
        }
        let positions = Tensor::<1, Int>::arange(offset as i64..(offset + n) as i64, &device);
        let sliding_rotary = self.sliding_rotary.tables(positions.clone());
        let full_rotary = self.full_rotary.tables(positions);
        let window = self.sliding_window;
        let sliding_kept = offset.min(window.saturating_sub(1));
        let sliding_mask = causal_mask(offset, sliding_kept, n, Some(window), &device);
        let full_mask = causal_mask(offset, offset, n, None, &device);
        let mut kept = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_ref().map(|c| &c.layers[i]);
            let (rotary, mask) = if layer.sliding {
                (&sliding_rotary, &sliding_mask)
            } else {
                (&full_rotary, &full_mask)
            };
            let (next, kv) =
                layer.forward(h, rotary, Some(mask.clone()), layer_cache, Stack::Encoder);
            h = next;
            kept.push(if layer.sliding { keep_last(kv, window.saturating_sub(1)) } else { kv });
        }
        (self.norm.forward(h), EncoderCache { layers: kept, len: offset + n })
    }

    /// Logits of every canvas position, read bidirectionally against the encoder's `cache` (the
    /// canvas sits at positions `cache.len() ..`), soft-capped as `c · tanh(logits / c)`.
    /// `self_conditioning` is the previous denoising step's (tempered) logits, `None` at the
    /// first step.
    ///
    /// # Shapes
    /// - `canvas`: `[batch, canvas]`; `self_conditioning`: `[batch, canvas, vocab]`
    /// - returns `[batch, canvas, vocab]`
    ///
    /// # Panics
    /// If `cache` was encoded for another batch size or by a model of another depth, or the
    /// self-conditioning logits do not match the canvas.
    pub fn decode(
        &self,
        canvas: Tensor<2, Int>,
        self_conditioning: Option<Tensor<3>>,
        cache: &EncoderCache,
    ) -> Tensor<3> {
        let embedded = self.embed_scaled(canvas);
        let [batch, n, hidden] = embedded.dims();
        assert_eq!(cache.layers.len(), self.layers.len(), "cache of a model of another depth");
        assert_eq!(cache.batch(), batch, "cache of another batch size");
        let device = embedded.device();
        let SelfConditioning { pre_norm, mlp, eps } = &self.self_conditioning;
        let conditioned = match self_conditioning {
            Some(logits) => {
                let vocab = self.vocab_size();
                assert_eq!(logits.dims(), [batch, n, vocab], "self-conditioning logits");
                let soft = softmax(logits.reshape([batch * n, vocab]), 1)
                    .matmul(self.embed.weight.val())
                    .mul_scalar((hidden as f64).sqrt() as f32)
                    .reshape([batch, n, hidden]);
                embedded + mlp.forward(pre_norm.forward(soft))
            }
            None => embedded,
        };
        let mut h = rms_normalize(conditioned, *eps);
        let start = cache.len as i64;
        let positions = Tensor::<1, Int>::arange(start..start + n as i64, &device);
        let sliding_rotary = self.sliding_rotary.tables(positions.clone());
        let full_rotary = self.full_rotary.tables(positions);
        for (layer, kv) in self.layers.iter().zip(&cache.layers) {
            let rotary = if layer.sliding { &sliding_rotary } else { &full_rotary };
            h = layer.forward(h, rotary, None, Some(kv), Stack::Decoder).0;
        }
        self.head(self.norm.forward(h))
    }

    /// The tied output head on final-norm hidden states, soft-capped: the decoder's logits, and
    /// the encoder's next-token logits (its auxiliary autoregressive loss).
    ///
    /// # Shapes
    /// - `hidden`: `[batch, n, hidden]` → `[batch, n, vocab]`
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [batch, n, width] = hidden.dims();
        let logits = hidden.reshape([batch * n, width]).matmul(self.embed.weight.val().transpose());
        let logits = match self.final_logit_softcap {
            Some(cap) => logits.div_scalar(cap).tanh().mul_scalar(cap),
            None => logits,
        };
        logits.reshape([batch, n, self.vocab_size()])
    }
}

/// The encoder's mask for `n` queries at positions `offset ..` over `kept` cached keys (the
/// positions just before `offset`) and the `n` new ones: a query sees no later key and, with a
/// `window`, only the last `window` positions, itself included (transformers'
/// `sliding_window_overlay`: `key > query − window`).
///
/// # Shapes
/// - returns `[1, n, kept + n]`, `true` = blocked
fn causal_mask(
    offset: usize,
    kept: usize,
    n: usize,
    window: Option<usize>,
    device: &Device,
) -> Tensor<3, Bool> {
    let keys = kept + n;
    let first_key = offset - kept;
    let mut blocked = Vec::with_capacity(n * keys);
    for i in 0..n {
        let query = offset + i;
        for j in 0..keys {
            let key = first_key + j;
            blocked.push(key > query || window.is_some_and(|w| key + w <= query));
        }
    }
    Tensor::<3, Bool>::from_data(TensorData::new(blocked, [1, n, keys]), device)
}

/// The last `len` positions of a layer's keys and values.
fn keep_last(kv: LayerKv, len: usize) -> LayerKv {
    let total = kv.key.dims()[2];
    if len >= total {
        return kv;
    }
    LayerKv { key: kv.key.narrow(2, total - len, len), value: kv.value.narrow(2, total - len, len) }
}
