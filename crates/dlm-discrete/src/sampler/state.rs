//! [`SamplerState`]: what changes between sampler steps.

use burn::tensor::{Bool, Int, Tensor};

use dlm_core::host::int_values;
use dlm_sched::InvalidInput;

use crate::denoiser::MaskedDenoiser;
use crate::error::{DiscreteError, ensure_size};

const CONTEXT: &str = "sampler state";

fn ensure_token(
    valid: bool,
    position: usize,
    token: i64,
    expected: impl Into<std::borrow::Cow<'static, str>>,
) -> Result<(), DiscreteError> {
    if valid {
        Ok(())
    } else {
        Err(InvalidInput::size_element(CONTEXT, "tokens", position, token as usize, expected)
            .into())
    }
}

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
    ///
    /// # Errors
    /// As [`SamplerState::check`]: a zero `batch` or `seq_len`, a `seq_len` beyond the model's
    /// context, a mask id outside its vocabulary.
    pub fn all_masked(
        model: &impl MaskedDenoiser,
        batch: usize,
        seq_len: usize,
    ) -> Result<Self, DiscreteError> {
        ensure_fits(model, seq_len)?;
        let device = model.device();
        let mask_id = i64::from(model.mask_id());
        let tokens = Tensor::<2, Int>::ones([batch, seq_len], &device).mul_scalar(mask_id);
        let fixed = Tensor::<2, Int>::zeros([batch, seq_len], &device).equal_elem(1);
        let state = Self { tokens, fixed, nfe: 0 };
        state.check(model)?;
        Ok(state)
    }

    /// Continues `prompt` by `gen_len` positions masked with `model`'s mask id; the prompt is
    /// fixed.
    ///
    /// # Shapes
    /// - `prompt`: `[batch, prompt_len]` → state `[batch, prompt_len + gen_len]`
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] for `gen_len == 0`; as [`SamplerState::check`]: prompt ids
    /// outside the model's vocabulary or equal to its mask, a total length beyond its context.
    pub fn with_prompt(
        model: &impl MaskedDenoiser,
        prompt: Tensor<2, Int>,
        gen_len: usize,
    ) -> Result<Self, DiscreteError> {
        ensure_size(gen_len > 0, CONTEXT, "gen_len", gen_len, "at least 1")?;
        let [batch, prompt_len] = prompt.dims();
        ensure_fits(model, prompt_len.saturating_add(gen_len))?;
        let device = prompt.device();
        let mask_id = i64::from(model.mask_id());
        let masked = Tensor::<2, Int>::ones([batch, gen_len], &device).mul_scalar(mask_id);
        let tokens = Tensor::cat(vec![prompt, masked], 1);
        let fixed = Tensor::<1, Int>::arange(0..(prompt_len + gen_len) as i64, &device)
            .lower_elem(prompt_len as i64)
            .reshape([1, prompt_len + gen_len])
            .expand([batch, prompt_len + gen_len]);
        let state = Self { tokens, fixed, nfe: 0 };
        state.check(model)?;
        Ok(state)
    }

    /// Infilling: the positions of `tokens` that hold `model`'s mask id are generated, every
    /// other position is fixed.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] if no position is masked; as [`SamplerState::check`].
    pub fn infill(
        model: &impl MaskedDenoiser,
        tokens: Tensor<2, Int>,
    ) -> Result<Self, DiscreteError> {
        let fixed = tokens.clone().not_equal_elem(i64::from(model.mask_id()));
        let free = fixed.clone().bool_not().int().sum().into_scalar::<i64>() as usize;
        ensure_size(free > 0, "infilling", "masked positions", free, "at least 1")?;
        let state = Self { tokens, fixed, nfe: 0 };
        state.check(model)?;
        Ok(state)
    }

    /// Checks the state against `model` (every sampler does before its first step, whichever
    /// way the state was built): at least one row and one position, no more positions than the
    /// model's context ([`MaskedDenoiser::max_seq_len`]), `fixed` of the tokens' shape, the
    /// mask id and every token among the ids the model reads, and no fixed position holding the
    /// mask (a prompt with a mask token in it would never be decoded).
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] naming the field and, for a token, its flat position
    /// `b · seq_len + i`.
    pub fn check(&self, model: &impl MaskedDenoiser) -> Result<(), DiscreteError> {
        ensure_size(
            self.fixed.dims() == self.tokens.dims(),
            CONTEXT,
            "fixed",
            self.fixed.dims().iter().product(),
            format!("the shape of the tokens, {:?}", self.tokens.dims()),
        )?;
        let fixed: Vec<bool> = self.fixed.clone().into_data().iter::<bool>().collect();
        Self::check_host(model, self.tokens.dims(), &int_values(self.tokens.clone()), &fixed)
    }

    /// The positions still masked for `model`, `[batch, seq_len]`.
    pub fn is_masked(&self, model: &impl MaskedDenoiser) -> Tensor<2, Bool> {
        self.tokens.clone().equal_elem(i64::from(model.mask_id()))
    }

    /// [`SamplerState::check`] on the state's values already on the host (the driver reads them
    /// anyway), `[batch, seq_len]` row-major.
    pub(crate) fn check_host(
        model: &impl MaskedDenoiser,
        [batch, seq_len]: [usize; 2],
        tokens: &[i64],
        fixed: &[bool],
    ) -> Result<(), DiscreteError> {
        ensure_size(batch > 0, CONTEXT, "batch", batch, "at least 1")?;
        ensure_size(seq_len > 0, CONTEXT, "seq_len", seq_len, "at least 1")?;
        if let Some(max_seq_len) = model.max_seq_len() {
            ensure_size(
                seq_len <= max_seq_len,
                CONTEXT,
                "seq_len",
                seq_len,
                format!("at most the model's max_seq_len = {max_seq_len}"),
            )?;
        }
        let (vocab_size, mask_id) = (model.vocab_size(), model.mask_id());
        ensure_size(
            (mask_id as usize) < vocab_size,
            CONTEXT,
            "mask_id",
            mask_id as usize,
            format!("an id the model reads, below its vocab_size = {vocab_size}"),
        )?;
        for (i, (&token, &fixed)) in tokens.iter().zip(fixed).enumerate() {
            if token < 0 {
                return Err(InvalidInput::element(
                    CONTEXT,
                    "tokens",
                    i,
                    token as f64,
                    "a non-negative token id",
                )
                .into());
            }
            ensure_token(
                (token as usize) < vocab_size,
                i,
                token,
                format!("an id below the model's vocab_size = {vocab_size}"),
            )?;
            ensure_token(
                !(fixed && token == i64::from(mask_id)),
                i,
                token,
                "a token other than the mask at a fixed position (a prompt holds no mask)",
            )?;
        }
        Ok(())
    }
}

/// The length against the model's context, before anything of that length is allocated (a
/// request for a trillion positions is an error, not an allocation failure).
fn ensure_fits(model: &impl MaskedDenoiser, seq_len: usize) -> Result<(), DiscreteError> {
    match model.max_seq_len() {
        Some(max) => Ok(ensure_size(
            seq_len <= max,
            CONTEXT,
            "seq_len",
            seq_len,
            format!("at most the model's max_seq_len = {max}"),
        )?),
        None => Ok(()),
    }
}
