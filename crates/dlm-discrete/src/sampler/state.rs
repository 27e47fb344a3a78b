//! [`SamplerState`]: what changes between sampler steps.

use burn::tensor::{Bool, Int, Tensor};

use crate::denoiser::MaskedDenoiser;
use crate::error::{DiscreteError, ensure_size};

/// The tokens being decoded and the positions that never change.
///
/// Every constructor takes the denoiser the state is for: its mask id marks the undecided
/// positions and its device holds the tensors, so a state cannot mask with another token than
/// the one the model (and the objective that built it) reads as the mask.
#[derive(Debug, Clone)]
pub struct SamplerState {
    /// Current tokens, `[batch, seq_len]`; undecided positions hold the mask id.
    pub tokens: Tensor<2, Int>,
    /// Positions that never change (a prompt, the context of an infilling task), `[batch, seq_len]`.
    pub fixed: Tensor<2, Bool>,
    /// Model calls made so far (number of function evaluations).
    pub nfe: usize,
}

impl SamplerState {
    /// Unconditional generation: every position masked with `model`'s mask id.
    pub fn all_masked(model: &impl MaskedDenoiser, batch: usize, seq_len: usize) -> Self {
        let device = model.device();
        let mask_id = i64::from(model.mask_id());
        let tokens = Tensor::<2, Int>::ones([batch, seq_len], &device).mul_scalar(mask_id);
        let fixed = Tensor::<2, Int>::zeros([batch, seq_len], &device).equal_elem(1);
        Self { tokens, fixed, nfe: 0 }
    }

    /// Continues `prompt` by `gen_len` positions masked with `model`'s mask id; the prompt is
    /// fixed.
    ///
    /// # Shapes
    /// - `prompt`: `[batch, prompt_len]` → state `[batch, prompt_len + gen_len]`
    pub fn with_prompt(
        model: &impl MaskedDenoiser,
        prompt: Tensor<2, Int>,
        gen_len: usize,
    ) -> Self {
        let [batch, prompt_len] = prompt.dims();
        let device = prompt.device();
        let mask_id = i64::from(model.mask_id());
        let masked = Tensor::<2, Int>::ones([batch, gen_len], &device).mul_scalar(mask_id);
        let tokens = Tensor::cat(vec![prompt, masked], 1);
        let fixed = Tensor::<1, Int>::arange(0..(prompt_len + gen_len) as i64, &device)
            .lower_elem(prompt_len as i64)
            .reshape([1, prompt_len + gen_len])
            .expand([batch, prompt_len + gen_len]);
        Self { tokens, fixed, nfe: 0 }
    }

    /// Infilling: the positions of `tokens` that hold `model`'s mask id are generated, every
    /// other position is fixed.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] if no position is masked.
    pub fn infill(
        model: &impl MaskedDenoiser,
        tokens: Tensor<2, Int>,
    ) -> Result<Self, DiscreteError> {
        let fixed = tokens.clone().not_equal_elem(i64::from(model.mask_id()));
        let free = fixed.clone().bool_not().int().sum().into_scalar::<i64>() as usize;
        ensure_size(free > 0, "infilling", "masked positions", free, "at least 1")?;
        Ok(Self { tokens, fixed, nfe: 0 })
    }

    /// The positions still masked for `model`, `[batch, seq_len]`.
    pub fn is_masked(&self, model: &impl MaskedDenoiser) -> Tensor<2, Bool> {
        self.tokens.clone().equal_elem(i64::from(model.mask_id()))
    }
}
