//! Multi-head self-attention with rotary embeddings, a mask and a KV cache.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};

use super::kv_cache::LayerKv;
use super::rope::RotaryTables;

/// Configuration of [`SelfAttention`].
#[derive(Config, Debug)]
pub(crate) struct SelfAttentionConfig {
    pub(crate) d_model: usize,
    pub(crate) n_heads: usize,
}

impl SelfAttentionConfig {
    pub(crate) fn init(&self, device: &Device) -> SelfAttention {
        SelfAttention {
            qkv: LinearConfig::new(self.d_model, 3 * self.d_model).with_bias(false).init(device),
            out: LinearConfig::new(self.d_model, self.d_model).with_bias(false).init(device),
            n_heads: self.n_heads,
        }
    }
}

/// Scaled dot-product self-attention, `softmax(q·kᵀ/√d_head + mask)·v` (Vaswani et al. 2017,
/// eq. 1), over `n_heads` heads, with rotary embeddings on `q` and `k`, through burn's fused
/// attention op.
#[derive(Module, Debug)]
pub(crate) struct SelfAttention {
    qkv: Linear,
    out: Linear,
    n_heads: usize,
}

impl SelfAttention {
    /// Rotated queries and keys, and values, from one fused projection.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, d_model]` → each `[batch, n_heads, n, d_head]`
    pub(crate) fn project(
        &self,
        x: Tensor<3>,
        rotary: &RotaryTables,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let qkv = self.qkv.forward(x).chunk(3, 2);
        let [q, k, v]: [Tensor<3>; 3] = qkv.try_into().expect("three chunks");
        (rotary.rotate(self.heads(q)), rotary.rotate(self.heads(k)), self.heads(v))
    }

    /// The values alone: the last third of the fused projection.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, d_model]` → `[batch, n_heads, n, d_head]`
    pub(crate) fn values(&self, x: Tensor<3>) -> Tensor<4> {
        let [batch, n, d_model] = x.dims();
        // `qkv.weight`: `[d_model, 3·d_model]`, the value columns last; the layer has no bias.
        let weight = self.qkv.weight.val().narrow(1, 2 * d_model, d_model);
        let v = x.reshape([batch * n, d_model]).matmul(weight).reshape([batch, n, d_model]);
        self.heads(v)
    }

    /// The output projection of the heads' context.
    ///
    /// # Shapes
    /// - `context`: `[batch, n_heads, n, d_head]` → `[batch, n, d_model]`
    pub(crate) fn output(&self, context: Tensor<4>) -> Tensor<3> {
        let [batch, heads, n, head_dim] = context.dims();
        self.out.forward(context.swap_dims(1, 2).reshape([batch, n, heads * head_dim]))
    }

    /// Splits `[batch, n, d_model]` into heads, `[batch, n_heads, n, d_head]`.
    fn heads(&self, t: Tensor<3>) -> Tensor<4> {
        let [batch, n, d_model] = t.dims();
        t.reshape([batch, n, self.n_heads, d_model / self.n_heads]).swap_dims(1, 2)
    }
}

/// Scaled dot-product attention of the chunk's queries over the cached keys/values and its own,
/// `softmax(q·kᵀ/√d_head + mask)·v` through burn's fused op: the chunk's (rotated) keys and
/// values are appended to `cache`, and with fewer key/value heads than query heads (grouped-query
/// attention) query head `h` reads key/value head `h / (heads / kv_heads)`.
///
/// # Shapes
/// - `q`: `[batch, heads, n, d_head]`; `key`, `value`: `[batch, kv_heads, n, d_head]`
/// - `blocked`: `[batch, n, cached + n]`, `true` = blocked
/// - returns `[batch, heads, n, d_head]` and the keys/values `[batch, kv_heads, cached + n, d_head]`
pub(crate) fn attend(
    q: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    blocked: Option<Tensor<3, Bool>>,
    cache: Option<&LayerKv>,
) -> (Tensor<4>, LayerKv) {
    attend_scaled(q, key, value, blocked, cache, None)
}

/// [`attend`] with the scores scaled by `scale` instead of `1/√d_head` (`None`): Gemma 4's
/// q/k norms make its attention unscaled, `scale = 1`.
///
/// # Shapes
/// As [`attend`].
pub(crate) fn attend_scaled(
    q: Tensor<4>,
    mut key: Tensor<4>,
    mut value: Tensor<4>,
    blocked: Option<Tensor<3, Bool>>,
    cache: Option<&LayerKv>,
    scale: Option<f64>,
) -> (Tensor<4>, LayerKv) {
    if let Some(cache) = cache {
        key = Tensor::cat(vec![cache.key.clone(), key], 2);
        value = Tensor::cat(vec![cache.value.clone(), value], 2);
    }
    let [batch, heads, n, head_dim] = q.dims();
    let [_, kv_heads, n_keys, _] = key.dims();
    let repeat = |t: Tensor<4>| {
        if kv_heads == heads {
            return t;
        }
        t.unsqueeze_dim::<5>(2)
            .expand([batch, kv_heads, heads / kv_heads, n_keys, head_dim])
            .reshape([batch, heads, n_keys, head_dim])
    };
    let blocked =
        blocked.map(|m| libtorch_mask(m.unsqueeze_dim::<4>(1).expand([batch, heads, n, n_keys])));
    let options = AttentionModuleOptions { scale, softcap: None, is_causal: false };
    let context = attention(q, repeat(key.clone()), repeat(value.clone()), blocked, None, options);
    (context, LayerKv { key, value })
}

/// burn's attention mask says `true` = blocked; burn-tch 0.22.1 hands it unchanged to libtorch's
/// fused attention, which reads a boolean mask as `true` = attend. On a plain libtorch device
/// (without autodiff: there burn decomposes attention itself and reads the mask right) the mask
/// is therefore passed inverted. `tests/parity.rs` checks every masked forward pass against flex.
fn libtorch_mask(blocked: Tensor<4, Bool>) -> Tensor<4, Bool> {
    if format!("{:?}", blocked.device()).starts_with("Device<LibTorch(") {
        blocked.bool_not()
    } else {
        blocked
    }
}
