//! [`CanvasSampler`]: DiffusionGemma's generation loop — canvases block after block against the
//! encoder's cache, each denoised from uniform noise by entropy-bound acceptance and renoising.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use dlm_core::diffusion_gemma::{DiffusionGemmaLm, EncoderCache};
use dlm_core::host::{int_values, ints};
use dlm_discrete::sampler::StableAndConfident;
use serde::Serialize;

use super::noise::CanvasNoise;
use super::rules::{LinearTemperature, accept_by_entropy};
use super::settings::CanvasSettings;
use crate::error::{BlockError, ensure_size};

const CONTEXT: &str = "canvas sampler";

/// A block-diffusion model whose canvases start from uniform noise: an encoder that extends a
/// cache with finished tokens, and a decoder that reads a canvas against it, optionally
/// conditioned on its previous logits (self-conditioning).
pub trait CanvasDenoiser {
    /// What the encoder writes and the decoder reads.
    type Cache;

    /// `tokens` encoded after `cache` (`None`: nothing before them).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, n]`
    fn encode(&self, tokens: Tensor<2, Int>, cache: Option<Self::Cache>) -> Self::Cache;

    /// As [`CanvasDenoiser::encode`] from nothing, also returning the encoder's next-token
    /// logits (what an autoregressive loss on the encoder reads).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, n]`; returns `[batch, n, vocab]` and the cache
    fn encode_with_logits(&self, tokens: Tensor<2, Int>) -> (Tensor<3>, Self::Cache);

    /// The logits of every canvas position.
    ///
    /// # Shapes
    /// - `canvas`: `[batch, canvas]`; `self_conditioning`: `[batch, canvas, vocab]`
    /// - returns `[batch, canvas, vocab]`
    fn decode(
        &self,
        canvas: Tensor<2, Int>,
        self_conditioning: Option<Tensor<3>>,
        cache: &Self::Cache,
    ) -> Tensor<3>;

    /// Rows of the output distribution.
    fn vocab_size(&self) -> usize;

    /// Tokens per canvas.
    fn canvas_length(&self) -> usize;

    /// The longest sequence (prompt and canvases) the model reads.
    fn max_seq_len(&self) -> usize;

    /// Where it computes.
    fn device(&self) -> Device;
}

impl CanvasDenoiser for DiffusionGemmaLm {
    type Cache = EncoderCache;

    fn encode(&self, tokens: Tensor<2, Int>, cache: Option<EncoderCache>) -> EncoderCache {
        DiffusionGemmaLm::encode(self, tokens, cache).1
    }

    fn encode_with_logits(&self, tokens: Tensor<2, Int>) -> (Tensor<3>, EncoderCache) {
        let (hidden, cache) = DiffusionGemmaLm::encode(self, tokens, None);
        (self.head(hidden), cache)
    }

    fn decode(
        &self,
        canvas: Tensor<2, Int>,
        self_conditioning: Option<Tensor<3>>,
        cache: &EncoderCache,
    ) -> Tensor<3> {
        DiffusionGemmaLm::decode(self, canvas, self_conditioning, cache)
    }

    fn vocab_size(&self) -> usize {
        DiffusionGemmaLm::vocab_size(self)
    }

    fn canvas_length(&self) -> usize {
        DiffusionGemmaLm::canvas_length(self)
    }

    fn max_seq_len(&self) -> usize {
        DiffusionGemmaLm::max_seq_len(self)
    }

    fn device(&self) -> Device {
        DiffusionGemmaLm::device(self)
    }
}

/// One denoising step, for every row of the batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanvasStep {
    /// Which canvas (0 first).
    pub canvas: usize,
    /// Steps remaining, this one included (`N` at the first step, 1 at the last).
    pub remaining: usize,
    /// The temperature of this step.
    pub temperature: f32,
    /// The positions the entropy bound accepted, per row (the rest were renoised; a row that
    /// has stopped keeps its canvas whatever the rule says).
    pub accepted: Vec<Vec<bool>>,
    /// The argmax canvas after this step, per row (a stopped row keeps its own).
    pub argmax: Vec<Vec<u32>>,
    /// Whether the stopping rule fired for each row at this step.
    pub stopped: Vec<bool>,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanvasGeneration {
    /// Each row's prompt, then its canvases (whole canvases: the padding id after an end of
    /// text, and for every canvas after the row finished, when the checkpoint has one).
    pub sequences: Vec<Vec<u32>>,
    /// Decoder passes per row (a pass of the batch counts for the rows still denoising).
    pub decoder_passes: Vec<usize>,
    /// Generated tokens (padding excluded) per decoder pass, per row.
    pub tokens_per_forward: Vec<f64>,
    /// The trajectory, step by step.
    pub steps: Vec<CanvasStep>,
}

/// DiffusionGemma's sampler (transformers' `DiffusionGemmaGenerationMixin.generate` with its
/// `EntropyBoundSampler`), as composable pieces:
///
/// 1. The prompt, and after it each finished canvas, is encoded into the cache.
/// 2. A canvas starts as uniform random tokens. At each step, with `n` of `N` steps left:
///    logits at temperature [`LinearTemperature`]; one categorical draw per position (the first
///    index whose cumulative probability reaches the step's uniform); the positions
///    [`accept_by_entropy`] accepts take their draw, every other position is renoised with a
///    fresh uniform token; the tempered logits condition the next step.
/// 3. A row stops denoising when [`StableAndConfident`] says so; it keeps its canvas, argmax and
///    logits while the others go on, and the canvas ends when every row stopped or after `N`
///    steps. The argmax canvas (not the last draw) is appended.
/// 4. A row finishes at an end-of-text id anywhere in its canvas or at `max_new_tokens`; with
///    a padding id, the tokens after its first end of text, and every later canvas, are padding.
///
/// All randomness comes through [`CanvasNoise`], so a run replays exactly from recorded draws.
#[derive(Debug, Clone, PartialEq)]
pub struct CanvasSampler {
    settings: CanvasSettings,
    eos_ids: Vec<u32>,
    pad_id: Option<u32>,
}

/// What a denoising step reads back from the device, per position (row-major over
/// `[batch, width]`).
struct Readout {
    /// The categorical draw.
    drawn: Vec<u32>,
    /// The most probable token.
    argmax: Vec<u32>,
    /// The entropy of the tempered distribution, `−Σ p log p`.
    entropy: Vec<f64>,
}

/// The draws, argmaxes and entropies of every position of `tempered`, computed on its device:
/// position `i`'s draw is the first index whose cumulative probability reaches `uniforms[i]`
/// (inverse-CDF sampling, exact for a categorical).
///
/// # Shapes
/// - `tempered`: `[batch, width, vocab]`; `uniforms`: `batch · width` values
fn read_positions(tempered: &Tensor<3>, uniforms: Vec<f64>) -> Readout {
    let [batch, width, vocab] = tempered.dims();
    let probabilities = softmax(tempered.clone(), 2);
    let entropy = (probabilities.clone() * log_softmax(tempered.clone(), 2)).sum_dim(2).neg();
    let uniforms: Vec<f32> = uniforms.into_iter().map(|u| u as f32).collect();
    let uniforms = TensorData::new(uniforms, [batch, width, 1]);
    let uniforms = Tensor::<3>::from_data(uniforms, &tempered.device());
    let drawn = probabilities
        .cumsum(2)
        .lower(uniforms.expand([batch, width, vocab]))
        .int()
        .sum_dim(2)
        .clamp_max(vocab as i64 - 1);
    let ids = |t: Tensor<3, Int>| int_values(t).into_iter().map(|id| id as u32).collect();
    Readout {
        drawn: ids(drawn),
        argmax: ids(tempered.clone().argmax(2)),
        entropy: entropy.into_data().iter::<f32>().map(f64::from).collect(),
    }
}

impl CanvasSampler {
    /// The sampler with `settings`, ending rows at any of `eos_ids` and padding after them with
    /// `pad_id` (the checkpoint's ids).
    ///
    /// # Errors
    /// As [`CanvasSettings::validate`].
    pub fn new(
        settings: CanvasSettings,
        eos_ids: Vec<u32>,
        pad_id: Option<u32>,
    ) -> Result<Self, BlockError> {
        settings.validate()?;
        Ok(Self { settings, eos_ids, pad_id })
    }

    /// The settings.
    pub fn settings(&self) -> &CanvasSettings {
        &self.settings
    }

    /// Generates after each of `prompts` (one batch: every prompt of one length).
    ///
    /// # Errors
    /// [`BlockError::Invalid`] for an empty batch or prompt, prompts of different lengths, an id
    /// (of a prompt, an end of text or the padding) outside the vocabulary, or a generation
    /// longer than the model's context; the errors of `noise`.
    pub fn generate<M: CanvasDenoiser>(
        &self,
        model: &M,
        prompts: &[Vec<u32>],
        noise: &mut impl CanvasNoise,
    ) -> Result<CanvasGeneration, BlockError> {
        let (vocab, width) = (model.vocab_size(), model.canvas_length());
        let batch = prompts.len();
        ensure_size(batch > 0, CONTEXT, "prompts", batch, "at least one prompt")?;
        let prompt_len = prompts[0].len();
        ensure_size(prompt_len > 0, CONTEXT, "prompt length", prompt_len, "at least one token")?;
        for prompt in prompts {
            ensure_size(
                prompt.len() == prompt_len,
                CONTEXT,
                "prompt length",
                prompt.len(),
                format!("the batch's length {prompt_len}"),
            )?;
        }
        let largest = prompts.iter().flatten().chain(&self.eos_ids).chain(&self.pad_id).max();
        let largest = largest.copied().unwrap_or(0) as usize;
        ensure_size(
            largest < vocab,
            CONTEXT,
            "token id",
            largest,
            format!("below the vocabulary size {vocab}"),
        )?;
        let settings = &self.settings;
        let canvases = settings.max_new_tokens.div_ceil(width);
        let total = prompt_len + canvases * width;
        ensure_size(
            total <= model.max_seq_len(),
            CONTEXT,
            "prompt + canvases",
            total,
            format!("at most the model's context of {}", model.max_seq_len()),
        )?;
        let device = model.device();
        let ids = |rows: &[Vec<u32>]| {
            let values = rows.iter().flatten().map(|&id| i64::from(id)).collect();
            ints(values, [rows.len(), rows[0].len()], &device)
        };
        let rows_of =
            |values: Vec<u32>| values.chunks(width).map(<[u32]>::to_vec).collect::<Vec<_>>();
        let temperature = LinearTemperature {
            t_min: settings.t_min,
            t_max: settings.t_max,
            steps: settings.max_denoising_steps,
        };
        let mut sequences = prompts.to_vec();
        let mut to_encode = prompts.to_vec();
        let mut cache = None;
        let mut finished_rows = vec![false; batch];
        let mut passes = vec![0usize; batch];
        let mut steps = Vec::new();
        for canvas in 0..canvases {
            let encoded = model.encode(ids(&to_encode), cache.take());
            let mut current = rows_of(noise.tokens(batch * width, vocab)?);
            let mut argmax = current.clone();
            let mut conditioning: Option<Tensor<3>> = None;
            let mut stopped_rows = vec![false; batch];
            let mut mean_entropy = vec![0.0; batch];
            let mut stopping = StableAndConfident::new(
                settings.stability_threshold,
                settings.confidence_threshold,
            );
            for remaining in (1..=settings.max_denoising_steps).rev() {
                for (row, count) in passes.iter_mut().enumerate() {
                    *count += usize::from(!(stopped_rows[row] || finished_rows[row]));
                }
                let temperature = temperature.at(remaining);
                let tempered = model
                    .decode(ids(&current), conditioning.clone(), &encoded)
                    .div_scalar(temperature);
                let read = read_positions(&tempered, noise.uniforms(batch * width)?);
                let renoise = rows_of(noise.tokens(batch * width, vocab)?);
                let mut accepted = Vec::with_capacity(batch);
                for row in 0..batch {
                    let at = row * width..(row + 1) * width;
                    let entropies = &read.entropy[at.clone()];
                    let accept = accept_by_entropy(entropies, settings.entropy_bound);
                    if !stopped_rows[row] {
                        let (drawn, renoise) = (&read.drawn[at.clone()], &renoise[row]);
                        current[row] = (0..width)
                            .map(|i| if accept[i] { drawn[i] } else { renoise[i] })
                            .collect();
                        argmax[row] = read.argmax[at].to_vec();
                        mean_entropy[row] = entropies.iter().sum::<f64>() / width as f64;
                    }
                    accepted.push(accept);
                }
                let stopped = stopping.observe(&argmax, &mean_entropy);
                // The tempered logits condition the next step; a stopped row keeps its own.
                conditioning = Some(match conditioning {
                    Some(previous) if stopped_rows.iter().any(|&s| s) => {
                        let frozen = TensorData::new(stopped_rows.clone(), [batch, 1, 1]);
                        let frozen = Tensor::<3, Bool>::from_data(frozen, &device);
                        tempered.mask_where(frozen.expand([batch, width, vocab]), previous)
                    }
                    _ => tempered,
                });
                steps.push(CanvasStep {
                    canvas,
                    remaining,
                    temperature,
                    accepted,
                    argmax: argmax.clone(),
                    stopped: stopped.clone(),
                });
                for (row, stop) in stopped.into_iter().enumerate() {
                    stopped_rows[row] |= stop;
                }
                if stopped_rows.iter().all(|&s| s) {
                    break;
                }
            }
            cache = Some(encoded);
            let done = self.finish_canvas(
                &mut sequences,
                &argmax,
                &mut finished_rows,
                prompt_len + settings.max_new_tokens,
            );
            if done {
                break;
            }
            to_encode = sequences.iter().map(|s| s[s.len() - width..].to_vec()).collect();
        }
        let tokens_per_forward = sequences
            .iter()
            .zip(&passes)
            .map(|(sequence, &count)| {
                let generated = &sequence[prompt_len..];
                let valid = generated.iter().filter(|&&id| Some(id) != self.pad_id).count();
                valid as f64 / count.max(1) as f64
            })
            .collect();
        Ok(CanvasGeneration { sequences, decoder_passes: passes, tokens_per_forward, steps })
    }

    /// Appends each row's argmax canvas and applies the end-of-text rules (transformers'
    /// `_finalize_canvas`): a row finishes at `max_length` or at an end-of-text id anywhere in
    /// its canvas; with a padding id, a row finished before keeps only padding, and in every
    /// canvas the tokens after the first end of text become padding. Returns whether every row
    /// has finished.
    fn finish_canvas(
        &self,
        sequences: &mut [Vec<u32>],
        argmax: &[Vec<u32>],
        finished: &mut [bool],
        max_length: usize,
    ) -> bool {
        let width = argmax[0].len();
        let before = finished.to_vec();
        let mut ended = vec![false; sequences.len()];
        for (row, sequence) in sequences.iter_mut().enumerate() {
            sequence.extend_from_slice(&argmax[row]);
            ended[row] = sequence.len() >= max_length
                || argmax[row].iter().any(|id| self.eos_ids.contains(id));
            finished[row] |= ended[row];
        }
        if let Some(pad) = self.pad_id
            && finished.iter().any(|&f| f)
        {
            let any_ended = ended.iter().any(|&e| e);
            for (row, sequence) in sequences.iter_mut().enumerate() {
                let start = sequence.len() - width;
                let canvas = &mut sequence[start..];
                if before[row] {
                    canvas.fill(pad);
                }
                if any_ended
                    && let Some(first) = canvas.iter().position(|id| self.eos_ids.contains(id))
                {
                    canvas[first + 1..].fill(pad);
                }
            }
        }
        finished.iter().all(|&f| f)
    }
}
