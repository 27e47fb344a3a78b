//! dLLM-Cache (Liu et al. 2025, arXiv 2506.06295): masked decoding of a full-attention model
//! with its per-layer features cached between steps, the prompt's refreshed every `K_p` calls,
//! the response's every `K_r`, and in between V-verify's partial update.

use std::cell::{Cell, RefCell};
use std::ops::Range;

use burn::tensor::{Device, Int, Tensor};
use dlm_core::backbone::{FeatureCache, FeatureCachedModel, FeaturePass, SegmentUpdate};
use dlm_discrete::sampler::{MaskedSampler, Observer, SamplerState};
use dlm_discrete::{MaskedDenoiser, Subs, subs_log_probs, zero_masking_log_probs};
use dlm_sched::ensure_value;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{BlockError, ensure_size};

const CONTEXT: &str = "dLLM-Cache";

/// dLLM-Cache's refresh rule (Liu et al. 2025, §3.2–3.3). The model calls of one generation are
/// counted from 1; call `s` recomputes
/// - the prompt's features iff `(s − 1) mod K_p = 0`,
/// - the response's features iff `(s − 1) mod K_r = 0`, and otherwise, with `ρ > 0`, the values of
///   every response position and the whole of the `⌊ρ·L_r⌋` positions (of the `L_r` in the
///   response) whose value changed most (V-verify); with `ρ = 0` nothing of the response.
///
/// The first call recomputes everything; `K_p = K_r = 1` recomputes everything at every call,
/// the plain forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct FeatureCacheSettings {
    /// `K_p`: calls between refreshes of the prompt's features.
    pub prompt_interval: usize,
    /// `K_r`: calls between refreshes of the response's features.
    pub response_interval: usize,
    /// `ρ`: the fraction of the response recomputed wholly in between (V-verify), in `[0, 1]`.
    pub transfer_ratio: f64,
}

dlm_sched::serde_validated!(FeatureCacheSettings);

impl FeatureCacheSettings {
    /// The settings of the paper's LLaDA and Dream demos: `K_p = 100`, `K_r = 7`, `ρ = 0.25`.
    pub const PAPER: Self =
        Self { prompt_interval: 100, response_interval: 7, transfer_ratio: 0.25 };

    /// No caching: every call recomputes everything (the reference).
    pub const NONE: Self = Self { prompt_interval: 1, response_interval: 1, transfer_ratio: 0.0 };

    /// Checked settings.
    ///
    /// # Errors
    /// As [`FeatureCacheSettings::validate`].
    pub fn new(
        prompt_interval: usize,
        response_interval: usize,
        transfer_ratio: f64,
    ) -> Result<Self, BlockError> {
        let settings = Self { prompt_interval, response_interval, transfer_ratio };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the intervals (at least 1) and `ρ ∈ [0, 1]`.
    ///
    /// # Errors
    /// [`BlockError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), BlockError> {
        for (name, interval) in [
            ("prompt_interval", self.prompt_interval),
            ("response_interval", self.response_interval),
        ] {
            ensure_size(interval >= 1, CONTEXT, name, interval, "at least 1")?;
        }
        ensure_value(
            (0.0..=1.0).contains(&self.transfer_ratio),
            CONTEXT,
            "transfer_ratio",
            self.transfer_ratio,
            "in [0, 1]",
        )?;
        Ok(())
    }

    /// What call `step` (counted from 1; 0 reads as 1) recomputes, for a response of
    /// `response_len` positions.
    pub fn pass(&self, step: usize, response_len: usize) -> FeaturePass {
        let due = |interval: usize| step.saturating_sub(1).is_multiple_of(interval);
        let prompt =
            if due(self.prompt_interval) { SegmentUpdate::Recompute } else { SegmentUpdate::Reuse };
        let response = if due(self.response_interval) {
            SegmentUpdate::Recompute
        } else if self.transfer_ratio > 0.0 {
            // `int(L_r·ρ)` in the reference code: the floor.
            let rows = (response_len as f64 * self.transfer_ratio).floor() as usize;
            SegmentUpdate::Verify { rows: rows.min(response_len) }
        } else {
            SegmentUpdate::Reuse
        };
        FeaturePass { prompt, response }
    }
}

/// The result of [`FeatureCachedDecoder::decode`].
#[derive(Debug, Clone)]
pub struct FeatureCachedDecoding {
    /// Prompt and generated tokens, `[batch, prompt_len + gen_len]`.
    pub tokens: Tensor<2, Int>,
    /// Model calls, partial ones included.
    pub nfe: usize,
    /// Floating-point operations of the matrix products of every call (layers and head): a
    /// partial call counts what it computed.
    pub flops: u64,
}

/// Masked decoding of a full-attention model (MDLM- or LLaDA-style) through dLLM-Cache: the
/// masked sampler's own step loop (any policy, whole sequence or semi-autoregressive blocks) run
/// on a view of the model that keeps every layer's features between its calls.
#[derive(Debug, Clone)]
pub struct FeatureCachedDecoder {
    sampler: MaskedSampler,
    settings: FeatureCacheSettings,
}

impl FeatureCachedDecoder {
    /// Decodes with `sampler` through a cache refreshed as `settings` say.
    ///
    /// # Errors
    /// As [`FeatureCacheSettings::validate`].
    pub fn new(sampler: MaskedSampler, settings: FeatureCacheSettings) -> Result<Self, BlockError> {
        settings.validate()?;
        Ok(Self { sampler, settings })
    }

    /// Generates `gen_len` tokens after `prompt` (`[batch, p]`, `p` possibly 0: then the whole
    /// sequence is the response) with `denoiser`'s network, its mask token marking the undecided
    /// positions.
    ///
    /// # Errors
    /// [`BlockError::Invalid`] for `gen_len == 0`; as [`SamplerState::with_prompt`] for a prompt
    /// the model cannot read (ids outside its vocabulary, a mask token, a total length beyond its
    /// context); as [`MaskedSampler::sample`].
    pub fn decode<M: FeatureCachedModel + ?Sized>(
        &self,
        denoiser: &Subs<'_, M>,
        prompt: Tensor<2, Int>,
        gen_len: usize,
        rng: &mut StdRng,
    ) -> Result<FeatureCachedDecoding, BlockError> {
        self.decode_observed(denoiser, prompt, gen_len, rng, &mut ())
    }

    /// As [`FeatureCachedDecoder::decode`], telling `observer` of every step and block.
    ///
    /// # Errors
    /// As [`FeatureCachedDecoder::decode`].
    pub fn decode_observed<M: FeatureCachedModel + ?Sized>(
        &self,
        denoiser: &Subs<'_, M>,
        prompt: Tensor<2, Int>,
        gen_len: usize,
        rng: &mut StdRng,
        observer: &mut dyn Observer,
    ) -> Result<FeatureCachedDecoding, BlockError> {
        ensure_size(gen_len > 0, CONTEXT, "gen_len", gen_len, "at least 1")?;
        let [batch, prompt_len] = prompt.dims();
        let state = if prompt_len > 0 {
            SamplerState::with_prompt(denoiser, prompt, gen_len)?
        } else {
            SamplerState::all_masked(denoiser, batch, gen_len)?
        };
        let view = FeatureCached {
            denoiser: *denoiser,
            settings: self.settings,
            cache: RefCell::new(FeatureCache::new(prompt_len)),
            calls: Cell::new(0),
            flops: Cell::new(0),
        };
        let decoded = self.sampler.sample_observed(&view, state, rng, observer)?;
        Ok(FeatureCachedDecoding {
            tokens: decoded.tokens,
            nfe: decoded.nfe,
            flops: view.flops.get(),
        })
    }
}

/// A full-attention model read through a [`FeatureCache`], for the masked sampler's loop: every
/// call runs one cached pass over the whole sequence and the head on the rows asked for.
struct FeatureCached<'a, M: ?Sized> {
    denoiser: Subs<'a, M>,
    settings: FeatureCacheSettings,
    cache: RefCell<FeatureCache>,
    /// Model calls so far.
    calls: Cell<usize>,
    /// Floating-point operations so far.
    flops: Cell<u64>,
}

impl<M: FeatureCachedModel + ?Sized> FeatureCached<'_, M> {
    /// The logits of the positions `region` after one cached pass.
    ///
    /// # Shapes
    /// - `z_t`: `[batch, len]`, `t`: `[batch]` → `[batch, region.len(), vocab_size]`
    fn region_logits(&self, z_t: Tensor<2, Int>, t: Tensor<1>, region: Range<usize>) -> Tensor<3> {
        let model = self.denoiser.model;
        let [batch, len] = z_t.dims();
        let step = self.calls.get() + 1;
        self.calls.set(step);
        let mut cache = self.cache.borrow_mut();
        let pass = self.settings.pass(step, len - cache.prompt_len());
        let time = model.is_time_conditioned().then_some(t);
        let (hidden, flops) = model
            .forward_features(z_t, time, &mut cache, pass)
            .expect("the decoder checked the prompt, the length and the ids at its boundary");
        let width = hidden.dims()[2];
        let rows =
            hidden.narrow(1, region.start, region.len()).reshape([batch * region.len(), width]);
        let logits = model.head_rows(rows);
        let head = model.head_flops_per_row() * (batch * region.len()) as u64;
        self.flops.set(self.flops.get() + flops + head);
        let vocab_size = logits.dims()[1];
        logits.reshape([batch, region.len(), vocab_size])
    }
}

impl<M: FeatureCachedModel + ?Sized> MaskedDenoiser for FeatureCached<'_, M> {
    fn log_probs(&self, z_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3> {
        let len = z_t.dims()[1];
        self.region_log_probs(z_t, t, 0..len)
    }

    fn region_log_probs(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        region: Range<usize>,
    ) -> Tensor<3> {
        let z_region = z_t.clone().narrow(1, region.start, region.len());
        subs_log_probs(self.region_logits(z_t, t, region), z_region, self.denoiser.mask_id)
    }

    fn region_predictions(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        region: Range<usize>,
    ) -> Option<Tensor<3>> {
        let logits = self.region_logits(z_t, t, region);
        Some(zero_masking_log_probs(logits, self.denoiser.mask_id))
    }

    fn is_time_conditioned(&self) -> bool {
        self.denoiser.is_time_conditioned()
    }

    fn mask_id(&self) -> u32 {
        self.denoiser.mask_id
    }

    fn vocab_size(&self) -> usize {
        self.denoiser.vocab_size()
    }

    fn max_seq_len(&self) -> Option<usize> {
        self.denoiser.max_seq_len()
    }

    fn device(&self) -> Device {
        self.denoiser.device()
    }
}

#[cfg(test)]
mod tests;
