//! dLLM-Cache (Liu et al. 2025, "dLLM-Cache: Accelerating Diffusion Large Language Models with
//! Adaptive Caching", §3): a full-attention model's per-layer features, kept between the
//! denoising steps and recomputed only where they go stale.
//!
//! Every layer of a pre-norm transformer is `y = x + A(x)`, `z = y + F(y)`. Per layer the cache
//! keeps, for every position, the rotated key and the value of the attention (`K`, `V`), the
//! attention block's output `A` and the feed-forward block's output `F`. A cached pass always
//! carries the current residual stream `x` through every layer, and recomputes the features of
//! each of the two segments (prompt, response) as its [`SegmentUpdate`] says:
//!
//! - [`SegmentUpdate::Recompute`]: every row of the segment (the paper's refresh every `K_p` or
//!   `K_r` steps);
//! - [`SegmentUpdate::Verify`]: the paper's *V-verify* (§3.3): the values `V` of every row are
//!   recomputed, and the `rows` rows whose new value is least similar (cosine) to the cached one
//!   are recomputed wholly (their queries, keys, attention and feed-forward); the other rows keep
//!   their keys and outputs and take the new values;
//! - [`SegmentUpdate::Reuse`]: nothing; the segment's features are read from the cache.
//!
//! The recomputed rows attend to every position's (cached or new) keys and values. A pass that
//! recomputes every row of both segments is the plain forward pass, and fills the cache.
//! Recomputing a row of layer `ℓ` needs its input `x`, which the cached pass always has: the
//! residual stream is never cached.

use burn::tensor::{Int, Tensor};

use super::attention::attend;
use super::rope::RotaryTables;
use super::token_model::TokenModel;
use crate::error::{CoreError, ensure_size, ensure_value};

/// What a cached pass recomputes in one segment of the sequence (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentUpdate {
    /// Every row's features.
    Recompute,
    /// Every row's value, and the whole of the `rows` rows whose value changed most (lowest
    /// cosine similarity to the cached one).
    Verify {
        /// How many rows of the segment are recomputed wholly (at most its length).
        rows: usize,
    },
    /// Nothing: the cached features.
    Reuse,
}

/// What one cached pass recomputes: the prompt's segment and the response's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeaturePass {
    /// The positions `0..prompt_len`.
    pub prompt: SegmentUpdate,
    /// The positions `prompt_len..len`.
    pub response: SegmentUpdate,
}

impl FeaturePass {
    /// Both segments recomputed: the plain forward pass.
    pub const FULL: Self =
        Self { prompt: SegmentUpdate::Recompute, response: SegmentUpdate::Recompute };
}

/// The features of one layer for every position.
#[derive(Debug, Clone)]
pub(crate) struct LayerFeatures {
    /// Rotated keys, `[batch, kv_heads, len, head_dim]`.
    key: Tensor<4>,
    /// Values, `[batch, kv_heads, len, head_dim]`.
    value: Tensor<4>,
    /// The attention block's output `A(x)`, `[batch, len, width]`.
    attention: Tensor<3>,
    /// The feed-forward block's output `F(y)`, `[batch, len, width]`.
    feed_forward: Tensor<3>,
}

/// The per-layer features of one sequence batch, split at `prompt_len` into the prompt and the
/// response segments (see the module docs). Empty until a pass fills it; a pass on an empty
/// cache recomputes everything whatever its [`FeaturePass`] says.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    prompt_len: usize,
    layers: Vec<LayerFeatures>,
}

impl FeatureCache {
    /// An empty cache for sequences whose first `prompt_len` positions are the prompt.
    pub fn new(prompt_len: usize) -> Self {
        Self { prompt_len, layers: Vec::new() }
    }

    /// The length of the prompt segment.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Whether no pass has filled the cache yet.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The `[batch, len]` of the cached sequences, `None` while empty.
    pub fn shape(&self) -> Option<[usize; 2]> {
        self.layers.first().map(|features| {
            let [batch, len, _] = features.attention.dims();
            [batch, len]
        })
    }
}

/// A token model whose full-attention forward pass can run through a [`FeatureCache`]
/// (dLLM-Cache, see the module docs): the DiT [`Denoiser`](super::Denoiser) and the LLaMA family.
pub trait FeatureCachedModel: TokenModel {
    /// The final norm's output at every position of `tokens` (full attention, positions
    /// `0..len`), with each layer's features read from and written to `cache` as `pass` says
    /// (everything recomputed while the cache is empty), and the floating-point operations of the
    /// layers' matrix products (the head's are [`FeatureCachedModel::head_flops_per_row`] per row
    /// it is run on).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, len]`, `time`: `[batch]` → `[batch, len, width]`
    ///
    /// # Errors
    /// [`CoreError::Invalid`] for an empty batch, a sequence longer than the model's context, a
    /// prompt that leaves no response, a filled cache of another batch, length or model (depth,
    /// widths), a verified segment asked for more rows than it has, a token outside the
    /// vocabulary, or, for a time-conditioned model, not one time per sequence.
    fn forward_features(
        &self,
        tokens: Tensor<2, Int>,
        time: Option<Tensor<1>>,
        cache: &mut FeatureCache,
        pass: FeaturePass,
    ) -> Result<(Tensor<3>, u64), CoreError>;

    /// Floating-point operations of the output head on one row.
    fn head_flops_per_row(&self) -> u64;
}

/// Checks a pass of `tokens` through `cache` at the model's boundary (see
/// [`FeatureCachedModel::forward_features`]).
pub(crate) fn check_pass<L: LayerParts>(
    model: &impl TokenModel,
    layers: &[L],
    tokens: &Tensor<2, Int>,
    time: Option<&Tensor<1>>,
    cache: &FeatureCache,
    pass: FeaturePass,
) -> Result<(), CoreError> {
    const CONTEXT: &str = "feature-cached pass";
    let [batch, len] = tokens.dims();
    ensure_size(batch > 0, CONTEXT, "batch", batch, "at least 1")?;
    let max = model.max_seq_len();
    ensure_size(len <= max, CONTEXT, "len", len, format!("at most the model's context, {max}"))?;
    let prompt_len = cache.prompt_len;
    ensure_size(
        prompt_len < len,
        CONTEXT,
        "prompt_len",
        prompt_len,
        format!("less than the sequence length {len}"),
    )?;
    if let Some(shape) = cache.shape() {
        ensure_size(
            shape == [batch, len],
            CONTEXT,
            "tokens",
            batch * len,
            format!("the cached batch × length {} × {}", shape[0], shape[1]),
        )?;
        // A cache of another model: another depth or other widths.
        let fits = cache.layers.len() == layers.len()
            && cache.layers.iter().zip(layers).all(|(features, layer)| {
                let widths = layer.widths();
                let [_, kv_heads, _, head_dim] = features.key.dims();
                features.attention.dims()[2] == widths.model
                    && kv_heads * head_dim == widths.key_value
            });
        ensure_size(
            fits,
            CONTEXT,
            "cache",
            cache.layers.len(),
            format!("layers of this model ({} layers)", layers.len()),
        )?;
    }
    for (name, update, n) in
        [("prompt", pass.prompt, prompt_len), ("response", pass.response, len - prompt_len)]
    {
        if let SegmentUpdate::Verify { rows } = update {
            ensure_size(rows <= n, CONTEXT, name, rows, format!("at most the segment's {n} rows"))?;
        }
    }
    let vocab = model.vocab_size();
    let expected = || format!("ids in 0..{vocab}");
    let bottom = tokens.clone().min().into_scalar::<i64>();
    ensure_value(bottom >= 0, CONTEXT, "tokens", bottom as f64, expected())?;
    let top = tokens.clone().max().into_scalar::<i64>();
    ensure_size((top as usize) < vocab, CONTEXT, "tokens", top as usize, expected())?;
    if model.is_time_conditioned() {
        let times = time.map_or(0, |t| t.dims()[0]);
        ensure_size(
            times == batch,
            CONTEXT,
            "time",
            times,
            format!("one time per sequence ({batch}) for a time-conditioned model"),
        )?;
    }
    Ok(())
}

/// The widths of one layer, for counting a pass's arithmetic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerWidths {
    /// The residual stream's width.
    pub(crate) model: usize,
    /// `heads · head_dim`.
    pub(crate) query: usize,
    /// `kv_heads · head_dim`.
    pub(crate) key_value: usize,
    /// Multiply-adds of the feed-forward block per row.
    pub(crate) feed_forward_macs: usize,
}

impl LayerWidths {
    /// Floating-point operations (two per multiply-add) of the matrix products of recomputing
    /// `rows` rows wholly against `keys` keys, and the values alone of `value_rows` more.
    pub(crate) fn flops(&self, rows: usize, keys: usize, value_rows: usize) -> u64 {
        let (d, q, kv) = (self.model as u64, self.query as u64, self.key_value as u64);
        let (rows, keys, value_rows) = (rows as u64, keys as u64, value_rows as u64);
        let projections = rows * d * (q + 2 * kv) + value_rows * d * kv;
        // Scores q·kᵀ and the weighted sum of values, `head_dim` each per head and key.
        let attention = rows * keys * 2 * q;
        let output = rows * q * d;
        let feed_forward = rows * self.feed_forward_macs as u64;
        2 * (projections + attention + output + feed_forward)
    }
}

/// One pre-norm transformer layer, `y = x + A(x)`, `z = y + F(y)`, in the pieces a feature cache
/// computes on chosen rows. The layer's plain forward pass is the composition of these pieces
/// too, so the two cannot disagree.
pub(crate) trait LayerParts {
    /// What the layer derives from the conditioning vector once per pass (adaLN's shifts, scales
    /// and gates).
    type Conditioning;

    /// # Shapes
    /// - `cond`: `[batch, cond_dim]`
    fn conditioning(&self, cond: Option<&Tensor<2>>) -> Self::Conditioning;

    /// The attention's input: the normed (and modulated) residual stream.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, width]` → `[batch, n, width]`
    fn attention_input(&self, x: Tensor<3>, cond: &Self::Conditioning) -> Tensor<3>;

    /// Rotated queries and keys, and values.
    ///
    /// # Shapes
    /// - `h`: `[batch, n, width]` → `[batch, heads, n, head_dim]`,
    ///   `[batch, kv_heads, n, head_dim]`, `[batch, kv_heads, n, head_dim]`
    fn project(&self, h: Tensor<3>, rotary: &RotaryTables) -> (Tensor<4>, Tensor<4>, Tensor<4>);

    /// The values alone (V-verify's cheap check).
    ///
    /// # Shapes
    /// - `h`: `[batch, n, width]` → `[batch, kv_heads, n, head_dim]`
    fn values(&self, h: Tensor<3>) -> Tensor<4>;

    /// `A(x)` from the attention's context: the output projection (and gate).
    ///
    /// # Shapes
    /// - `context`: `[batch, heads, n, head_dim]` → `[batch, n, width]`
    fn attention_output(&self, context: Tensor<4>, cond: &Self::Conditioning) -> Tensor<3>;

    /// `F(y)`: the norm, (modulation,) MLP (and gate).
    ///
    /// # Shapes
    /// - `y`: `[batch, n, width]` → `[batch, n, width]`
    fn feed_forward(&self, y: Tensor<3>, cond: &Self::Conditioning) -> Tensor<3>;

    /// The layer's widths.
    fn widths(&self) -> LayerWidths;
}

/// Runs `layers` on the residual stream `x` (rotary tables of positions `0..len`), reading and
/// updating `cache` as `pass` says: the hidden states after the last layer, and the pass's
/// floating-point operations.
///
/// # Shapes
/// - `x`: `[batch, len, width]`, `cond`: `[batch, cond_dim]` → `[batch, len, width]`
///
/// # Panics
/// If a filled cache holds another shape, its prompt is not shorter than `len`, or a verified
/// segment asks for more rows than it has (the callers validate these at their boundary).
pub(crate) fn run_cached_layers<L: LayerParts>(
    layers: &[L],
    mut x: Tensor<3>,
    cond: Option<&Tensor<2>>,
    rotary: &RotaryTables,
    cache: &mut FeatureCache,
    pass: FeaturePass,
) -> (Tensor<3>, u64) {
    let [batch, len, _] = x.dims();
    let prompt_len = cache.prompt_len;
    assert!(prompt_len < len, "a prompt of {prompt_len} leaves no response in {len} positions");
    let pass = match cache.shape() {
        None => FeaturePass::FULL,
        Some(shape) => {
            assert_eq!(shape, [batch, len], "a feature cache of another batch or length");
            pass
        }
    };
    let segments = [(0..prompt_len, pass.prompt), (prompt_len..len, pass.response)];
    let mut flops = 0;
    let mut kept = Vec::with_capacity(layers.len());
    // Moved out, so that each layer's tensors have one owner and are updated in place.
    let mut cached = std::mem::take(&mut cache.layers).into_iter();
    for layer in layers {
        let (next, features, layer_flops) =
            cached_layer(layer, x, cond, rotary, cached.next(), &segments);
        x = next;
        flops += layer_flops;
        kept.push(features);
    }
    cache.layers = kept;
    (x, flops)
}

/// One layer of [`run_cached_layers`].
///
/// # Shapes
/// - `x`: `[batch, len, width]` → `[batch, len, width]`
fn cached_layer<L: LayerParts>(
    layer: &L,
    x: Tensor<3>,
    cond: Option<&Tensor<2>>,
    rotary: &RotaryTables,
    cached: Option<LayerFeatures>,
    segments: &[(std::ops::Range<usize>, SegmentUpdate); 2],
) -> (Tensor<3>, LayerFeatures, u64) {
    let [batch, len, width] = x.dims();
    let widths = layer.widths();
    let c = layer.conditioning(cond);
    let h = layer.attention_input(x.clone(), &c);
    let recompute_all = segments.iter().all(|(_, update)| *update == SegmentUpdate::Recompute);
    let old = match cached {
        Some(old) if !recompute_all => old,
        // The plain layer: nothing cached yet, or everything due.
        _ => {
            let (q, key, value) = layer.project(h, rotary);
            let (context, _) = attend(q, key.clone(), value.clone(), None, None);
            let attention = layer.attention_output(context, &c);
            let y = x + attention.clone();
            let feed_forward = layer.feed_forward(y.clone(), &c);
            let flops = widths.flops(batch * len, len, 0);
            return (
                y + feed_forward.clone(),
                LayerFeatures { key, value, attention, feed_forward },
                flops,
            );
        }
    };
    let device = x.device();
    // The rows recomputed wholly, per sequence (every sequence recomputes as many), and the
    // values: those of verified segments are all recomputed.
    let mut rows: Vec<Tensor<2, Int>> = Vec::new();
    let mut value = old.value;
    let mut value_rows = 0;
    for (range, update) in segments {
        let n = range.len();
        match *update {
            SegmentUpdate::Reuse => {}
            SegmentUpdate::Recompute => {
                if n > 0 {
                    let all =
                        Tensor::<1, Int>::arange(range.start as i64..range.end as i64, &device);
                    rows.push(all.unsqueeze_dim::<2>(0).expand([batch, n]));
                }
            }
            SegmentUpdate::Verify { rows: count } => {
                assert!(count <= n, "V-verify of {count} rows in a segment of {n}");
                if n == 0 {
                    continue;
                }
                let fresh = layer.values(h.clone().narrow(1, range.start, n));
                value_rows += batch * n;
                if count > 0 {
                    let stale = value.clone().narrow(2, range.start, n);
                    let changed = least_similar_rows(fresh.clone(), stale, count);
                    rows.push(changed.add_scalar(range.start as i64));
                }
                let [_, kv_heads, _, head_dim] = value.dims();
                value =
                    value.slice_assign([0..batch, 0..kv_heads, range.clone(), 0..head_dim], fresh);
            }
        }
    }
    let keys = old.key;
    if rows.is_empty() {
        let flops = widths.flops(0, len, value_rows);
        let y = x + old.attention.clone();
        let z = y + old.feed_forward.clone();
        let features = LayerFeatures { key: keys, value, ..old };
        return (z, features, flops);
    }
    let rows = Tensor::cat(rows, 1);
    let m = rows.dims()[1];
    let q_rows = rows.clone().unsqueeze_dim::<3>(2).expand([batch, m, width]);
    let (q, key, fresh_value) =
        layer.project(h.gather(1, q_rows.clone()), &rotary.rows(rows.clone()));
    let kv_rows = |t: &Tensor<4>| {
        let [_, kv_heads, _, head_dim] = t.dims();
        rows.clone().reshape([batch, 1, m, 1]).expand([batch, kv_heads, m, head_dim])
    };
    let key = assign_rows(keys, 2, kv_rows(&key), key);
    let value = assign_rows(value, 2, kv_rows(&fresh_value), fresh_value);
    let (context, _) = attend(q, key.clone(), value.clone(), None, None);
    let attention =
        assign_rows(old.attention, 1, q_rows.clone(), layer.attention_output(context, &c));
    let y = x + attention.clone();
    let fed = layer.feed_forward(y.clone().gather(1, q_rows.clone()), &c);
    let feed_forward = assign_rows(old.feed_forward, 1, q_rows, fed);
    let flops = widths.flops(batch * m, len, value_rows);
    (y + feed_forward.clone(), LayerFeatures { key, value, attention, feed_forward }, flops)
}

/// `base` with the entries at `indices` along `dim` replaced by `values`: burn's scatter adds
/// (its assigning update is not on every backend), so the difference to the old entries is added,
/// exact up to rounding of the order of `ε·|old|`. `indices` must not repeat within a row.
///
/// # Shapes
/// - `indices`, `values`: the shape of `base` with `dim` narrowed to the rows replaced
fn assign_rows<const D: usize>(
    base: Tensor<D>,
    dim: usize,
    indices: Tensor<D, Int>,
    values: Tensor<D>,
) -> Tensor<D> {
    let old = base.clone().gather(dim, indices.clone());
    base.scatter(dim, indices, values - old, burn::tensor::IndexingUpdateOp::Add)
}

/// V-verify's choice (Liu et al. 2025, §3.3): per sequence, the `count` positions whose new value
/// vector (all key/value heads together) has the lowest cosine similarity to the cached one.
///
/// # Shapes
/// - `fresh`, `stale`: `[batch, kv_heads, n, head_dim]` → `[batch, count]` positions in `0..n`
pub(crate) fn least_similar_rows(
    fresh: Tensor<4>,
    stale: Tensor<4>,
    count: usize,
) -> Tensor<2, Int> {
    let [batch, kv_heads, n, head_dim] = fresh.dims();
    let flat = |t: Tensor<4>| t.swap_dims(1, 2).reshape([batch, n, kv_heads * head_dim]);
    let (fresh, stale) = (flat(fresh), flat(stale));
    let dot = (fresh.clone() * stale.clone()).sum_dim(2);
    let norms = fresh.powi_scalar(2).sum_dim(2).sqrt() * stale.powi_scalar(2).sum_dim(2).sqrt();
    // A zero vector has similarity 0 to everything, not NaN.
    let cosine = (dot / norms.clamp_min(1e-8)).reshape([batch, n]);
    cosine.neg().topk_with_indices(count, 1).1
}

#[cfg(test)]
mod tests;
