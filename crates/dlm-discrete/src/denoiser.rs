//! [`MaskedDenoiser`]: what masked-diffusion losses and samplers need from a model, and the SUBS
//! parameterisation that turns a [`Denoiser`]'s logits into it.

use std::ops::Range;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Int, Tensor};
use dlm_core::backbone::{Denoiser, DenoiserInput, TokenModel};

/// The value SUBS uses for "impossible" log-probabilities: MDLM's `neg_infinity = −1e6`, finite
/// so that `−∞ − (−∞)` never makes a NaN.
pub const NEG_INFINITY: f64 = -1e6;

/// A model of the clean tokens given a partly masked sequence: `log p_θ(x0 | z_t)`.
///
/// Implementations follow SUBS (below): the mask token has probability 0, and an unmasked
/// position puts all its mass on its current token.
pub trait MaskedDenoiser {
    /// `log p_θ(x0 | z_t, t)`.
    ///
    /// # Shapes
    /// - `z_t`: `[batch, seq_len]`, `t`: `[batch]`
    /// - returns `[batch, seq_len, vocab_size]`
    fn log_probs(&self, z_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3>;

    /// `log p_θ(x0 | z_t, t)` at the positions `region` only: what a sampler step decoding one
    /// block needs. The provided method narrows [`MaskedDenoiser::log_probs`]; [`Subs`] runs its
    /// head on the region alone, and a view with a cache (Fast-dLLM's) runs only part of the
    /// sequence.
    ///
    /// # Shapes
    /// - `z_t`: `[batch, seq_len]`, `t`: `[batch]` → `[batch, region.len(), vocab_size]`
    fn region_log_probs(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        region: Range<usize>,
    ) -> Tensor<3> {
        self.log_probs(z_t, t).narrow(1, region.start, region.len())
    }

    /// The model's own `log p_θ(x0 | z_t, t)` at every position of `region`, decoded positions
    /// included: SUBS's zero masking without its carry-over ([`zero_masking_log_probs`]), equal to
    /// [`MaskedDenoiser::region_log_probs`] at masked positions. Token editing
    /// ([`crate::sampler::TokenEditing`]) reads it; `None` (the provided method) where the model
    /// has no prediction at a decoded position (a closed-form posterior).
    ///
    /// # Shapes
    /// - `z_t`: `[batch, seq_len]`, `t`: `[batch]` → `[batch, region.len(), vocab_size]`
    fn region_predictions(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        region: Range<usize>,
    ) -> Option<Tensor<3>> {
        let _ = (z_t, t, region);
        None
    }

    /// Whether the output depends on `t`. Samplers that reuse a prediction when no token changed
    /// require that it does not.
    fn is_time_conditioned(&self) -> bool;

    /// The mask token's id.
    fn mask_id(&self) -> u32;

    /// The ids the model reads are `0..vocab_size`, the mask id included (its output may be
    /// narrower: a closed-form denoiser need not score the mask). Samplers and evaluations refuse
    /// tokens outside it.
    fn vocab_size(&self) -> usize;

    /// The longest sequence the model reads, `None` where any length works (a closed-form
    /// denoiser). Samplers refuse longer states instead of extrapolating silently.
    fn max_seq_len(&self) -> Option<usize>;

    /// `−log p_θ(x0 | z_t, t)` of the true token at masked positions only, all that the
    /// masked-diffusion NELBO needs (under SUBS an unmasked position scores 0). `rows` are the
    /// flat indices `b · seq_len + i` of positions where `z_t` holds the mask.
    ///
    /// The provided method reads it off [`MaskedDenoiser::log_probs`]; a model that can apply its
    /// head to these rows alone ([`Subs`]) overrides it to skip the head and the SUBS passes over
    /// the other positions.
    ///
    /// # Shapes
    /// - `z_t`, `x0`: `[batch, seq_len]`, `t`: `[batch]`, `rows`: `[n_rows]` → `[n_rows]`
    fn masked_nll(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        x0: Tensor<2, Int>,
        rows: Tensor<1, Int>,
    ) -> Tensor<1> {
        let (log_probs, targets) = at_rows(self.log_probs(z_t, t), x0, rows);
        log_probs.gather(1, targets.unsqueeze_dim(1)).squeeze_dim::<1>(1).neg()
    }

    /// `log p_θ(x0 | z_t, t)` at the flat `rows` (`b · seq_len + i`) only, rows where `z_t`
    /// holds the mask: the full distribution at each, for scores that need more than the true
    /// token ([`crate::likelihood`]). The provided method reads it off
    /// [`MaskedDenoiser::log_probs`]; [`Subs`] runs its head on those rows alone.
    ///
    /// # Shapes
    /// - `z_t`: `[batch, seq_len]`, `t`: `[batch]`, `rows`: `[n_rows]` → `[n_rows, vocab_size]`
    fn row_log_probs(&self, z_t: Tensor<2, Int>, t: Tensor<1>, rows: Tensor<1, Int>) -> Tensor<2> {
        let log_probs = self.log_probs(z_t, t);
        let [batch, seq_len, vocab_size] = log_probs.dims();
        log_probs.reshape([batch * seq_len, vocab_size]).select(0, rows)
    }

    /// The device the model computes on.
    fn device(&self) -> Device;
}

/// SUBS (Sahoo et al. 2024, §3.2): from raw logits, (1) *zero masking probabilities*: the mask
/// token's logit is set to [`NEG_INFINITY`] before the softmax; (2) *carry-over unmasking*: at a
/// position whose token is not the mask, the log-probability is 0 for that token and
/// [`NEG_INFINITY`] elsewhere.
///
/// # Shapes
/// - `logits`: `[batch, seq_len, vocab_size]`, `z_t`: `[batch, seq_len]` → `[batch, seq_len, vocab_size]`
pub fn subs_log_probs(logits: Tensor<3>, z_t: Tensor<2, Int>, mask_id: u32) -> Tensor<3> {
    let [batch, seq_len, vocab_size] = logits.dims();
    let log_probs = zero_masking_log_probs(logits, mask_id);
    let is_unmasked: Tensor<3, Bool> = z_t
        .clone()
        .not_equal_elem(mask_id as i64)
        .unsqueeze_dim::<3>(2)
        .expand([batch, seq_len, vocab_size]);
    let carried = z_t.one_hot::<3>(vocab_size).float().sub_scalar(1.0).mul_scalar(-NEG_INFINITY);
    log_probs.mask_where(is_unmasked, carried)
}

/// SUBS's first half alone, *zero masking probabilities*: the log-softmax of `logits` with the
/// mask token's logit set to [`NEG_INFINITY`], at every position (the model's prediction even
/// where the token is decoded, which [`subs_log_probs`] replaces by the token).
///
/// # Shapes
/// - `logits`: `[batch, seq_len, vocab_size]` → `[batch, seq_len, vocab_size]`
pub fn zero_masking_log_probs(logits: Tensor<3>, mask_id: u32) -> Tensor<3> {
    let [batch, seq_len, vocab_size] = logits.dims();
    let is_mask_column = Tensor::<1, Int>::arange(0..vocab_size as i64, &logits.device())
        .equal_elem(mask_id as i64)
        .reshape([1, 1, vocab_size])
        .expand([batch, seq_len, vocab_size]);
    log_softmax(logits.mask_fill(is_mask_column, NEG_INFINITY), 2)
}

/// SUBS's `−log p_θ(x0 | z_t)` at masked positions, from their logits alone: with the mask
/// token's logit set to [`NEG_INFINITY`] (zero masking probabilities),
/// `log Σ_v exp ℓ_v − ℓ_{x0}`, which is [`subs_log_probs`] read at the target of a masked row.
///
/// # Shapes
/// - `logits`: `[n_rows, vocab_size]`, `targets`: `[n_rows]` → `[n_rows]`
pub fn subs_masked_nll(logits: Tensor<2>, targets: Tensor<1, Int>, mask_id: u32) -> Tensor<1> {
    let [n_rows, vocab_size] = logits.dims();
    let is_mask_column = Tensor::<1, Int>::arange(0..vocab_size as i64, &logits.device())
        .equal_elem(mask_id as i64)
        .reshape([1, vocab_size])
        .expand([n_rows, vocab_size]);
    log_softmax(logits.mask_fill(is_mask_column, NEG_INFINITY), 1)
        .gather(1, targets.unsqueeze_dim(1))
        .squeeze_dim::<1>(1)
        .neg()
}

/// The flat indices `b · seq_len + i` of the `true` positions of `is_masked`, for
/// [`MaskedDenoiser::masked_nll`]; `None` when nothing is masked. Reads the mask back to the host
/// (`batch · seq_len` booleans) to learn how many rows there are.
///
/// # Shapes
/// - `is_masked`: `[batch, seq_len]` → `[n_rows]`
pub fn masked_rows(is_masked: Tensor<2, Bool>) -> Option<Tensor<1, Int>> {
    let [batch, seq_len] = is_masked.dims();
    is_masked.reshape([batch * seq_len]).nonzero().into_iter().next()
}

/// A token model (the DiT [`Denoiser`] trained here, or an imported one: any [`TokenModel`])
/// over a vocabulary that contains `mask_id`, read through SUBS.
#[derive(Debug)]
pub struct Subs<'a, M: ?Sized = Denoiser> {
    /// The network.
    pub model: &'a M,
    /// The mask token.
    pub mask_id: u32,
}

impl<M: ?Sized> Clone for Subs<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: ?Sized> Copy for Subs<'_, M> {}

impl<M: TokenModel + ?Sized> MaskedDenoiser for Subs<'_, M> {
    fn log_probs(&self, z_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3> {
        let logits = self.model.forward(DenoiserInput::tokens(z_t.clone()).with_time(t)).output;
        subs_log_probs(logits, z_t, self.mask_id)
    }

    fn region_log_probs(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        region: Range<usize>,
    ) -> Tensor<3> {
        let logits = self.region_logits(z_t.clone(), t, region.clone());
        subs_log_probs(logits, z_t.narrow(1, region.start, region.len()), self.mask_id)
    }

    fn region_predictions(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        region: Range<usize>,
    ) -> Option<Tensor<3>> {
        Some(zero_masking_log_probs(self.region_logits(z_t, t, region), self.mask_id))
    }

    fn is_time_conditioned(&self) -> bool {
        self.model.is_time_conditioned()
    }

    fn mask_id(&self) -> u32 {
        self.mask_id
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn max_seq_len(&self) -> Option<usize> {
        Some(self.model.max_seq_len())
    }

    fn masked_nll(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        x0: Tensor<2, Int>,
        rows: Tensor<1, Int>,
    ) -> Tensor<1> {
        let hidden = self.model.forward_hidden(DenoiserInput::tokens(z_t).with_time(t)).output;
        subs_nll_at_rows(self.model, hidden, x0, rows, self.mask_id)
    }

    fn row_log_probs(&self, z_t: Tensor<2, Int>, t: Tensor<1>, rows: Tensor<1, Int>) -> Tensor<2> {
        let hidden = self.model.forward_hidden(DenoiserInput::tokens(z_t).with_time(t)).output;
        let [batch, seq_len, width] = hidden.dims();
        let logits = self.model.head_rows(hidden.reshape([batch * seq_len, width]).select(0, rows));
        zero_masking_log_probs(logits.unsqueeze_dim(0), self.mask_id).squeeze_dim(0)
    }

    fn device(&self) -> Device {
        self.model.device()
    }
}

impl<M: TokenModel + ?Sized> Subs<'_, M> {
    /// The network's logits at the positions `region`, the head run on those rows only.
    ///
    /// # Shapes
    /// - `z_t`: `[batch, seq_len]`, `t`: `[batch]` → `[batch, region.len(), vocab_size]`
    fn region_logits(&self, z_t: Tensor<2, Int>, t: Tensor<1>, region: Range<usize>) -> Tensor<3> {
        let hidden = self.model.forward_hidden(DenoiserInput::tokens(z_t).with_time(t));
        let [batch, _, width] = hidden.output.dims();
        let n = region.len();
        let hidden = hidden.output.narrow(1, region.start, n).reshape([batch * n, width]);
        let logits = self.model.head_rows(hidden);
        let vocab_size = logits.dims()[1];
        logits.reshape([batch, n, vocab_size])
    }
}

/// [`subs_masked_nll`] at the flat `rows` of `hidden` (the output of
/// [`Denoiser::forward_hidden`]): the head runs on those rows only.
///
/// # Shapes
/// - `hidden`: `[batch, seq_len, d_model]`, `x0`: `[batch, seq_len]`, `rows`: `[n_rows]` → `[n_rows]`
pub fn subs_nll_at_rows(
    model: &(impl TokenModel + ?Sized),
    hidden: Tensor<3>,
    x0: Tensor<2, Int>,
    rows: Tensor<1, Int>,
    mask_id: u32,
) -> Tensor<1> {
    let (hidden, targets) = at_rows(hidden, x0, rows);
    subs_masked_nll(model.head_rows(hidden), targets, mask_id)
}

/// The flat `rows` (`b · seq_len + i`) of a per-position tensor and of the targets `x0`.
///
/// # Shapes
/// - `values`: `[batch, seq_len, dim]`, `x0`: `[batch, seq_len]`, `rows`: `[n_rows]`
///   → `([n_rows, dim], [n_rows])`
fn at_rows(
    values: Tensor<3>,
    x0: Tensor<2, Int>,
    rows: Tensor<1, Int>,
) -> (Tensor<2>, Tensor<1, Int>) {
    let [batch, seq_len, dim] = values.dims();
    let values = values.reshape([batch * seq_len, dim]).select(0, rows.clone());
    (values, x0.reshape([batch * seq_len]).select(0, rows))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    #[test]
    fn subs_zeroes_the_mask_and_carries_unmasked_tokens() {
        let device = Device::flex();
        let logits = Tensor::<3>::random([1, 3, 5], Distribution::Normal(0.0, 1.0), &device);
        let z_t = Tensor::<2, Int>::from_ints([[2, 4, 1]], &device); // mask = 4
        let log_probs = subs_log_probs(logits.clone(), z_t, 4);
        let p: Vec<f32> = log_probs.exp().into_data().iter::<f32>().collect();
        // Position 0 and 2 are unmasked: one-hot on their token.
        assert_eq!(&p[0..5], &[0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(&p[10..15], &[0.0, 1.0, 0.0, 0.0, 0.0]);
        // Position 1 is masked: a softmax over the 4 other tokens, none on the mask.
        assert_eq!(p[9], 0.0);
        assert!((p[5..9].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let raw: Vec<f32> = logits.into_data().iter::<f32>().collect();
        let z: f32 = raw[5..9].iter().map(|l| l.exp()).sum();
        assert!((p[5] - raw[5].exp() / z).abs() < 1e-6);
    }
}
