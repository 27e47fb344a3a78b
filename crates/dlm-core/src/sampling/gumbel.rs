//! Categorical sampling by the Gumbel-max trick, in float64.

use burn::tensor::{DType, Distribution, FloatDType, Int, Tensor};

/// The smallest uniform used, so that `−ln(−ln u)` stays finite.
const U_MIN: f64 = f64::MIN_POSITIVE;
/// The largest uniform below 1 in `f64`.
const U_MAX: f64 = 1.0 - f64::EPSILON / 2.0;

/// Gumbel noise `g = −ln(−ln u)` from uniforms `u ∈ (0, 1)`, computed in float64.
///
/// Gumbel-max: `argmax_k (l_k + g_k)` is a draw from `softmax(l)` (Gumbel 1954; Maddison et al.
/// 2014, §2). The noise must be float64: with float32 uniforms the largest Gumbel value is about
/// `−ln(−ln(1 − 2⁻²⁴)) ≈ 16.6`, so low-probability tokens are under-sampled and the effective
/// temperature drops (Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic
/// masked models and exploit inaccurate categorical sampling", arXiv 2409.02908). Uniforms are clamped into
/// `[f64::MIN_POSITIVE, 1 − 2⁻⁵³]`.
///
/// # Shapes
/// - `uniforms`: any shape → the same shape, dtype `f64`
pub fn gumbel_from_uniforms<const D: usize>(uniforms: Tensor<D>) -> Tensor<D> {
    uniforms.cast(FloatDType::F64).clamp(U_MIN, U_MAX).log().neg().log().neg()
}

/// Draws float64 Gumbel noise on `device` from the device's random stream (seed it with
/// `device.seed`); same seed, same noise on the same backend.
///
/// # Shapes
/// - returns `shape`, dtype `f64`
pub fn draw_gumbel<const D: usize>(shape: [usize; D], device: &burn::tensor::Device) -> Tensor<D> {
    let uniforms = Tensor::<D>::random(shape, Distribution::Default, (device, DType::F64));
    gumbel_from_uniforms(uniforms)
}

/// `argmax_k (logits_k / temperature + gumbel_k)` over the last dimension, in float64: a draw from
/// `softmax(logits / temperature)`. `temperature = 0` is the argmax of the logits (the noise is
/// ignored). Logits of `−∞` (filtered tokens) are never drawn.
///
/// # Shapes
/// - `logits`: `[batch, seq_len, vocab_size]`
/// - `gumbel`: `[batch, seq_len, vocab_size]` (see [`gumbel_from_uniforms`])
/// - returns `[batch, seq_len]`
///
/// # Panics
/// If the shapes differ.
pub fn gumbel_max(logits: Tensor<3>, gumbel: Tensor<3>, temperature: f64) -> Tensor<2, Int> {
    if temperature == 0.0 {
        return logits.argmax(2).squeeze_dim(2);
    }
    let scaled = logits.cast(FloatDType::F64).div_scalar(temperature);
    (scaled + gumbel.cast(FloatDType::F64)).argmax(2).squeeze_dim(2)
}
