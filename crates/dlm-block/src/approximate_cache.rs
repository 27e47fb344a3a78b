//! Block-wise decoding of full-attention masked models with Fast-dLLM's approximate caches.

use std::cell::{Cell, RefCell};
use std::ops::Range;

use burn::tensor::{Device, Int, Tensor};
use dlm_core::backbone::{AttentionMask, DenoiserInput, KvCache, TokenModel};
use dlm_discrete::sampler::{MaskedSampler, Observer, SamplerState};
use dlm_discrete::{MaskedDenoiser, Subs, subs_log_probs, zero_masking_log_probs};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{BlockError, ensure_size};

/// What is reused between the steps of a block (Fast-dLLM, Wu et al. 2025, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Every step runs the whole sequence (the exact reference).
    None,
    /// The keys and values of the positions before the block come from the pass at the block's
    /// start; each step runs the block and everything after it.
    Prefix,
    /// The keys and values before and after the block both come from the pass at the block's
    /// start; each step runs only the block.
    Dual,
}

/// The result of [`BlockwiseDecoder::decode`].
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Prompt and generated tokens, `[batch, prompt_len + gen_len]`.
    pub tokens: Tensor<2, Int>,
    /// Model calls.
    pub nfe: usize,
    /// Positions processed by all model calls together (a measure of compute).
    pub positions_processed: usize,
}

/// Semi-autoregressive decoding of a full-attention (MDLM/LLaDA-style) model in blocks, with a
/// masked sampler's confidence-based policy inside each block (top-k, threshold, factor, entropy
/// bound) and one of Fast-dLLM's caches. At the start of every block one pass over the whole
/// sequence both refreshes the cache and makes the block's first decoding step; the later steps
/// of the block reuse the cache, which is then only approximately right (the masked positions it
/// was computed with have changed). `CacheMode::None` recomputes everything and is exact.
///
/// It is the masked sampler's own step loop ([`MaskedSampler`] with a block length) run on a view
/// of the model that holds the cache, as BD3LM's exact cache is a view of its model.
#[derive(Debug, Clone)]
pub struct BlockwiseDecoder {
    sampler: MaskedSampler,
    block_size: usize,
}

impl BlockwiseDecoder {
    /// Decodes blocks of `block_size` with `sampler`'s proposal and policy.
    ///
    /// # Errors
    /// [`BlockError::Invalid`] for `block_size == 0`; [`BlockError::Unsupported`] for a grid
    /// policy (ancestral, ReMDM), which walks time rather than counting or thresholding
    /// confidences.
    pub fn new(sampler: MaskedSampler, block_size: usize) -> Result<Self, BlockError> {
        ensure_size(block_size > 0, "block-wise decoder", "block_size", block_size, "at least 1")?;
        if sampler.unmasking().walks_time() {
            return Err(BlockError::Unsupported {
                what: "a grid policy (ancestral, ReMDM) in the block-wise decoder; use a count or \
                       confidence policy (top-k, random, threshold, factor, entropy bound)",
            });
        }
        Ok(Self { sampler: sampler.with_block_length(block_size)?, block_size })
    }

    /// Generates `gen_len` tokens after `prompt` (`[batch, p]`) with `denoiser`'s network, its
    /// mask token marking the undecided positions (build it with
    /// [`dlm_discrete::MaskingProcess::denoiser`] from the process the model was trained on).
    ///
    /// # Errors
    /// [`BlockError::Invalid`] if `gen_len` is not a positive multiple of the block size; as
    /// [`SamplerState::with_prompt`] for a prompt the model cannot read (ids outside its
    /// vocabulary, a mask token, a total length beyond its context);
    /// [`BlockError::Unsupported`] for a cache with a model that cannot read through one
    /// ([`TokenModel::supports_kv_cache`]).
    pub fn decode<M: TokenModel + ?Sized>(
        &self,
        denoiser: &Subs<'_, M>,
        prompt: Tensor<2, Int>,
        gen_len: usize,
        mode: CacheMode,
        rng: &mut StdRng,
    ) -> Result<Decoded, BlockError> {
        self.decode_observed(denoiser, prompt, gen_len, mode, rng, &mut ())
    }

    /// As [`BlockwiseDecoder::decode`], telling `observer` of every step and block (the masked
    /// sampler's [`Observer`]): what a caller streams, or records as a trajectory.
    ///
    /// # Errors
    /// As [`BlockwiseDecoder::decode`].
    pub fn decode_observed<M: TokenModel + ?Sized>(
        &self,
        denoiser: &Subs<'_, M>,
        prompt: Tensor<2, Int>,
        gen_len: usize,
        mode: CacheMode,
        rng: &mut StdRng,
        observer: &mut dyn Observer,
    ) -> Result<Decoded, BlockError> {
        let bs = self.block_size;
        ensure_size(
            gen_len > 0 && gen_len.is_multiple_of(bs),
            "block-wise decoder",
            "gen_len",
            gen_len,
            format!("a positive multiple of block_size = {bs}"),
        )?;
        if mode != CacheMode::None && !denoiser.model.supports_kv_cache() {
            return Err(BlockError::Unsupported {
                what: "a prefix or dual cache with a model whose logits are shifted (Dream); use \
                       CacheMode::None",
            });
        }
        let [batch, prompt_len] = prompt.dims();
        // The prompt's ids and the whole length against the model.
        let state = if prompt_len > 0 {
            SamplerState::with_prompt(denoiser, prompt, gen_len)?
        } else {
            SamplerState::all_masked(denoiser, batch, gen_len)?
        };
        let view = ApproximatelyCached {
            denoiser: *denoiser,
            mode,
            cache: RefCell::new(None),
            positions_processed: Cell::new(0),
        };
        let decoded = self.sampler.sample_observed(&view, state, rng, observer)?;
        Ok(Decoded {
            tokens: decoded.tokens,
            nfe: decoded.nfe,
            positions_processed: view.positions_processed.get(),
        })
    }
}

/// A full-attention model read through one of Fast-dLLM's caches, for the masked sampler's block
/// loop. The first call on a block runs the whole sequence and keeps every layer's keys and
/// values; later calls on the same block run only what the mode recomputes (the block and
/// everything after it, or the block alone) against the kept ones.
struct ApproximatelyCached<'a, M: ?Sized> {
    denoiser: Subs<'a, M>,
    mode: CacheMode,
    /// The block the cache was filled at the start of, and the cache.
    cache: RefCell<Option<(Range<usize>, KvCache)>>,
    /// Positions run by all model calls together (a measure of compute).
    positions_processed: Cell<usize>,
}

impl<M: TokenModel + ?Sized> ApproximatelyCached<'_, M> {
    /// Runs `z_t` from `start` on (rotary positions from `start`) against `cache`, and returns
    /// the logits of its first `n` positions.
    ///
    /// # Shapes
    /// - `z_t`: `[batch, m]`, `t`: `[batch]` → `[batch, n, vocab_size]`
    fn chunk(
        &self,
        z_t: Tensor<2, Int>,
        t: Tensor<1>,
        start: usize,
        n: usize,
        cache: Option<KvCache>,
    ) -> Tensor<3> {
        let [batch, m] = z_t.dims();
        self.positions_processed.set(self.positions_processed.get() + batch * m);
        let hidden = run_chunk(self.denoiser.model, z_t, start, cache, t);
        self.head(hidden.narrow(1, 0, n))
    }

    /// The head on hidden states.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, n, width]` → `[batch, n, vocab_size]`
    fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [batch, n, width] = hidden.dims();
        let logits = self.denoiser.model.head_rows(hidden.reshape([batch * n, width]));
        let vocab_size = logits.dims()[1];
        logits.reshape([batch, n, vocab_size])
    }

    /// The logits of the positions `region`, through the cache where it holds the block (see
    /// [`MaskedDenoiser::region_log_probs`] below).
    ///
    /// # Shapes
    /// - `z_t`: `[batch, len]`, `t`: `[batch]` → `[batch, region.len(), vocab_size]`
    fn region_logits(&self, z_t: Tensor<2, Int>, t: Tensor<1>, region: Range<usize>) -> Tensor<3> {
        let [batch, len] = z_t.dims();
        let (start, n) = (region.start, region.len());
        let mut kept = self.cache.borrow_mut();
        match (self.mode, kept.as_ref()) {
            (CacheMode::Prefix, Some((block, full))) if *block == region => {
                let prefix = (start > 0).then(|| full.slice(0, start));
                self.chunk(z_t.narrow(1, start, len - start), t, start, n, prefix)
            }
            (CacheMode::Dual, Some((block, full))) if *block == region => {
                let prefix = (start > 0).then(|| full.slice(0, start));
                let suffix = (region.end < len).then(|| full.slice(region.end, len - region.end));
                let around = match (prefix, suffix) {
                    (Some(p), Some(s)) => Some(p.concat(s)),
                    (p, s) => p.or(s),
                };
                self.chunk(z_t.narrow(1, start, n), t, start, n, around)
            }
            // No cache, or a new block: the whole sequence, keeping the cache for the block.
            _ => {
                let mut input =
                    DenoiserInput::tokens(z_t).with_mask(AttentionMask::Full).with_time(t);
                if self.mode != CacheMode::None {
                    input = input.keep_cache();
                }
                let out = self.denoiser.model.forward_hidden(input);
                *kept = out.cache.map(|cache| (region, cache));
                self.positions_processed.set(self.positions_processed.get() + batch * len);
                self.head(out.output.narrow(1, start, n))
            }
        }
    }
}

impl<M: TokenModel + ?Sized> MaskedDenoiser for ApproximatelyCached<'_, M> {
    /// The exact full pass.
    fn log_probs(&self, z_t: Tensor<2, Int>, t: Tensor<1>) -> Tensor<3> {
        let [batch, len] = z_t.dims();
        self.positions_processed.set(self.positions_processed.get() + batch * len);
        self.denoiser.log_probs(z_t, t)
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

/// Runs `chunk` (rotary positions from `start`) with full attention against `cache`: its hidden
/// states.
///
/// # Shapes
/// - `chunk`: `[batch, n]`, `t`: `[batch]` → `[batch, n, width]`
fn run_chunk<M: TokenModel + ?Sized>(
    model: &M,
    chunk: Tensor<2, Int>,
    start: usize,
    cache: Option<KvCache>,
    t: Tensor<1>,
) -> Tensor<3> {
    let n = chunk.dims()[1];
    let positions = Tensor::<1, Int>::arange(start as i64..(start + n) as i64, &chunk.device());
    let mut input = DenoiserInput::tokens(chunk)
        .with_mask(AttentionMask::Full)
        .with_positions(positions)
        .with_time(t);
    if let Some(cache) = cache {
        input = input.with_cache(cache);
    }
    model.forward_hidden(input).output
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;
    use dlm_core::backbone::{Denoiser, DenoiserConfig};
    use dlm_core::host::int_values;
    use dlm_core::sampling::{Confidence, TokenSampler};
    use dlm_core::testing::randomised;
    use dlm_discrete::sampler::Unmasking;
    use rand::SeedableRng;

    use super::*;

    const MASK: u32 = 3;
    const VOCAB: usize = 11;

    fn model(device: &Device) -> Denoiser {
        randomised(
            DenoiserConfig::tokens(VOCAB, 32)
                .with_d_model(32)
                .with_n_heads(2)
                .with_n_layers(2)
                .init(device)
                .unwrap(),
            device,
        )
    }

    #[test]
    fn every_mode_decodes_everything_and_one_step_blocks_agree_exactly() {
        let device = Device::flex();
        let model = model(&device);
        let prompt = Tensor::<2>::random([2, 4], Distribution::Uniform(4.0, 11.0), &device).int();
        let proposal = TokenSampler::new(1.0).unwrap();
        // τ tiny: every block is decoded at its first step, which is a full pass in every mode.
        let one_step = MaskedSampler::new(
            Unmasking::threshold(Confidence::TokenProbability, 1e-9).unwrap(),
            1,
        )
        .unwrap();
        let decoder = BlockwiseDecoder::new(one_step.with_proposal(proposal), 4).unwrap();
        let runs: Vec<Decoded> = [CacheMode::None, CacheMode::Prefix, CacheMode::Dual]
            .into_iter()
            .map(|mode| {
                decoder
                    .decode(
                        &Subs { model: &model, mask_id: MASK },
                        prompt.clone(),
                        12,
                        mode,
                        &mut StdRng::seed_from_u64(4),
                    )
                    .unwrap()
            })
            .collect();
        let reference = int_values(runs[0].tokens.clone());
        for run in &runs {
            assert_eq!(int_values(run.tokens.clone()), reference);
            assert_eq!(run.nfe, 3);
        }
        assert_eq!(&reference[..4], &int_values(prompt.clone())[..4]);

        // Several steps per block: caches cut the positions processed; nothing stays masked.
        let threshold =
            MaskedSampler::new(Unmasking::TopK { confidence: Confidence::Margin }, 4).unwrap();
        let decoder = BlockwiseDecoder::new(threshold.with_proposal(proposal), 4).unwrap();
        let mut processed = Vec::new();
        for mode in [CacheMode::None, CacheMode::Prefix, CacheMode::Dual] {
            let out = decoder
                .decode(
                    &Subs { model: &model, mask_id: MASK },
                    prompt.clone(),
                    12,
                    mode,
                    &mut StdRng::seed_from_u64(4),
                )
                .unwrap();
            assert!(int_values(out.tokens).iter().all(|&t| t != i64::from(MASK)), "{mode:?}");
            assert_eq!(out.nfe, 3 * 4);
            processed.push(out.positions_processed);
        }
        assert!(processed[2] < processed[1] && processed[1] < processed[0], "{processed:?}");
        // Without a prompt the first block has no prefix.
        let empty = Tensor::<2, Int>::zeros([2, 0], &device);
        for mode in [CacheMode::Prefix, CacheMode::Dual] {
            let out = decoder
                .decode(
                    &Subs { model: &model, mask_id: MASK },
                    empty.clone(),
                    8,
                    mode,
                    &mut StdRng::seed_from_u64(4),
                )
                .unwrap();
            assert_eq!(out.tokens.dims(), [2, 8]);
        }
    }

    /// With nothing changed since the full pass, a chunk run against the cached prefix (and
    /// suffix) gives the full pass's logits: the caches hold the right positions, in an order
    /// full attention does not care about.
    #[test]
    fn chunks_against_the_caches_reproduce_the_full_pass() {
        let device = Device::flex();
        let model = model(&device);
        let (batch, len, start, end) = (2, 12, 4, 8);
        let z = Tensor::<2>::random([batch, len], Distribution::Uniform(3.0, 11.0), &device).int();
        let t = Tensor::<1>::from_floats([0.3, 0.6], &device);
        let full = model.forward(
            DenoiserInput::tokens(z.clone())
                .with_mask(AttentionMask::Full)
                .with_time(t.clone())
                .keep_cache(),
        );
        let cache = full.cache.unwrap();
        let columns = |from: usize, to: usize| z.clone().narrow(1, from, to - from);
        let expected = |from: usize, to: usize| full.output.clone().narrow(1, from, to - from);
        let max_diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f64>();
        // Prefix: the chunk runs from the block to the end.
        let head = |hidden: Tensor<3>| {
            let [batch, n, width] = hidden.dims();
            model.head_rows(hidden.reshape([batch * n, width])).reshape([batch, n, VOCAB])
        };
        let prefix = head(run_chunk(
            &model,
            columns(start, len),
            start,
            Some(cache.slice(0, start)),
            t.clone(),
        ));
        assert!(max_diff(prefix, expected(start, len)) < 1e-5);
        // Dual: only the block, against prefix and suffix.
        let around = cache.slice(0, start).concat(cache.slice(end, len - end));
        let dual = head(run_chunk(&model, columns(start, end), start, Some(around), t));
        assert!(max_diff(dual, expected(start, end)) < 1e-5);
    }

    /// The decoder is the masked sampler's loop: its stop tokens end decoding here too, inside
    /// the first block, with the full run's tokens padded.
    #[test]
    fn stop_tokens_end_block_wise_decoding_early() {
        let device = Device::flex();
        device.seed(5);
        let model = model(&device);
        let subs = Subs { model: &model, mask_id: MASK };
        let prompt = Tensor::<2, Int>::from_ints([[5, 6, 7, 8], [9, 10, 4, 5]], &device);
        let sampler = MaskedSampler::new(Unmasking::TopK { confidence: Confidence::Margin }, 4)
            .unwrap()
            .with_proposal(TokenSampler::new(1.0).unwrap());
        for mode in [CacheMode::None, CacheMode::Prefix, CacheMode::Dual] {
            let decode = |sampler: MaskedSampler| {
                let decoder = BlockwiseDecoder::new(sampler, 4).unwrap();
                decoder
                    .decode(&subs, prompt.clone(), 12, mode, &mut StdRng::seed_from_u64(4))
                    .unwrap()
            };
            let full = decode(sampler.clone());
            let tokens = int_values(full.tokens);
            // Each row's first generated token ends it: the rest of the row is padding.
            let stops = [tokens[4], tokens[16 + 4]];
            let stopped =
                decode(sampler.clone().with_stop_tokens(stops.map(|s| s as u32).to_vec()));
            let mut expected = tokens.clone();
            for row in expected.chunks_mut(16) {
                row[5..].fill(stops[0]);
            }
            assert_eq!(int_values(stopped.tokens), expected, "{mode:?}");
            // Both rows end once their first generated position is decoded: inside block one.
            assert_eq!(full.nfe, 12);
            assert!(stopped.nfe <= 4, "{mode:?}: {}", stopped.nfe);
        }
    }

    #[test]
    fn bad_settings_are_rejected() {
        let device = Device::flex();
        let model = model(&device);
        let policy = Unmasking::Ancestral {
            schedule: dlm_sched::ScheduleKind::LogLinear(dlm_sched::LogLinear::default()),
        };
        assert!(BlockwiseDecoder::new(MaskedSampler::new(policy, 4).unwrap(), 4).is_err());
        let decoder =
            BlockwiseDecoder::new(MaskedSampler::new(Unmasking::Random, 2).unwrap(), 4).unwrap();
        let prompt = Tensor::<2, Int>::from_ints([[5, 6]], &device);
        assert!(
            decoder
                .decode(
                    &Subs { model: &model, mask_id: MASK },
                    prompt,
                    6,
                    CacheMode::Dual,
                    &mut StdRng::seed_from_u64(0)
                )
                .is_err()
        );
    }
}
