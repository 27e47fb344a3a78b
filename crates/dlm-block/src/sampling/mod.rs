//! BD3LM sampling: block by block, a masked sampler inside each block, the clean blocks in an
//! exact KV cache.

use std::ops::Range;

use burn::tensor::{Device, Int, Tensor};
use dlm_core::backbone::{AttentionMask, Denoiser, DenoiserInput, KvCache, TokenModel};
use dlm_core::host::{int_values, ints};
use dlm_discrete::sampler::{
    BlockDone, MaskedSampler, Observer, RowChanges, SamplerState, Start, StepKind, TrajectoryStep,
};
use dlm_discrete::{MaskedDenoiser, Subs, subs_log_probs, zero_masking_log_probs};
use rand::rngs::StdRng;

use crate::error::{BlockError, ensure_size};

/// The block being decoded, run against the cached keys and values of the clean blocks before
/// it (BD3LM's Algorithm 2): one forward pass over `block_size` positions per call.
#[derive(Debug)]
pub struct CachedBlock<'a, M: ?Sized = Denoiser> {
    model: &'a M,
    cache: Option<&'a KvCache>,
    /// Rotary position of the block's first token.
    start: usize,
    block_size: usize,
    mask_id: u32,
}

/// The same block without a cache: every call recomputes the whole clean prefix (the reference
/// the cache must equal).
#[derive(Debug)]
pub struct RecomputedBlock<'a, M: ?Sized = Denoiser> {
    model: &'a M,
    prefix: Option<&'a Tensor<2, Int>>,
    block_size: usize,
    mask_id: u32,
}

impl<M: TokenModel + ?Sized> CachedBlock<'_, M> {
    /// The block's logits against the cache.
    ///
    /// # Shapes
    /// - `z_block`: `[batch, n]` → `[batch, n, vocab_size]`
    fn logits(&self, z_block: Tensor<2, Int>) -> Tensor<3> {
        let device = z_block.device();
        let n = z_block.dims()[1];
        let positions =
            Tensor::<1, Int>::arange(self.start as i64..(self.start + n) as i64, &device);
        let mut input = DenoiserInput::tokens(z_block.clone())
            .with_mask(AttentionMask::BlockCausal { block_size: self.block_size })
            .with_positions(positions);
        if let Some(cache) = self.cache {
            input = input.with_cache(cache.clone());
        }
        self.model.forward(input).output
    }
}

impl<M: TokenModel + ?Sized> MaskedDenoiser for CachedBlock<'_, M> {
    fn log_probs(&self, z_block: Tensor<2, Int>, _t: Tensor<1>) -> Tensor<3> {
        subs_log_probs(self.logits(z_block.clone()), z_block, self.mask_id)
    }

    fn region_predictions(
        &self,
        z_block: Tensor<2, Int>,
        _t: Tensor<1>,
        region: Range<usize>,
    ) -> Option<Tensor<3>> {
        let logits = self.logits(z_block).narrow(1, region.start, region.len());
        Some(zero_masking_log_probs(logits, self.mask_id))
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

    fn device(&self) -> Device {
        self.model.device()
    }
}

impl<M: TokenModel + ?Sized> RecomputedBlock<'_, M> {
    /// The block's logits after the recomputed prefix.
    ///
    /// # Shapes
    /// - `z_block`: `[batch, n]` → `[batch, n, vocab_size]`
    fn logits(&self, z_block: Tensor<2, Int>) -> Tensor<3> {
        let n = z_block.dims()[1];
        let input = match self.prefix {
            Some(prefix) => Tensor::cat(vec![prefix.clone(), z_block.clone()], 1),
            None => z_block.clone(),
        };
        let total = input.dims()[1];
        let mask = AttentionMask::BlockCausal { block_size: self.block_size };
        self.model.forward(DenoiserInput::tokens(input).with_mask(mask)).output.narrow(
            1,
            total - n,
            n,
        )
    }
}

impl<M: TokenModel + ?Sized> MaskedDenoiser for RecomputedBlock<'_, M> {
    fn log_probs(&self, z_block: Tensor<2, Int>, _t: Tensor<1>) -> Tensor<3> {
        subs_log_probs(self.logits(z_block.clone()), z_block, self.mask_id)
    }

    fn region_predictions(
        &self,
        z_block: Tensor<2, Int>,
        _t: Tensor<1>,
        region: Range<usize>,
    ) -> Option<Tensor<3>> {
        let logits = self.logits(z_block).narrow(1, region.start, region.len());
        Some(zero_masking_log_probs(logits, self.mask_id))
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

    fn device(&self) -> Device {
        self.model.device()
    }
}

/// The inner sampler's observer for one block: its steps shifted to the block's place in the
/// whole sequence, its model calls counted from the generation's start; its start and its own
/// end of block are the block sampler's to report.
struct InBlock<'a> {
    outer: &'a mut dyn Observer,
    offset: usize,
    nfe_before: usize,
}

impl Observer for InBlock<'_> {
    fn step_done(&mut self, step: &TrajectoryStep) {
        let mut step = step.clone();
        step.block = step.block.map(|p| p + self.offset);
        step.nfe += self.nfe_before;
        for row in &mut step.rows {
            for commit in row.committed.iter_mut().chain(&mut row.edited) {
                commit.position += self.offset;
            }
            row.remasked.iter_mut().for_each(|p| *p += self.offset);
        }
        self.outer.step_done(&step);
    }
}

/// How the clean blocks are given to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// Keys and values of the clean blocks are cached and extended by one pass per block.
    Cached {
        /// Keep at most this many cached positions (a sliding window, a multiple of the block
        /// size), to generate beyond the training context; `None` keeps everything.
        window: Option<usize>,
    },
    /// The whole clean prefix is recomputed at every model call.
    Recomputed,
}

/// What [`BlockSampler::generate`] returns.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Prompt and generated tokens, `[batch, len]`; rows that met `eos` are padded with it.
    pub tokens: Tensor<2, Int>,
    /// Model calls, cache updates included.
    pub nfe: usize,
    /// Blocks generated.
    pub blocks: usize,
}

/// BD3LM's sampler: blocks of `block_size` are generated left to right, each by a
/// [`MaskedSampler`] (any unmasking policy) that sees the clean blocks before it.
#[derive(Debug, Clone)]
pub struct BlockSampler {
    pub(crate) inner: MaskedSampler,
    pub(crate) block_size: usize,
    pub(crate) mask_id: u32,
}

impl BlockSampler {
    /// Decodes each block with `inner`; `mask_id` is the model's mask token. For a model trained
    /// here, [`crate::Bd3lm::sampler`] builds it from the objective, so the two cannot disagree;
    /// this constructor is for a model trained elsewhere.
    ///
    /// # Errors
    /// [`BlockError::Invalid`] if `block_size == 0`.
    pub fn new(inner: MaskedSampler, block_size: usize, mask_id: u32) -> Result<Self, BlockError> {
        ensure_size(block_size > 0, "block sampler", "block_size", block_size, "at least 1")?;
        Ok(Self { inner, block_size, mask_id })
    }

    /// Generates up to `max_blocks` blocks after `prompt` (`[batch, p]`; `None` for
    /// unconditional generation). The prompt's whole blocks are the clean prefix; a remainder
    /// (`p` not a multiple of the block size) is the fixed start of the first block decoded, as
    /// SDAR's `generate.py` treats it. With `eos`, generation stops once every row has produced
    /// it, and positions after a row's first `eos` are set to `eos`.
    ///
    /// Randomness comes from `rng` only: the same seed gives the same tokens with `Cached` and
    /// `Recomputed` prefixes, which compute the same logits.
    ///
    /// # Errors
    /// [`BlockError::Invalid`] for a prompt with another number of rows than `batch`, a
    /// window that is not a positive multiple of the block size, or `max_blocks == 0`;
    /// [`BlockError::TimeConditionedModel`] for a time-conditioned model;
    /// [`BlockError::Unsupported`] for a cached prefix with a model that cannot read through one
    /// ([`TokenModel::supports_kv_cache`]).
    #[allow(clippy::too_many_arguments)]
    pub fn generate<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        prompt: Option<Tensor<2, Int>>,
        batch: usize,
        max_blocks: usize,
        eos: Option<u32>,
        prefix: Prefix,
        rng: &mut StdRng,
    ) -> Result<Generation, BlockError> {
        self.run(model, prompt, batch, max_blocks, eos, prefix, rng, &mut ())
    }

    /// As [`BlockSampler::generate`], telling `observer` of every step and block in the
    /// coordinates of the whole sequence: it starts from the prompt followed by `max_blocks`
    /// blocks of masks (the most the generation can fill; blocks not reached when every row met
    /// `eos` stay masked in it), sees each block's steps with their positions and model calls
    /// counted from the start (the cache updates as [`StepKind::CacheUpdate`] steps, the padding
    /// after `eos` as a [`StepKind::Padding`] one), and each finished block with the prompt and the
    /// blocks so far (before any padding): what a caller streams, or records as a
    /// [`dlm_discrete::sampler::Trajectory`].
    ///
    /// # Errors
    /// As [`BlockSampler::generate`].
    #[allow(clippy::too_many_arguments)]
    pub fn generate_observed<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        prompt: Option<Tensor<2, Int>>,
        batch: usize,
        max_blocks: usize,
        eos: Option<u32>,
        prefix: Prefix,
        rng: &mut StdRng,
        observer: &mut dyn Observer,
    ) -> Result<Generation, BlockError> {
        self.run(model, prompt, batch, max_blocks, eos, prefix, rng, observer)
    }

    #[allow(clippy::too_many_arguments)]
    fn run<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        prompt: Option<Tensor<2, Int>>,
        batch: usize,
        max_blocks: usize,
        eos: Option<u32>,
        prefix: Prefix,
        rng: &mut StdRng,
        observer: &mut dyn Observer,
    ) -> Result<Generation, BlockError> {
        let bs = self.block_size;
        ensure_size(max_blocks > 0, "block sampler", "max_blocks", max_blocks, "at least 1")?;
        if model.is_time_conditioned() {
            return Err(BlockError::TimeConditionedModel { what: "BD3LM sampling" });
        }
        if matches!(prefix, Prefix::Cached { .. }) && !model.supports_kv_cache() {
            return Err(BlockError::Unsupported {
                what: "a cached prefix with a model whose logits are shifted (Dream); use \
                       Prefix::Recomputed",
            });
        }
        if let Prefix::Cached { window: Some(window) } = prefix {
            ensure_size(
                window > 0 && window.is_multiple_of(bs),
                "block sampler",
                "window",
                window,
                format!("a positive multiple of block_size = {bs}"),
            )?;
        }
        let mask_id = self.mask_id;
        // The prompt's whole blocks are the clean prefix; a remainder is the fixed start of the
        // first block decoded (SDAR's `generate.py` does the same).
        let (mut tokens, mut remainder) = match &prompt {
            Some(p) => {
                let [rows, len] = p.dims();
                ensure_size(
                    rows == batch,
                    "block sampler",
                    "prompt rows",
                    rows,
                    format!("batch = {batch}"),
                )?;
                let whole = len / bs * bs;
                let prefix = (whole > 0).then(|| p.clone().narrow(1, 0, whole));
                let rest = (len > whole).then(|| p.clone().narrow(1, whole, len - whole));
                (prefix, rest)
            }
            None => (None, None),
        };
        self.check_lengths(model, &prompt, max_blocks, eos, prefix)?;
        let mut nfe = 0;
        let mut cache: Option<KvCache> = None;
        if let (Prefix::Cached { window }, Some(p)) = (prefix, &tokens) {
            nfe += 1;
            cache = Some(self.extend(model, None, p.clone(), 0, window));
        }
        let prompt_len = prompt.as_ref().map_or(0, |p| p.dims()[1]);
        let whole_prompt = tokens.as_ref().map_or(0, |t| t.dims()[1]);
        let canvas_len = whole_prompt + max_blocks * bs;
        let mut canvas = vec![i64::from(mask_id); batch * canvas_len];
        if let Some(p) = &prompt {
            for (row, values) in int_values(p.clone()).chunks(prompt_len).enumerate() {
                canvas[row * canvas_len..row * canvas_len + prompt_len].copy_from_slice(values);
            }
        }
        observer.started(Start { tokens: &canvas, batch, len: canvas_len, mask_id });
        let cache_update = |nfe: usize, block: [usize; 2]| TrajectoryStep {
            kind: StepKind::CacheUpdate,
            block,
            nfe,
            rows: vec![RowChanges::default(); batch],
        };
        if nfe > 0 {
            observer.step_done(&cache_update(nfe, [0, whole_prompt]));
        }
        let mut finished = vec![false; batch];
        let mut blocks = 0;
        while blocks < max_blocks && !finished.iter().all(|&f| f) {
            let start = tokens.as_ref().map_or(0, |t| t.dims()[1]);
            let fixed = remainder.as_ref().map_or(0, |r| r.dims()[1]);
            let mut in_block = InBlock { outer: &mut *observer, offset: start, nfe_before: nfe };
            let decoded = match prefix {
                Prefix::Cached { .. } => {
                    let view = CachedBlock {
                        model,
                        cache: cache.as_ref(),
                        start,
                        block_size: bs,
                        mask_id,
                    };
                    let start_state = match remainder.take() {
                        Some(rest) => SamplerState::with_prompt(&view, rest, bs - fixed)?,
                        None => SamplerState::all_masked(&view, batch, bs)?,
                    };
                    self.inner.sample_observed(&view, start_state, rng, &mut in_block)?
                }
                Prefix::Recomputed => {
                    let view =
                        RecomputedBlock { model, prefix: tokens.as_ref(), block_size: bs, mask_id };
                    let start_state = match remainder.take() {
                        Some(rest) => SamplerState::with_prompt(&view, rest, bs - fixed)?,
                        None => SamplerState::all_masked(&view, batch, bs)?,
                    };
                    self.inner.sample_observed(&view, start_state, rng, &mut in_block)?
                }
            };
            nfe += decoded.nfe;
            let block = decoded.tokens;
            if let Prefix::Cached { window } = prefix {
                nfe += 1;
                cache = Some(self.extend(model, cache.take(), block.clone(), start, window));
                observer.step_done(&cache_update(nfe, [start, start + bs]));
            }
            if let Some(eos) = eos {
                let values: Vec<i64> = int_values(block.clone());
                for (row, chunk) in values.chunks(bs).enumerate() {
                    finished[row] |= chunk[fixed..].contains(&i64::from(eos));
                }
            }
            let joined = match tokens {
                Some(t) => Tensor::cat(vec![t, block], 1),
                None => block,
            };
            let len = joined.dims()[1];
            observer.block_done(BlockDone {
                tokens: &int_values(joined.clone()),
                batch,
                len,
                end: len,
                nfe,
            });
            tokens = Some(joined);
            blocks += 1;
        }
        let tokens = tokens.expect("at least one block");
        let tokens = match eos {
            Some(eos) => {
                let before = int_values(tokens.clone());
                let padded = pad_after_eos(tokens, eos, prompt_len);
                let after = int_values(padded.clone());
                let len = padded.dims()[1];
                let kind = StepKind::Padding;
                let step =
                    TrajectoryStep::between(kind, [prompt_len, len], nfe, &before, &after, len);
                if step.changes_anything() {
                    observer.step_done(&step);
                }
                padded
            }
            None => tokens,
        };
        Ok(Generation { tokens, nfe, blocks })
    }

    /// The prompt's ids against the model ([`SamplerState::check`] with every position fixed),
    /// `eos` among its ids, and the generated length against its context: without a sliding
    /// window `⌊prompt_len⌋_block + max_blocks · block_size ≤ max_seq_len`, with one the window
    /// itself (what the model attends to).
    fn check_lengths<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        prompt: &Option<Tensor<2, Int>>,
        max_blocks: usize,
        eos: Option<u32>,
        prefix: Prefix,
    ) -> Result<(), BlockError> {
        let view = Subs { model, mask_id: self.mask_id };
        if let Some(prompt) = prompt {
            let fixed = Tensor::<2, Int>::ones(prompt.dims(), &prompt.device()).equal_elem(1);
            SamplerState { tokens: prompt.clone(), fixed, nfe: 0 }.check(&view)?;
        }
        let vocab_size = view.vocab_size();
        if let Some(eos) = eos {
            ensure_size(
                (eos as usize) < vocab_size,
                "block sampler",
                "eos",
                eos as usize,
                format!("an id below the model's vocab_size = {vocab_size}"),
            )?;
        }
        let max_seq_len = model.max_seq_len();
        let (name, attended) = match prefix {
            Prefix::Cached { window: Some(window) } => ("window", window),
            _ => {
                // The prompt's whole blocks, then `max_blocks` blocks (the first holding a
                // partial prompt block, if any).
                let bs = self.block_size;
                let prompt_len = prompt.as_ref().map_or(0, |p| p.dims()[1] / bs * bs);
                (
                    "max_blocks",
                    prompt_len.saturating_add(max_blocks.saturating_mul(self.block_size)),
                )
            }
        };
        ensure_size(
            attended <= max_seq_len,
            "block sampler",
            name,
            if name == "window" { attended } else { max_blocks },
            format!(
                "a length within the model's max_seq_len = {max_seq_len} (prompt and blocks), or \
                 a sliding window to go beyond"
            ),
        )?;
        Ok(())
    }

    /// Runs the clean `block` (rotary positions from `start`) against `cache` and returns the
    /// cache extended by it, trimmed to `window`.
    fn extend<M: TokenModel + ?Sized>(
        &self,
        model: &M,
        cache: Option<KvCache>,
        block: Tensor<2, Int>,
        start: usize,
        window: Option<usize>,
    ) -> KvCache {
        let n = block.dims()[1];
        let positions = Tensor::<1, Int>::arange(start as i64..(start + n) as i64, &block.device());
        let mut input = DenoiserInput::tokens(block)
            .with_mask(AttentionMask::BlockCausal { block_size: self.block_size })
            .with_positions(positions)
            .keep_cache();
        if let Some(cache) = cache {
            input = input.with_cache(cache);
        }
        let cache = model.forward(input).cache.expect("asked for the cache");
        match window {
            Some(window) => cache.keep_last(window),
            None => cache,
        }
    }
}

/// Sets every position after a row's first generated `eos` (at or after `prompt_len`) to `eos`;
/// an `eos` inside the prompt ends nothing.
fn pad_after_eos(tokens: Tensor<2, Int>, eos: u32, prompt_len: usize) -> Tensor<2, Int> {
    let [batch, len] = tokens.dims();
    let device = tokens.device();
    let mut values: Vec<i64> = int_values(tokens);
    for row in values.chunks_mut(len) {
        let generated = &mut row[prompt_len..];
        if let Some(first) = generated.iter().position(|&t| t == i64::from(eos)) {
            generated[first..].fill(i64::from(eos));
        }
    }
    ints(values, [batch, len], &device)
}

#[cfg(test)]
mod tests;
