//! [`UniformBlockDiffusion`]: training a canvas model — block diffusion under uniform noise,
//! with a clean prefix and self-conditioning.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use dlm_core::data::SequenceDataset;
use dlm_core::host::{int_values, ints};
use dlm_core::train::{LossSum, Objective};
use dlm_sched::ensure_value;
use rand::RngExt;
use rand::rngs::StdRng;

use super::sampler::CanvasDenoiser;
use crate::error::{BlockError, ensure_size};

const CONTEXT: &str = "uniform block diffusion";

/// DiffusionGemma's training objective as its NeMo AutoModel guide describes it (uniform
/// random-token corruption, a flat cross-entropy over the canvas, self-conditioning enabled
/// with some probability), on sequences of whole canvases:
///
/// 1. A canvas index `k ∈ {1, …, K−1}` is drawn (one per batch; `K` canvases per sequence): the
///    `k` canvases before it are the clean prefix, encoded causally into the cache.
/// 2. Each row draws `t ~ U[t_min, 1]`; each of its canvas tokens is replaced by a token uniform
///    over the vocabulary with probability `t` (the replacement may be the token itself).
/// 3. With probability `self_conditioning` (one coin per batch), a first decoder pass without
///    conditioning gives logits that, detached, condition the second; otherwise one pass
///    without.
/// 4. The loss is `−log p_θ(x_i | x̃, prefix)` averaged over **every** canvas position, corrupted
///    or not: a denoising cross-entropy, not a likelihood bound (uniform noise has no tractable
///    ELBO of this form); plus, with weight `ar_weight`, the encoder's next-token cross-entropy
///    on the prefix (the guide's optional autoregressive loss on the encoder's logits).
///
/// The encoder learns through the cache the decoder reads (it shares the decoder's weights).
/// The autoregressive term is what trains the last encoder layer's output scalar, which no
/// cached key or value depends on: without it that parameter gets no gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct UniformBlockDiffusion {
    t_min: f64,
    t_max: f64,
    self_conditioning: f64,
    ar_weight: f64,
}

impl UniformBlockDiffusion {
    /// Corruption rates `t ~ U[t_min, 1]`, self-conditioning in a share `self_conditioning` of
    /// the batches.
    ///
    /// # Errors
    /// [`BlockError::Invalid`] unless `0 ≤ t_min ≤ 1` and `0 ≤ self_conditioning ≤ 1`.
    pub fn new(t_min: f64, self_conditioning: f64) -> Result<Self, BlockError> {
        Self::with_times(t_min, 1.0, self_conditioning)
    }

    /// As [`UniformBlockDiffusion::new`] with `t ~ U[t_min, t_max]` (a fixed rate when they are
    /// equal).
    ///
    /// # Errors
    /// [`BlockError::Invalid`] unless `0 ≤ t_min ≤ t_max ≤ 1` and `0 ≤ self_conditioning ≤ 1`.
    pub fn with_times(t_min: f64, t_max: f64, self_conditioning: f64) -> Result<Self, BlockError> {
        ensure_value((0.0..=1.0).contains(&t_min), CONTEXT, "t_min", t_min, "a value in [0, 1]")?;
        ensure_value(
            (t_min..=1.0).contains(&t_max),
            CONTEXT,
            "t_max",
            t_max,
            format!("a value in [t_min = {t_min}, 1]"),
        )?;
        ensure_value(
            (0.0..=1.0).contains(&self_conditioning),
            CONTEXT,
            "self_conditioning",
            self_conditioning,
            "a probability in [0, 1]",
        )?;
        Ok(Self { t_min, t_max, self_conditioning, ar_weight: 1.0 })
    }

    /// The weight of the encoder's autoregressive loss (1 by default; 0 leaves the last encoder
    /// layer's output scalar untrained, and such a run cannot resume: its optimiser has no state
    /// for that parameter).
    ///
    /// # Errors
    /// [`BlockError::Invalid`] unless `ar_weight` is finite and `≥ 0`.
    pub fn with_ar_weight(self, ar_weight: f64) -> Result<Self, BlockError> {
        ensure_value(
            ar_weight >= 0.0 && ar_weight.is_finite(),
            CONTEXT,
            "ar_weight",
            ar_weight,
            "a finite value ≥ 0",
        )?;
        Ok(Self { ar_weight, ..self })
    }

    /// Replaces each token of `clean` by a uniform one with its row's probability (`rates`),
    /// drawing from `rng`.
    pub(super) fn corrupt(
        clean: &[i64],
        width: usize,
        rates: &[f64],
        vocab: usize,
        rng: &mut StdRng,
    ) -> Vec<i64> {
        clean
            .iter()
            .enumerate()
            .map(|(i, &token)| {
                let replace = rng.random::<f64>() < rates[i / width];
                let noise = rng.random_range(0..vocab as i64);
                if replace { noise } else { token }
            })
            .collect()
    }
}

impl<M: CanvasDenoiser> Objective<M> for UniformBlockDiffusion {
    fn check_data(&self, model: &M, data: &SequenceDataset) -> Result<(), dlm_core::CoreError> {
        let (width, len) = (model.canvas_length(), data.seq_len());
        let whole = len.is_multiple_of(width) && len >= 2 * width;
        let expected = format!("at least two whole canvases of {width}");
        ensure_size(whole, CONTEXT, "seq_len", len, expected)?;
        let context = model.max_seq_len();
        ensure_size(len <= context, CONTEXT, "seq_len", len, format!("at most {context}"))?;
        let vocab = model.vocab_size();
        ensure_size(
            data.vocab_size() <= vocab,
            CONTEXT,
            "vocab_size",
            data.vocab_size(),
            format!("at most the model's {vocab}"),
        )?;
        Ok(())
    }

    /// # Shapes
    /// - `batch`: `[batch, seq_len]`, whole canvases
    fn loss(&self, model: &M, batch: Tensor<2, Int>, rng: &mut StdRng) -> LossSum {
        let [rows, len] = batch.dims();
        let (width, vocab) = (model.canvas_length(), model.vocab_size());
        let device = batch.device();
        let k = rng.random_range(1..len / width);
        let prefix = batch.clone().narrow(1, 0, k * width);
        let clean = batch.narrow(1, k * width, width);
        let rates: Vec<f64> = (0..rows)
            .map(|_| self.t_min + (self.t_max - self.t_min) * rng.random::<f64>())
            .collect();
        let noisy = Self::corrupt(&int_values(clean.clone()), width, &rates, vocab, rng);
        let noisy = ints(noisy, [rows, width], &device);
        let (encoder_logits, cache) = model.encode_with_logits(prefix.clone());
        let conditioning = (rng.random::<f64>() < self.self_conditioning)
            .then(|| model.decode(noisy.clone(), None, &cache).detach());
        let logits = model.decode(noisy, conditioning, &cache);
        let mut loss = log_softmax(logits, 2).gather(2, clean.unsqueeze_dim::<3>(2)).neg().mean();
        if self.ar_weight > 0.0 {
            // Position i of the prefix predicts token i + 1.
            let n = k * width;
            let predicted = log_softmax(encoder_logits.narrow(1, 0, n - 1), 2);
            let next = prefix.narrow(1, 1, n - 1).unsqueeze_dim::<3>(2);
            loss = loss + predicted.gather(2, next).neg().mean().mul_scalar(self.ar_weight);
        }
        // The mean per canvas position, as a sum over them.
        let count = rows * width;
        LossSum { sum: loss.mul_scalar(count as f64).reshape([1]), count }
    }
}
