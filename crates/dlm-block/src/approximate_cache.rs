//! Block-wise decoding of full-attention masked models with Fast-dLLM's approximate caches.

use burn::tensor::{Device, Int, Tensor, TensorData};
use dlm_core::backbone::{AttentionMask, DenoiserInput, KvCache, TokenModel};
use dlm_core::host::ints;
use dlm_discrete::sampler::{BlockDone, MaskedSampler, SamplerState, StepRegion, tokens_per_step};
use dlm_discrete::{Subs, subs_log_probs};
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
/// masked sampler's confidence-based policy inside each block (top-k, threshold, factor) and one
/// of Fast-dLLM's caches. At the start of every block one pass over the whole sequence both
/// refreshes the cache and makes the block's first decoding step; the later steps of the block
/// reuse the cache, which is then only approximately right (the masked positions it was computed
/// with have changed). `CacheMode::None` recomputes everything and is exact.
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
                       confidence policy (top-k, random, threshold, factor)",
            });
        }
        Ok(Self { sampler, block_size })
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
        self.decode_observed(denoiser, prompt, gen_len, mode, rng, &mut |_| {})
    }

    /// As [`BlockwiseDecoder::decode`], calling `observe` after every block: what a caller
    /// streams.
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
        observe: &mut dyn FnMut(BlockDone<'_>),
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
        let device = prompt.device();
        let [batch, prompt_len] = prompt.dims();
        // The prompt's ids and the whole length against the model.
        if prompt_len > 0 {
            SamplerState::with_prompt(denoiser, prompt.clone(), gen_len)?;
        } else {
            SamplerState::all_masked(denoiser, batch, gen_len)?;
        }
        let len = prompt_len + gen_len;
        let (model, mask_id) = (denoiser.model, denoiser.mask_id);
        let mask = i64::from(mask_id);
        let mut tokens: Vec<i64> = prompt
            .into_data()
            .iter::<i64>()
            .collect::<Vec<_>>()
            .chunks(prompt_len.max(1))
            .flat_map(|row| {
                row.iter().copied().chain(std::iter::repeat_n(mask, gen_len)).collect::<Vec<_>>()
            })
            .collect();
        if prompt_len == 0 {
            tokens = vec![mask; batch * len];
        }
        let (mut nfe, mut positions_processed) = (0, 0);
        for start in (prompt_len..len).step_by(bs) {
            let end = start + bs;
            let masked_in_block = |tokens: &[i64], b: usize| {
                (start..end).filter(|&i| tokens[b * len + i] == mask).count()
            };
            let n_in_block: Vec<usize> = (0..batch).map(|b| masked_in_block(&tokens, b)).collect();
            let max_steps = if self.sampler.unmasking().runs_to_completion() {
                bs
            } else {
                self.sampler.steps()
            };
            let mut cache: Option<KvCache> = None;
            for step in 0..max_steps {
                if (0..batch).all(|b| masked_in_block(&tokens, b) == 0) {
                    break;
                }
                let t = masked_fraction(&tokens, batch, len, prompt_len, mask, &device);
                let log_probs = match (mode, &cache) {
                    (CacheMode::None, _) | (_, None) => {
                        let z = ints(tokens.clone(), [batch, len], &device);
                        let keep = mode != CacheMode::None;
                        let mut input = DenoiserInput::tokens(z.clone())
                            .with_mask(AttentionMask::Full)
                            .with_time(t);
                        if keep {
                            input = input.keep_cache();
                        }
                        let out = model.forward(input);
                        cache = out.cache;
                        positions_processed += batch * len;
                        subs_log_probs(out.output, z, mask_id).narrow(1, start, bs)
                    }
                    (CacheMode::Prefix, Some(full)) => {
                        let z = slice_columns(&tokens, batch, len, start, len, &device);
                        let prefix = (start > 0).then(|| full.slice(0, start));
                        let out = self.run_chunk(model, z.clone(), start, prefix, t);
                        positions_processed += batch * (len - start);
                        subs_log_probs(out, z, mask_id).narrow(1, 0, bs)
                    }
                    (CacheMode::Dual, Some(full)) => {
                        let z = slice_columns(&tokens, batch, len, start, end, &device);
                        let prefix = (start > 0).then(|| full.slice(0, start));
                        let suffix = (end < len).then(|| full.slice(end, len - end));
                        let around = match (prefix, suffix) {
                            (Some(p), Some(s)) => Some(p.concat(s)),
                            (p, s) => p.or(s),
                        };
                        let out = self.run_chunk(model, z.clone(), start, around, t);
                        positions_processed += batch * bs;
                        subs_log_probs(out, z, mask_id)
                    }
                };
                nfe += 1;
                let mut block: Vec<i64> = (0..batch)
                    .flat_map(|b| tokens[b * len + start..b * len + end].to_vec())
                    .collect();
                let candidates: Vec<bool> = block.iter().map(|&v| v == mask).collect();
                let decoded = vec![false; batch * bs];
                let k_per_row: Vec<usize> = n_in_block
                    .iter()
                    .map(|&n| tokens_per_step(n, self.sampler.steps(), step))
                    .collect();
                let region = StepRegion {
                    tokens: &mut block,
                    candidates: &candidates,
                    decoded: &decoded,
                    k_per_row: &k_per_row,
                    mask_id,
                    t: f64::NAN,
                    s: f64::NAN,
                };
                self.sampler.step_region(log_probs, region, rng);
                for b in 0..batch {
                    tokens[b * len + start..b * len + end]
                        .copy_from_slice(&block[b * bs..(b + 1) * bs]);
                }
            }
            observe(BlockDone { tokens: &tokens, batch, len, end, nfe });
        }
        Ok(Decoded {
            tokens: ints(tokens.clone(), [batch, len], &device),
            nfe,
            positions_processed,
        })
    }

    /// Runs `chunk` (rotary positions from `start`) with full attention against `cache`.
    fn run_chunk<M: TokenModel + ?Sized>(
        &self,
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
        model.forward(input).output
    }
}

fn slice_columns(
    values: &[i64],
    batch: usize,
    len: usize,
    from: usize,
    to: usize,
    device: &Device,
) -> Tensor<2, Int> {
    let data: Vec<i64> =
        (0..batch).flat_map(|b| values[b * len + from..b * len + to].to_vec()).collect();
    Tensor::from_data(TensorData::new(data, [batch, to - from]), device)
}

/// The fraction of generated positions still masked, per row: the time a time-conditioned model
/// is given.
fn masked_fraction(
    values: &[i64],
    batch: usize,
    len: usize,
    prompt_len: usize,
    mask: i64,
    device: &Device,
) -> Tensor<1> {
    let generated = (len - prompt_len).max(1) as f32;
    let fractions: Vec<f32> = (0..batch)
        .map(|b| {
            values[b * len + prompt_len..(b + 1) * len].iter().filter(|&&v| v == mask).count()
                as f32
                / generated
        })
        .collect();
    Tensor::from_data(TensorData::new(fractions, [batch]), device)
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

    fn model(device: &Device) -> Denoiser {
        randomised(
            DenoiserConfig::tokens(11, 32)
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
        let sampler = MaskedSampler::new(Unmasking::Random, 1).unwrap();
        let decoder = BlockwiseDecoder::new(sampler, 4).unwrap();
        let columns = |from: usize, to: usize| z.clone().narrow(1, from, to - from);
        let expected = |from: usize, to: usize| full.output.clone().narrow(1, from, to - from);
        let max_diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f64>();
        // Prefix: the chunk runs from the block to the end.
        let prefix = decoder.run_chunk(
            &model,
            columns(start, len),
            start,
            Some(cache.slice(0, start)),
            t.clone(),
        );
        assert!(max_diff(prefix, expected(start, len)) < 1e-5);
        // Dual: only the block, against prefix and suffix.
        let around = cache.slice(0, start).concat(cache.slice(end, len - end));
        let dual = decoder.run_chunk(&model, columns(start, end), start, Some(around), t);
        assert!(max_diff(dual, expected(start, end)) < 1e-5);
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
