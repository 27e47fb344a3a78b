//! [`TrainConfig`]: the optimiser, schedule and bookkeeping of a training run.

use burn::config::Config;

use super::lr::LrDecay;
use crate::error::{CoreError, ensure_size, ensure_value};

const CONTEXT: &str = "train config";

/// Settings of a training run: AdamW (Loshchilov & Hutter 2019) with linear warmup and constant
/// or cosine decay, global-norm gradient clipping, gradient accumulation and an optional EMA of
/// the weights. Defaults follow MDLM (lr `3e-4`, betas `(0.9, 0.999)`, eps `1e-8`, no weight
/// decay, clipping at 1).
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Number of optimiser steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[config(default = 1)]
    pub grad_accumulation: usize,
    /// Model replicas that compute each micro-batch concurrently, each on
    /// `batch_size / replicas` of its sequences in a thread of its own, their gradients summed
    /// (data parallelism on one device). flex runs most small operations on one thread, so two
    /// replicas keep both cores of a 2-core machine busy. Each shard draws its noise (times,
    /// masks) from a stream seeded by the step and the shard, so a run is reproducible for a
    /// given `replicas` but its draws differ from those of another `replicas`; dropout draws
    /// from the device's generator, which the replicas share, so with dropout a run with
    /// `replicas > 1` is not bitwise reproducible.
    #[config(default = 1)]
    pub replicas: usize,
    /// Peak learning rate.
    #[config(default = 3e-4)]
    pub learning_rate: f64,
    /// Steps of linear warmup.
    #[config(default = 0)]
    pub warmup_steps: usize,
    /// Decay after warmup.
    #[config(default = "LrDecay::Constant")]
    pub decay: LrDecay,
    /// Decoupled weight decay.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// AdamW `β₁`.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// AdamW `β₂`.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// AdamW `ε`.
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Clip the global gradient norm to this value.
    #[config(default = "Some(1.0)")]
    pub grad_clip_norm: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay.
    #[config(default = "None")]
    pub ema_decay: Option<f64>,
    /// Seed of the batch order and of every step's randomness.
    #[config(default = 0)]
    pub seed: u64,
}

impl TrainConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`CoreError`] naming the first offending field.
    pub fn validate(&self) -> Result<(), CoreError> {
        ensure_size(self.steps > 0, CONTEXT, "steps", self.steps, "at least 1")?;
        ensure_size(self.batch_size > 0, CONTEXT, "batch_size", self.batch_size, "at least 1")?;
        ensure_size(
            self.grad_accumulation > 0,
            CONTEXT,
            "grad_accumulation",
            self.grad_accumulation,
            "at least 1",
        )?;
        ensure_size(
            self.replicas > 0 && self.batch_size.is_multiple_of(self.replicas),
            CONTEXT,
            "replicas",
            self.replicas,
            format!("a divisor of batch_size = {}", self.batch_size),
        )?;
        let lr = self.learning_rate;
        ensure_value(
            lr > 0.0 && lr.is_finite(),
            CONTEXT,
            "learning_rate",
            lr,
            "a finite value > 0",
        )?;
        let wd = self.weight_decay;
        ensure_value(
            wd >= 0.0 && (wd as f32).is_finite(),
            CONTEXT,
            "weight_decay",
            wd,
            "a finite value >= 0",
        )?;
        // The optimiser and the EMA compute in f32: a setting valid in f64 that rounds to 1 or 0
        // in f32 would silently become another optimiser (β → 1: no moment updates; ε → 0:
        // division by a zero second moment).
        for (name, beta) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            ensure_value(
                (0.0..1.0).contains(&beta) && (beta as f32) < 1.0,
                CONTEXT,
                name,
                beta,
                "a value in [0, 1) that stays below 1 in f32 (at most 1 − 6e-8)",
            )?;
        }
        let eps = self.epsilon;
        ensure_value(
            eps > 0.0 && (eps as f32) > 0.0 && (eps as f32).is_finite(),
            CONTEXT,
            "epsilon",
            eps,
            "a value > 0 that stays positive and finite in f32 (1e-45 to 3e38)",
        )?;
        if let LrDecay::Cosine { min_ratio } = self.decay {
            ensure_value(
                (0.0..=1.0).contains(&min_ratio),
                CONTEXT,
                "decay.min_ratio",
                min_ratio,
                "a value in [0, 1]",
            )?;
        }
        if let Some(clip) = self.grad_clip_norm {
            ensure_value(
                clip > 0.0 && clip.is_finite(),
                CONTEXT,
                "grad_clip_norm",
                clip,
                "a finite value > 0 (None for no clipping)",
            )?;
        }
        if let Some(decay) = self.ema_decay {
            ensure_value(
                decay > 0.0 && decay < 1.0 && (decay as f32) < 1.0 && (decay as f32) > 0.0,
                CONTEXT,
                "ema_decay",
                decay,
                "a value in (0, 1) that stays inside it in f32 (its complement must not round to 0)",
            )?;
        }
        Ok(())
    }
}
