//! [`BertSubs`]: a pretrained BERT masked LM as a masked-diffusion denoiser.
//!
//! A BERT MLM is trained to predict masked tokens from the rest of the sequence at every masking
//! rate its pre-training used, and does not read the time: exactly the time-agnostic
//! `p_θ(x0 | z_t)` that MDLM's samplers need (Sahoo et al. 2024, §3.2; LLaDA's mask predictor is
//! the same object). Wrapped in SUBS, every sampler of [`crate::sampler`] runs on it unchanged.

use std::ops::Range;

use burn::tensor::{Device, Int, Tensor};
use dlm_core::bert::BertMlm;

use crate::denoiser::{MaskedDenoiser, NEG_INFINITY, subs_log_probs, zero_masking_log_probs};
use crate::error::DiscreteError;
use dlm_sched::InvalidInput;

/// A [`BertMlm`] read through SUBS, with tokens that must never be generated (padding,
/// `[UNK]`, `[CLS]`, `[SEP]`) given probability 0 at masked positions.
#[derive(Debug, Clone)]
pub struct BertSubs<'a> {
    model: &'a BertMlm,
    mask_id: u32,
    excluded: Vec<u32>,
}

impl<'a> BertSubs<'a> {
    /// Wraps `model`, whose mask token is `mask_id`; masked positions never become one of
    /// `excluded` (nor the mask).
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] if `mask_id` or an excluded id is not below the
    /// vocabulary size, or if nothing would be left to generate.
    pub fn new(model: &'a BertMlm, mask_id: u32, excluded: &[u32]) -> Result<Self, DiscreteError> {
        let vocab_size = model.vocab_size();
        if let Some(&token) = excluded.iter().chain([&mask_id]).find(|&&t| t as usize >= vocab_size)
        {
            return Err(DiscreteError::Invalid(InvalidInput::size(
                "BERT denoiser",
                "token id",
                token as usize,
                format!("below vocab_size = {vocab_size}"),
            )));
        }
        let mut excluded: Vec<u32> = excluded.iter().copied().filter(|&t| t != mask_id).collect();
        excluded.sort_unstable();
        excluded.dedup();
        crate::error::ensure_size(
            excluded.len() + 1 < vocab_size,
            "BERT denoiser",
            "excluded tokens",
            excluded.len(),
            format!("fewer than vocab_size − 1 = {}", vocab_size - 1),
        )?;
        Ok(Self { model, mask_id, excluded })
    }

    /// The wrapped model.
    pub fn model(&self) -> &BertMlm {
        self.model
    }

    /// The MLM's logits with the excluded tokens at [`NEG_INFINITY`].
    ///
    /// # Shapes
    /// - `z_t`: `[batch, seq_len]` → `[batch, seq_len, vocab_size]`
    fn logits(&self, z_t: Tensor<2, Int>) -> Tensor<3> {
        let mut logits = self.model.forward(z_t, None);
        let [batch, seq_len, _] = logits.dims();
        let device = logits.device();
        for &token in &self.excluded {
            let column = Tensor::<3>::full([batch, seq_len, 1], NEG_INFINITY, &device);
            let t = token as usize;
            logits = logits.slice_assign([0..batch, 0..seq_len, t..t + 1], column);
        }
        logits
    }
}

impl MaskedDenoiser for BertSubs<'_> {
    /// # Shapes
    /// - `z_t`: `[batch, seq_len]`, `seq_len ≤` the model's positions; `t` is not read
    /// - returns `[batch, seq_len, vocab_size]`
    fn log_probs(&self, z_t: Tensor<2, Int>, _t: Tensor<1>) -> Tensor<3> {
        subs_log_probs(self.logits(z_t.clone()), z_t, self.mask_id)
    }

    /// BERT predicts every position, the decoded ones too: token editing reads it.
    fn region_predictions(
        &self,
        z_t: Tensor<2, Int>,
        _t: Tensor<1>,
        region: Range<usize>,
    ) -> Option<Tensor<3>> {
        let logits = self.logits(z_t).narrow(1, region.start, region.len());
        Some(zero_masking_log_probs(logits, self.mask_id))
    }

    fn is_time_conditioned(&self) -> bool {
        false
    }

    fn mask_id(&self) -> u32 {
        self.mask_id
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    /// BERT's absolute position embeddings end at `max_position_embeddings`.
    fn max_seq_len(&self) -> Option<usize> {
        Some(self.model.max_positions())
    }

    fn device(&self) -> Device {
        dlm_core::module_device(self.model)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use dlm_core::bert::BertConfig;
    use dlm_core::testing::randomised;
    use dlm_sched::{LogLinear, ScheduleKind};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::sampler::{MaskedSampler, SamplerState, TimeAgnostic, Unmasking};
    use dlm_sched::{InputValue, InvalidInput};

    fn model(device: &Device) -> BertMlm {
        let config = BertConfig {
            vocab_size: 9,
            hidden_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 12,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            position_embedding_type: "absolute".into(),
            tie_word_embeddings: true,
        };
        randomised(config.init(device).unwrap(), device)
    }

    #[test]
    fn excluded_tokens_get_no_mass_and_samplers_run_on_it() {
        let device = Device::flex();
        let bert = model(&device);
        let (mask, excluded) = (4, [0, 1, 2, 3]);
        let denoiser = BertSubs::new(&bert, mask, &excluded).unwrap();
        let z_t = Tensor::<2, Int>::from_ints([[2, 4, 4, 7, 4, 3]], &device);
        let p: Vec<f32> =
            denoiser.log_probs(z_t, Tensor::zeros([1], &device)).exp().into_data().iter().collect();
        for position in [1, 2, 4] {
            let row = &p[position * 9..(position + 1) * 9];
            assert!(row[..5].iter().all(|&q| q == 0.0), "{row:?}");
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        assert_eq!(p[3 * 9 + 7], 1.0, "an unmasked token is carried over");

        // Infilling with the cached ancestral sampler: only masked positions change, and only to
        // tokens that may be generated.
        let tokens = Tensor::<2, Int>::from_ints([[2, 4, 4, 7, 4, 3]], &device);
        let state = SamplerState::infill(&denoiser, tokens).unwrap();
        let sampler = MaskedSampler::new(
            Unmasking::Ancestral { schedule: ScheduleKind::LogLinear(LogLinear::default()) },
            8,
        )
        .unwrap();
        let cached = TimeAgnostic::new(denoiser.clone()).unwrap();
        let out = sampler.sample_reusing(&cached, state, &mut StdRng::seed_from_u64(3)).unwrap();
        let out: Vec<i64> = out.tokens.into_data().iter().collect();
        assert_eq!((out[0], out[3], out[5]), (2, 7, 3));
        assert!([1, 2, 4].iter().all(|&i| (5..9).contains(&out[i])), "{out:?}");
    }

    #[test]
    fn bad_token_ids_are_rejected() {
        let device = Device::flex();
        let bert = model(&device);
        assert!(matches!(
            BertSubs::new(&bert, 9, &[]),
            Err(DiscreteError::Invalid(InvalidInput {
                name: "token id",
                value: InputValue::Size(9),
                ..
            }))
        ));
        assert!(matches!(
            BertSubs::new(&bert, 4, &[0, 12]),
            Err(DiscreteError::Invalid(InvalidInput {
                name: "token id",
                value: InputValue::Size(12),
                ..
            }))
        ));
        assert!(matches!(
            BertSubs::new(&bert, 4, &[0, 1, 2, 3, 5, 6, 7, 8]),
            Err(DiscreteError::Invalid(InvalidInput { name: "excluded tokens", .. }))
        ));
    }
}
