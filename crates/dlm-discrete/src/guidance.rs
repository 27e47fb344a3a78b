//! Classifier-free guidance for masked diffusion: LLaDA's `cfg_scale`.

use std::ops::Range;

use burn::tensor::{Bool, Device, Int, Tensor};
use dlm_core::backbone::{DenoiserInput, TokenModel};

use crate::denoiser::{MaskedDenoiser, Subs, subs_log_probs, zero_masking_log_probs};
use crate::error::{DiscreteError, ensure_value};
use crate::sampler::SamplerState;

/// A token model read with classifier-free guidance (Ho & Salimans 2022), as LLaDA applies it
/// (Nie et al. 2025, App. B.3; their `generate.py`, methods_2 §B7): the unconditional input is the
/// same sequence with every given position (the prompt, an infilling context) replaced by the
/// mask; conditional and unconditional inputs run as one batch, and their logits combine as
///
/// `ℓ̃ = ℓ_u + (w + 1)(ℓ_c − ℓ_u)`, i.e. `p̃ ∝ p_c^{1+w} / p_u^w`,
///
/// before SUBS. `w = 0` is the model itself, with no second pass. The cost is one model call of
/// twice the batch per step.
#[derive(Debug)]
pub struct Guided<'a, M: ?Sized> {
    subs: Subs<'a, M>,
    given: Tensor<2, Bool>,
    scale: f64,
}

impl<'a, M: TokenModel + ?Sized> Guided<'a, M> {
    /// Guidance of scale `w` for decoding `state`: its fixed positions are the condition.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] unless `w` is finite and `≥ 0`.
    pub fn for_state(
        subs: Subs<'a, M>,
        state: &SamplerState,
        scale: f64,
    ) -> Result<Self, DiscreteError> {
        ensure_value(
            scale >= 0.0 && scale.is_finite(),
            "classifier-free guidance",
            "cfg_scale",
            scale,
            "a finite value >= 0",
        )?;
        Ok(Self { subs, given: state.fixed.clone(), scale })
    }
}

impl<M: TokenModel + ?Sized> Guided<'_, M> {
    /// `ℓ_u + (w + 1)(ℓ_c − ℓ_u)` at the positions `region`, from one call of twice the batch.
    ///
    /// # Shapes
    /// - `z_t`: `[batch, seq_len]`, `t`: `[batch]` → `[batch, region.len(), vocab_size]`
    fn guided_logits(&self, z_t: Tensor<2, Int>, t: Tensor<1>, region: Range<usize>) -> Tensor<3> {
        let [batch, _] = z_t.dims();
        let n = region.len();
        let unconditional = z_t.clone().mask_fill(self.given.clone(), i64::from(self.subs.mask_id));
        let both = Tensor::cat(vec![z_t.clone(), unconditional], 0);
        let input = DenoiserInput::tokens(both).with_time(Tensor::cat(vec![t.clone(), t], 0));
        let hidden = self.subs.model.forward_hidden(input).output;
        let width = hidden.dims()[2];
        let rows = hidden.narrow(1, region.start, n).reshape([2 * batch * n, width]);
        let logits = self.subs.model.head_rows(rows);
        let vocab_size = logits.dims()[1];
        let logits = logits.reshape([2, batch, n, vocab_size]);
        let conditional = logits.clone().narrow(0, 0, 1).squeeze_dim::<3>(0);
        let unconditional = logits.narrow(0, 1, 1).squeeze_dim::<3>(0);
        unconditional.clone() + (conditional - unconditional).mul_scalar(self.scale + 1.0)
    }
}

impl<M: TokenModel + ?Sized> MaskedDenoiser for Guided<'_, M> {
    fn log_probs(&self, z_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3> {
        let len = z_t.dims()[1];
        self.region_log_probs(z_t, t, 0..len)
    }

    /// # Shapes
    /// - `z_t`: `[batch, seq_len]`, the shape of the state it was made for; `t`: `[batch]`
    ///   → `[batch, region.len(), vocab_size]`
    ///
    /// # Panics
    /// If `z_t` is not of the shape of the state the guidance was made for.
    fn region_log_probs(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        region: Range<usize>,
    ) -> Tensor<3> {
        if self.scale == 0.0 {
            return self.subs.region_log_probs(z_t, t, region);
        }
        let z_region = z_t.clone().narrow(1, region.start, region.len());
        subs_log_probs(self.guided_logits(z_t, t, region), z_region, self.subs.mask_id)
    }

    /// The guided logits with zero masking only: the predictions token editing reads.
    fn region_predictions(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        region: Range<usize>,
    ) -> Option<Tensor<3>> {
        if self.scale == 0.0 {
            return self.subs.region_predictions(z_t, t, region);
        }
        Some(zero_masking_log_probs(self.guided_logits(z_t, t, region), self.subs.mask_id))
    }

    fn is_time_conditioned(&self) -> bool {
        self.subs.is_time_conditioned()
    }

    fn mask_id(&self) -> u32 {
        self.subs.mask_id
    }

    fn vocab_size(&self) -> usize {
        self.subs.vocab_size()
    }

    fn max_seq_len(&self) -> Option<usize> {
        self.subs.max_seq_len()
    }

    fn device(&self) -> Device {
        self.subs.device()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use dlm_core::backbone::DenoiserConfig;
    use dlm_core::testing::randomised;

    use super::*;

    const MASK: u32 = 3;

    #[test]
    fn guidance_combines_conditional_and_prompt_masked_logits() {
        let device = Device::flex();
        let model = randomised(
            DenoiserConfig::tokens(11, 16)
                .with_d_model(32)
                .with_n_heads(2)
                .with_n_layers(2)
                .init(&device)
                .unwrap(),
            &device,
        );
        let subs = Subs { model: &model, mask_id: MASK };
        let prompt = Tensor::<2>::random([2, 3], Distribution::Uniform(4.0, 11.0), &device).int();
        let state = SamplerState::with_prompt(&subs, prompt, 5).unwrap();
        // Two positions of the response decoded, the rest masked.
        let z_t = state
            .tokens
            .clone()
            .slice_assign([0..2, 4..6], Tensor::<2, Int>::from_ints([[7, 8], [9, 10]], &device));
        let t = Tensor::<1>::from_floats([0.5, 0.5], &device);
        let logits = |z: Tensor<2, Int>| model.forward(DenoiserInput::tokens(z)).output;
        // The unconditional input: the prompt masked, the decoded response kept.
        let unconditional_input =
            z_t.clone().slice_assign([0..2, 0..3], Tensor::full([2, 3], MASK as i64, &device));
        let (l_c, l_u) = (logits(z_t.clone()), logits(unconditional_input));
        for w in [0.0, 0.5, 2.0] {
            let guided = Guided::for_state(subs, &state, w).unwrap();
            let expected = subs_log_probs(
                l_u.clone() + (l_c.clone() - l_u.clone()) * (w as f32 + 1.0),
                z_t.clone(),
                MASK,
            );
            let got = guided.region_log_probs(z_t.clone(), t.clone(), 3..8);
            let diff = (got - expected.narrow(1, 3, 5)).abs().max().into_scalar::<f64>();
            assert!(diff < 1e-4, "w = {w}: {diff}");
        }
        // w = 0 is the model itself, exactly.
        let plain = subs.log_probs(z_t.clone(), t.clone());
        let unguided = Guided::for_state(subs, &state, 0.0).unwrap().log_probs(z_t, t);
        assert_eq!(plain.into_data(), unguided.into_data());
        assert!(Guided::for_state(subs, &state, -1.0).is_err());
        assert!(Guided::for_state(subs, &state, f64::NAN).is_err());
    }
}
