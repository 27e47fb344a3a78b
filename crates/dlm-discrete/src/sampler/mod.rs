//! Masked-diffusion samplers: one driver, composed of a token proposal ([`TokenSampler`]), an
//! [`Unmasking`] policy (ancestral, ReMDM, top-k confidence, random, threshold, factor, entropy
//! bound, SlowFast), an optional semi-autoregressive block length, optional token editing and
//! stop tokens.

mod editing;
mod observer;
mod remdm;
mod slow_fast;
mod state;
mod stopping;
mod trajectory;
mod unmasking;

use std::ops::Range;

use burn::tensor::{Int, Tensor};
use dlm_core::host::{floats, int_values, ints};
use dlm_core::sampling::{Confidence, TokenSampler};
use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

pub use editing::TokenEditing;
pub use observer::{BlockDone, EachStep, Observer, Start};
pub use remdm::{ReMdm, ReMdmStrategy};
pub use slow_fast::SlowFast;
pub use state::SamplerState;
pub use stopping::{AdaptiveStopping, StableAndConfident};
pub use trajectory::{Commit, RowChanges, StepKind, Trajectory, TrajectoryStep};
pub use unmasking::{Clock, RowMemory, Tick, Unmasking, entropy_bound_count, tokens_per_step};
use unmasking::{RowSelection, RowStep};

use crate::denoiser::MaskedDenoiser;
use crate::error::{DiscreteError, ensure_size};

/// A model that does not read the time, so a prediction can be reused while no token changes
/// (MDLM's `ddpm_cache`, Sahoo et al. 2024, §4.1): the only way to reach
/// [`MaskedSampler::sample_reusing`].
#[derive(Debug, Clone)]
pub struct TimeAgnostic<M>(M);

impl<M: MaskedDenoiser> TimeAgnostic<M> {
    /// Wraps `model`.
    ///
    /// # Errors
    /// [`DiscreteError::TimeConditionedModel`] if the model reads the time.
    pub fn new(model: M) -> Result<Self, DiscreteError> {
        if model.is_time_conditioned() {
            return Err(DiscreteError::TimeConditionedModel { what: "the cached sampler" });
        }
        Ok(Self(model))
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.0
    }
}

/// The positions one step works on (see [`MaskedSampler::step_region`]), row-major.
#[derive(Debug)]
pub struct StepRegion<'a> {
    /// Current tokens; committed positions are overwritten.
    pub tokens: &'a mut [i64],
    /// Masked positions that may be decoded this step.
    pub candidates: &'a [bool],
    /// Decoded positions that ReMDM may mask again.
    pub decoded: &'a [bool],
    /// Each row's step on the policy's clock ([`Unmasking::clock`]).
    pub ticks: &'a [Tick],
    /// What the policy remembers of each row since the block started.
    pub memories: &'a mut [RowMemory],
    /// The mask token.
    pub mask_id: u32,
}

/// A masked-diffusion sampler.
///
/// Each step: one model call gives `p_θ(x0 | z_t)` at the positions of the current block
/// ([`MaskedDenoiser::region_log_probs`]); the proposal draws a token for every position of the
/// block (float64 Gumbel-max); the [`Unmasking`] policy picks which masked positions take their
/// proposal (and, for ReMDM, which decoded ones are masked again). Fixed positions (a prompt)
/// never change; blocks tile the positions from the first free one. The policy's [`Clock`] paces
/// each block: grid policies walk `steps` uniform steps from `t = 1` to `0`; count policies
/// decode the block's masked positions in `steps` even shares (LLaDA); threshold, factor and the
/// entropy bound decode until the block is done, at least one token a step. Whatever is still masked at the end is filled with the argmax of one last prediction
/// (MDLM's noise removal), so no mask is ever left behind. Every model call is counted in
/// [`SamplerState::nfe`].
///
/// Randomness: every draw (the proposals' float64 Gumbel noise and the policies' uniforms) comes
/// from the host `rng`, so with a fixed model the output is determined by the seed.
///
/// Deserialising runs the constructors' checks (a config with `"steps": 0` is an error naming
/// `steps`, not a panic inside [`MaskedSampler::sample`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct MaskedSampler {
    proposal: TokenSampler,
    unmasking: Unmasking,
    steps: usize,
    block_length: Option<usize>,
    #[serde(default)]
    stop_tokens: Vec<u32>,
    #[serde(default)]
    editing: Option<TokenEditing>,
    #[serde(default)]
    adaptive_stopping: Option<AdaptiveStopping>,
}

dlm_sched::serde_validated!(MaskedSampler);

impl MaskedSampler {
    /// A sampler with greedy proposals, over the whole sequence at once.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] if `steps == 0`; as [`Unmasking::validate`] for a policy
    /// written as a literal with settings out of range.
    pub fn new(unmasking: Unmasking, steps: usize) -> Result<Self, DiscreteError> {
        dlm_sched::ensure_steps("masked sampler", "steps", steps)?;
        unmasking.validate()?;
        Ok(Self {
            proposal: TokenSampler::greedy(),
            unmasking,
            steps,
            block_length: None,
            stop_tokens: Vec::new(),
            editing: None,
            adaptive_stopping: None,
        })
    }

    /// The checks of [`MaskedSampler::new`] and [`MaskedSampler::with_block_length`] on a value
    /// read from a config (the proposal checks itself when it is read).
    fn validate(&self) -> Result<(), DiscreteError> {
        let sampler = Self::new(self.unmasking.clone(), self.steps)?;
        if let Some(block_length) = self.block_length {
            sampler.clone().with_block_length(block_length)?;
        }
        if let Some(editing) = &self.editing {
            editing.validate()?;
            sampler.with_editing(editing.clone())?;
        }
        if let Some(stopping) = &self.adaptive_stopping {
            stopping.validate()?;
        }
        Ok(())
    }

    /// Draws proposals with `proposal` (temperature, top-k, top-p).
    pub fn with_proposal(self, proposal: TokenSampler) -> Self {
        Self { proposal, ..self }
    }

    /// Semi-autoregressive decoding in blocks of `block_length` positions, left to right.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] if `block_length == 0`.
    pub fn with_block_length(self, block_length: usize) -> Result<Self, DiscreteError> {
        ensure_size(
            block_length > 0,
            "masked sampler",
            "block_length",
            block_length,
            "at least 1",
        )?;
        Ok(Self { block_length: Some(block_length), ..self })
    }

    /// Stops early at end-of-sequence tokens (methods_2 §B8, the rule of dllm's samplers and
    /// SDAR's `generate.py`, made per step): a row has ended once one of `stop_tokens` is
    /// decoded at a free position with no masked free position before it. Its text up to that
    /// token is then final: those positions never change again (decoded positions change only
    /// under ReMDM, and for ReMDM the check waits for the end of each block, after which a block
    /// is final). Once every row has ended, decoding stops, with no model call spent on the
    /// positions after the stop. With stop tokens, every free position after a row's first stop
    /// token is set to the first of `stop_tokens` (the padding LLaDA and Dream are trained on),
    /// so the result equals the run without early stopping, padded; only the model calls differ.
    /// Stop tokens inside the prompt end nothing.
    pub fn with_stop_tokens(self, stop_tokens: Vec<u32>) -> Self {
        Self { stop_tokens, ..self }
    }

    /// Also edits decoded tokens (LLaDA 2.1's token-to-token rule, [`TokenEditing`]), with the
    /// policy as the mask-to-token rule. Sampling then needs a model with predictions at decoded
    /// positions ([`MaskedDenoiser::region_predictions`]); stop tokens end a row only at the end of
    /// a block, as an edit may replace them.
    ///
    /// # Errors
    /// [`DiscreteError::Unsupported`] with a policy that masks decoded tokens again (ReMDM): both
    /// would rewrite the same positions.
    pub fn with_editing(self, editing: TokenEditing) -> Result<Self, DiscreteError> {
        if self.unmasking.remasks() {
            return Err(DiscreteError::Unsupported {
                what: "token editing with a remasking policy (ReMDM)",
            });
        }
        Ok(Self { editing: Some(editing), ..self })
    }

    /// Ends a row's block early once its prediction is stable and confident
    /// ([`AdaptiveStopping`], DiffusionGemma's stopping rule on the masked positions).
    ///
    /// # Errors
    /// As [`AdaptiveStopping::validate`].
    pub fn with_adaptive_stopping(self, stopping: AdaptiveStopping) -> Result<Self, DiscreteError> {
        stopping.validate()?;
        Ok(Self { adaptive_stopping: Some(stopping), ..self })
    }

    /// The unmasking policy.
    pub fn unmasking(&self) -> &Unmasking {
        &self.unmasking
    }

    /// Steps per block for grid and count policies; threshold and factor policies ignore it and
    /// run until the block is decoded (at most one step per position, as they always commit one).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Decodes every masked, non-fixed position of `state`.
    ///
    /// # Errors
    /// As [`SamplerState::check`]: a state the model cannot read (ids outside its vocabulary,
    /// more positions than its context, a mask at a fixed position).
    pub fn sample<M: MaskedDenoiser>(
        &self,
        model: &M,
        state: SamplerState,
        rng: &mut StdRng,
    ) -> Result<SamplerState, DiscreteError> {
        self.run(model, state, rng, false, &mut ())
    }

    /// As [`MaskedSampler::sample`], telling `observer` of every step and of each block as it
    /// becomes final (with a block length; the whole sequence otherwise, after the noise
    /// removal): what a caller streams, or records as a [`Trajectory`].
    ///
    /// # Errors
    /// As [`MaskedSampler::sample`].
    pub fn sample_observed<M: MaskedDenoiser>(
        &self,
        model: &M,
        state: SamplerState,
        rng: &mut StdRng,
        observer: &mut dyn Observer,
    ) -> Result<SamplerState, DiscreteError> {
        self.run(model, state, rng, false, observer)
    }

    /// As [`MaskedSampler::sample`], but skips the model call when no token changed since the
    /// last one (MDLM's `ddpm_cache`): with ancestral steps many steps decode nothing, so the
    /// number of model calls is at most the number of positions.
    ///
    /// # Errors
    /// As [`MaskedSampler::sample`].
    pub fn sample_reusing<M: MaskedDenoiser>(
        &self,
        model: &TimeAgnostic<M>,
        state: SamplerState,
        rng: &mut StdRng,
    ) -> Result<SamplerState, DiscreteError> {
        self.run(model.model(), state, rng, true, &mut ())
    }

    fn run<M: MaskedDenoiser>(
        &self,
        model: &M,
        mut state: SamplerState,
        rng: &mut StdRng,
        reuse: bool,
        observer: &mut dyn Observer,
    ) -> Result<SamplerState, DiscreteError> {
        let mask = i64::from(model.mask_id());
        let device = model.device();
        let [batch, seq_len] = state.tokens.dims();
        let fixed_shape = state.fixed.dims();
        ensure_size(
            fixed_shape == [batch, seq_len],
            "sampler state",
            "fixed",
            fixed_shape.iter().product(),
            format!("the shape of the tokens, [{batch}, {seq_len}]"),
        )?;
        let fixed: Vec<bool> = state.fixed.clone().into_data().iter::<bool>().collect();
        let mut tokens: Vec<i64> = int_values(state.tokens.clone());
        // `SamplerState::check`, on the values just read.
        SamplerState::check_host(model, [batch, seq_len], &tokens, &fixed)?;
        observer.started(Start { tokens: &tokens, batch, len: seq_len, mask_id: model.mask_id() });
        let free_per_row: Vec<usize> =
            fixed.chunks(seq_len).map(|row| row.iter().filter(|&&f| !f).count()).collect();
        let vocab_size = model.vocab_size();
        for &stop in &self.stop_tokens {
            ensure_size(
                (stop as usize) < vocab_size && stop != model.mask_id(),
                "masked sampler",
                "stop_tokens",
                stop as usize,
                format!("an id below the model's vocab_size = {vocab_size}, not the mask"),
            )?;
        }
        let stops: Vec<i64> = self.stop_tokens.iter().map(|&t| i64::from(t)).collect();
        let all_ended = |tokens: &[i64]| {
            !stops.is_empty()
                && (0..batch).all(|b| {
                    let row = b * seq_len..(b + 1) * seq_len;
                    ended_at(&tokens[row.clone()], &fixed[row], mask, &stops).is_some()
                })
        };
        // Decoded positions change only under ReMDM and editing, and then only inside the
        // current block.
        let check_every_step = !self.unmasking.remasks() && self.editing.is_none();
        let mut ended = false;
        let clock = self.unmasking.clock(self.steps);
        let mut last: Option<(Vec<i64>, Range<usize>, Tensor<3>)> = None;
        let block = self.block_length.unwrap_or(seq_len);
        // Blocks tile the positions after the prompt: from the first free position of any row.
        let first_free = fixed
            .chunks(seq_len)
            .filter_map(|row| row.iter().position(|&f| !f))
            .min()
            .unwrap_or(seq_len);

        'blocks: for block_start in (first_free..seq_len).step_by(block) {
            let region = block_start..block_start + block.min(seq_len - block_start);
            let n = region.len();
            let block_fixed = in_region(&fixed, seq_len, &region);
            let masked_at_start: Vec<usize> = in_region(&tokens, seq_len, &region)
                .chunks(n)
                .zip(block_fixed.chunks(n))
                .map(|(row, fixed)| {
                    row.iter().zip(fixed).filter(|&(&v, &f)| v == mask && !f).count()
                })
                .collect();
            let mut memories = vec![RowMemory::default(); batch];
            // Adaptive stopping: the rule and the rows whose block is done.
            let mut stopping = self.adaptive_stopping.map(|s| (s.rule(), vec![false; batch]));
            let (mut post_steps, mut changed_last) = (0, false);
            for step in 0.. {
                let mut block_tokens = in_region(&tokens, seq_len, &region);
                let candidates: Vec<bool> =
                    block_tokens.iter().zip(&block_fixed).map(|(&v, &f)| v == mask && !f).collect();
                let ticks: Vec<Tick> = if candidates.iter().any(|&c| c) {
                    if step == clock.max_steps(n) {
                        break;
                    }
                    masked_at_start.iter().map(|&masked| clock.tick(step, masked)).collect()
                } else {
                    // No mask left: edit-only steps, while the last step changed something.
                    match &self.editing {
                        Some(editing) if changed_last && post_steps < editing.max_post_steps() => {
                            post_steps += 1;
                            vec![Tick::Post; batch]
                        }
                        _ => break,
                    }
                };
                // A grid step gives the model its time; otherwise the row's masked fraction.
                let row_times: Vec<f64> = (0..batch)
                    .map(|b| {
                        ticks[b].time().unwrap_or_else(|| {
                            let row = &tokens[b * seq_len..(b + 1) * seq_len];
                            let fixed = &fixed[b * seq_len..(b + 1) * seq_len];
                            let masked =
                                row.iter().zip(fixed).filter(|&(&v, &f)| v == mask && !f).count();
                            masked as f64 / free_per_row[b].max(1) as f64
                        })
                    })
                    .collect();
                let log_probs = match &last {
                    Some((seen, seen_region, log_probs))
                        if reuse && *seen == tokens && *seen_region == region =>
                    {
                        log_probs.clone()
                    }
                    _ => {
                        state.nfe += 1;
                        let z_t = ints(tokens.clone(), [batch, seq_len], &device);
                        let t = floats(&row_times, &device);
                        let log_probs = if self.editing.is_some() {
                            model.region_predictions(z_t, t, region.clone()).ok_or(
                                DiscreteError::Unsupported {
                                    what: "token editing on a model without predictions at \
                                           decoded positions",
                                },
                            )?
                        } else {
                            model.region_log_probs(z_t, t, region.clone())
                        };
                        last = Some((tokens.clone(), region.clone(), log_probs.clone()));
                        log_probs
                    }
                };
                let stopped = stopping.as_mut().map(|(rule, _)| {
                    stable_and_confident(rule, &log_probs, &block_tokens, &candidates)
                });
                let before = stopped.as_ref().map(|_| block_tokens.clone());
                // ReMDM remasks within the current block only: earlier blocks are final.
                let decoded: Vec<bool> =
                    block_tokens.iter().zip(&block_fixed).map(|(&v, &f)| v != mask && !f).collect();
                let step_region = StepRegion {
                    tokens: &mut block_tokens,
                    candidates: &candidates,
                    decoded: &decoded,
                    ticks: &ticks,
                    memories: &mut memories,
                    mask_id: model.mask_id(),
                };
                let mut rows = self.step_region(log_probs, step_region, rng);
                if let (Some((now, argmax)), Some((_, done)), Some(before)) =
                    (stopped, stopping.as_mut(), before)
                {
                    let step = StoppedStep {
                        now: &now,
                        argmax: &argmax,
                        before: &before,
                        candidates: &candidates,
                    };
                    settle_stopped_rows(step, done, &mut block_tokens, &mut rows);
                }
                changed_last =
                    rows.iter().any(|row| !row.committed.is_empty() || !row.edited.is_empty());
                for (b, row) in block_tokens.chunks(n).enumerate() {
                    tokens[b * seq_len + region.start..b * seq_len + region.end]
                        .copy_from_slice(row);
                }
                for changes in &mut rows {
                    changes.committed.iter_mut().for_each(|c| c.position += region.start);
                    changes.edited.iter_mut().for_each(|c| c.position += region.start);
                    changes.remasked.iter_mut().for_each(|p| *p += region.start);
                }
                observer.step_done(&TrajectoryStep {
                    kind: StepKind::Denoise,
                    block: [region.start, region.end],
                    nfe: state.nfe,
                    rows,
                });
                if check_every_step && all_ended(&tokens) {
                    ended = true;
                    break 'blocks;
                }
            }
            if all_ended(&tokens) {
                ended = true;
                break;
            }
            if region.end < seq_len {
                observer.block_done(BlockDone {
                    tokens: &tokens,
                    batch,
                    len: seq_len,
                    end: region.end,
                    nfe: state.nfe,
                });
            }
        }
        let whole = [first_free.min(seq_len), seq_len];
        // Every row has ended: what follows its stop token is padding, not worth a model call.
        if ended {
            let before = tokens.clone();
            pad_after(&mut tokens, &fixed, seq_len, &stops, |row, fixed| {
                ended_at(row, fixed, mask, &stops)
            });
            observer.step_done(&TrajectoryStep::between(
                StepKind::Padding,
                whole,
                state.nfe,
                &before,
                &tokens,
                seq_len,
            ));
        }
        // Noise removal: nothing stays masked.
        if (0..batch * seq_len).any(|i| tokens[i] == mask && !fixed[i]) {
            let before = tokens.clone();
            state.nfe += 1;
            let z_t = ints(tokens.clone(), [batch, seq_len], &device);
            let zeros = floats(&vec![0.0; batch], &device);
            let best: Vec<i64> = int_values(model.log_probs(z_t, zeros).argmax(2));
            for i in 0..batch * seq_len {
                if tokens[i] == mask && !fixed[i] {
                    tokens[i] = best[i];
                }
            }
            let step = TrajectoryStep::between(
                StepKind::NoiseRemoval,
                whole,
                state.nfe,
                &before,
                &tokens,
                seq_len,
            );
            observer.step_done(&step);
        }
        if !stops.is_empty() {
            let before = tokens.clone();
            pad_after(&mut tokens, &fixed, seq_len, &stops, |row, fixed| {
                first_stop(row, fixed, &stops)
            });
            if before != tokens {
                let step = TrajectoryStep::between(
                    StepKind::Padding,
                    whole,
                    state.nfe,
                    &before,
                    &tokens,
                    seq_len,
                );
                observer.step_done(&step);
            }
        }
        observer.block_done(BlockDone {
            tokens: &tokens,
            batch,
            len: seq_len,
            end: seq_len,
            nfe: state.nfe,
        });
        state.tokens = ints(tokens.clone(), [batch, seq_len], &device);
        Ok(state)
    }
}

/// Where a row has ended: its first stop token at a free position, if no free position before it
/// is masked.
fn ended_at(row: &[i64], fixed: &[bool], mask: i64, stops: &[i64]) -> Option<usize> {
    for (i, (&token, &fixed)) in row.iter().zip(fixed).enumerate() {
        if fixed {
            continue;
        }
        if token == mask {
            return None;
        }
        if stops.contains(&token) {
            return Some(i);
        }
    }
    None
}

/// A row's first stop token at a free position, masked positions before it or not (after the
/// last step, when every position is decoded, this is where the row ended).
fn first_stop(row: &[i64], fixed: &[bool], stops: &[i64]) -> Option<usize> {
    row.iter().zip(fixed).position(|(token, &fixed)| !fixed && stops.contains(token))
}

/// Sets every free position after `end_of(row)` to the first stop token, in every row.
fn pad_after(
    tokens: &mut [i64],
    fixed: &[bool],
    len: usize,
    stops: &[i64],
    end_of: impl Fn(&[i64], &[bool]) -> Option<usize>,
) {
    for (row, fixed) in tokens.chunks_mut(len).zip(fixed.chunks(len)) {
        if let Some(at) = end_of(row, fixed) {
            for i in at + 1..len {
                if !fixed[i] {
                    row[i] = stops[0];
                }
            }
        }
    }
}

/// The columns `region` of every row of a row-major `[batch, len]` host array.
fn in_region<T: Copy>(values: &[T], len: usize, region: &Range<usize>) -> Vec<T> {
    values.chunks(len).flat_map(|row| row[region.clone()].iter().copied()).collect()
}

impl MaskedSampler {
    /// One step on a region of `n` positions per row (the whole sequence, or a block): proposals
    /// from `log_probs`, then the policy's choice among the region's candidates, committed into
    /// its tokens; ReMDM may also mask decoded positions again, and token editing replace them
    /// (for which `log_probs` must be the model's predictions, not SUBS's: under SUBS a decoded
    /// position proposes its own token, and nothing is edited).
    ///
    /// # Shapes
    /// - `log_probs`: `[batch, n, vocab_size]`; the region's slices have `batch · n` entries
    ///
    /// Returns what changed in each row, positions counted from the region's start.
    ///
    /// # Panics
    /// If the region's slices do not have `batch · n` entries and `ticks` and `memories` one per
    /// row, or a tick is not of the policy's own clock ([`Unmasking::clock`]).
    pub fn step_region(
        &self,
        log_probs: Tensor<3>,
        region: StepRegion<'_>,
        rng: &mut StdRng,
    ) -> Vec<RowChanges> {
        let [batch, n, _] = log_probs.dims();
        let StepRegion { tokens, candidates, decoded, ticks, memories, mask_id } = region;
        assert!(
            tokens.len() == batch * n
                && candidates.len() == batch * n
                && decoded.len() == batch * n
                && ticks.len() == batch
                && memories.len() == batch,
            "one entry per position of the region, one tick and one memory per row"
        );
        let proposals = self.propose(log_probs.clone(), rng);
        let log_probs_for_edits = log_probs.clone();
        let confidence: Vec<f32> = match self.unmasking.confidence() {
            Some(measure) => {
                let scored = if self.unmasking.scores_the_sampling_distribution() {
                    self.proposal.filtered_logits(log_probs)
                } else {
                    log_probs
                };
                measure.score(scored, proposals.clone()).into_data().iter::<f32>().collect()
            }
            None => vec![0.0; batch * n],
        };
        let edit_probability: Vec<f32> = match &self.editing {
            Some(_) => Confidence::TokenProbability
                .score(log_probs_for_edits, proposals.clone())
                .into_data()
                .iter::<f32>()
                .collect(),
            None => Vec::new(),
        };
        let proposals: Vec<i64> = int_values(proposals);
        let uniforms: Vec<f64> = (0..2 * batch * n).map(|_| rng.random::<f64>()).collect();
        let ranked = self.unmasking.confidence().is_some();
        let mut changes = Vec::with_capacity(batch);
        for (b, (&tick, memory)) in ticks.iter().zip(memories.iter_mut()).enumerate() {
            let row = b * n..(b + 1) * n;
            let step = RowStep {
                candidates: &candidates[row.clone()],
                decoded: &decoded[row.clone()],
                confidence: &confidence[row.clone()],
                uniforms: &uniforms[2 * row.start..2 * row.end],
                tick,
            };
            let selection = match tick {
                Tick::Post => RowSelection { commit: vec![false; n], remask: vec![false; n] },
                _ => self.unmasking.select(&step, memory),
            };
            let edits = match &self.editing {
                Some(editing) => editing.select(
                    &decoded[row.clone()],
                    &tokens[row.clone()],
                    &proposals[row.clone()],
                    &edit_probability[row.clone()],
                ),
                None => vec![false; n],
            };
            let mut row_changes = RowChanges::default();
            for (offset, (commit, remask)) in
                selection.commit.iter().zip(&selection.remask).enumerate()
            {
                let i = row.start + offset;
                if *commit {
                    tokens[i] = proposals[i];
                    row_changes.committed.push(Commit {
                        position: offset,
                        token: proposals[i],
                        confidence: ranked.then_some(confidence[i]),
                    });
                } else if *remask {
                    tokens[i] = i64::from(mask_id);
                    row_changes.remasked.push(offset);
                } else if edits[offset] {
                    tokens[i] = proposals[i];
                    row_changes.edited.push(Commit {
                        position: offset,
                        token: proposals[i],
                        confidence: Some(edit_probability[i]),
                    });
                }
            }
            changes.push(row_changes);
        }
        changes
    }

    /// Proposals with float64 Gumbel noise from the host `rng` (none when greedy), so that a
    /// sampler's output is determined by its `rng` alone, whatever else uses the device.
    fn propose(&self, log_probs: Tensor<3>, rng: &mut StdRng) -> Tensor<2, Int> {
        self.proposal.sample_with_rng(log_probs, rng)
    }
}

#[cfg(test)]
mod tests;

/// The adaptive stopping rule on a block's step: each row's prediction is its decoded tokens and
/// the model's argmax at its masked positions (`candidates`), its confidence the mean entropy
/// over the masked positions. Returns which rows stopped, and the argmax of every position.
///
/// # Shapes
/// - `log_probs`: `[batch, n, vocab]`; `block_tokens`, `candidates`: `batch · n` values
fn stable_and_confident(
    rule: &mut StableAndConfident,
    log_probs: &Tensor<3>,
    block_tokens: &[i64],
    candidates: &[bool],
) -> (Vec<bool>, Vec<i64>) {
    let [batch, n, _] = log_probs.dims();
    let argmax = int_values(log_probs.clone().argmax(2));
    // `p · log p` with `log p = −∞` (SUBS's mask column) is 0, not NaN.
    let finite = log_probs.clone().clamp_min(-1e30);
    let entropy: Vec<f64> = (finite.clone().exp() * finite)
        .sum_dim(2)
        .neg()
        .into_data()
        .iter::<f32>()
        .map(f64::from)
        .collect();
    let mut predictions = Vec::with_capacity(batch);
    let mut mean_entropy = Vec::with_capacity(batch);
    for b in 0..batch {
        let row = b * n..(b + 1) * n;
        let prediction = row
            .clone()
            .map(|j| if candidates[j] { argmax[j] } else { block_tokens[j] } as u32)
            .collect();
        let masked: Vec<f64> = row.filter(|&j| candidates[j]).map(|j| entropy[j]).collect();
        predictions.push(prediction);
        mean_entropy.push(masked.iter().sum::<f64>() / masked.len().max(1) as f64);
    }
    (rule.observe(&predictions, &mean_entropy), argmax)
}

/// What [`settle_stopped_rows`] reads of one step: the rows the rule stopped at it, the argmax of
/// every position, the block's tokens before the step and the positions that were masked.
struct StoppedStep<'a> {
    now: &'a [bool],
    argmax: &'a [i64],
    before: &'a [i64],
    candidates: &'a [bool],
}

/// Freezes the rows whose block is done: a row the rule stopped at this step takes the argmax at
/// every position that was masked before it (in place of what the policy did to the row), a row
/// stopped earlier keeps its tokens (no remasking, no edit); `done` gains the rows stopped now.
fn settle_stopped_rows(
    step: StoppedStep<'_>,
    done: &mut [bool],
    block_tokens: &mut [i64],
    rows: &mut [RowChanges],
) {
    let n = block_tokens.len() / done.len().max(1);
    for b in 0..done.len() {
        if !(done[b] || step.now[b]) {
            continue;
        }
        let row = b * n..(b + 1) * n;
        block_tokens[row.clone()].copy_from_slice(&step.before[row.clone()]);
        rows[b] = RowChanges::default();
        if !done[b] {
            for (i, j) in row.enumerate().filter(|&(_, j)| step.candidates[j]) {
                block_tokens[j] = step.argmax[j];
                rows[b].committed.push(Commit {
                    position: i,
                    token: step.argmax[j],
                    confidence: None,
                });
            }
            done[b] = true;
        }
    }
}
