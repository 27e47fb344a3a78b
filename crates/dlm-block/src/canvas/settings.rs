//! [`CanvasSettings`]: DiffusionGemma's decoding settings.

use dlm_core::backbone::MAX_SEQ_LEN;
use dlm_core::diffusion_gemma::GenerationDefaults;
use dlm_sched::ensure_value;
use serde::{Deserialize, Serialize};

use crate::error::{BlockError, ensure_size};

const CONTEXT: &str = "canvas sampler";

/// The settings of [`super::CanvasSampler`], named as transformers'
/// `DiffusionGemmaGenerationConfig` names them; the defaults are its
/// `_get_default_generation_params` (the released checkpoint's `generation_config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, default)]
pub struct CanvasSettings {
    /// Tokens to generate; canvases are whole, so `⌈max_new_tokens / canvas_length⌉` of them.
    pub max_new_tokens: usize,
    /// Denoising steps per canvas, at most (`N`).
    pub max_denoising_steps: usize,
    /// `γ` of the entropy-bound acceptance rule.
    pub entropy_bound: f64,
    /// Temperature at the last step.
    pub t_min: f64,
    /// Temperature at the first step.
    pub t_max: f64,
    /// How many previous argmax canvases the current one must equal before the canvas may stop
    /// (0: stability is not required).
    pub stability_threshold: usize,
    /// The mean token entropy below which a stable canvas stops.
    pub confidence_threshold: f64,
}

dlm_sched::serde_validated!(CanvasSettings);

impl Default for CanvasSettings {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            max_denoising_steps: 48,
            entropy_bound: 0.1,
            t_min: 0.4,
            t_max: 0.8,
            stability_threshold: 1,
            confidence_threshold: 0.005,
        }
    }
}

impl CanvasSettings {
    /// The checkpoint's `generation_config.json` over the defaults.
    pub fn from_checkpoint(file: &GenerationDefaults) -> Self {
        let d = Self::default();
        Self {
            max_new_tokens: file.max_new_tokens.unwrap_or(d.max_new_tokens),
            max_denoising_steps: file.max_denoising_steps.unwrap_or(d.max_denoising_steps),
            entropy_bound: file.entropy_bound.unwrap_or(d.entropy_bound),
            t_min: file.t_min.unwrap_or(d.t_min),
            t_max: file.t_max.unwrap_or(d.t_max),
            stability_threshold: file.stability_threshold.unwrap_or(d.stability_threshold),
            confidence_threshold: file.confidence_threshold.unwrap_or(d.confidence_threshold),
        }
    }

    /// Checks every setting's domain (as transformers' `validate` does).
    ///
    /// # Errors
    /// [`BlockError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), BlockError> {
        ensure_size(
            (1..=MAX_SEQ_LEN).contains(&self.max_new_tokens),
            CONTEXT,
            "max_new_tokens",
            self.max_new_tokens,
            format!("between 1 and {MAX_SEQ_LEN}"),
        )?;
        ensure_size(
            (1..=1 << 16).contains(&self.max_denoising_steps),
            CONTEXT,
            "max_denoising_steps",
            self.max_denoising_steps,
            "between 1 and 65536",
        )?;
        ensure_value(
            self.entropy_bound > 0.0 && self.entropy_bound.is_finite(),
            CONTEXT,
            "entropy_bound",
            self.entropy_bound,
            "a finite value > 0",
        )?;
        ensure_value(
            self.t_min >= 0.0 && self.t_min.is_finite(),
            CONTEXT,
            "t_min",
            self.t_min,
            "a finite value ≥ 0",
        )?;
        ensure_value(
            self.t_max > self.t_min && self.t_max.is_finite(),
            CONTEXT,
            "t_max",
            self.t_max,
            format!("a finite value > t_min = {}", self.t_min),
        )?;
        ensure_size(
            self.stability_threshold <= 1 << 16,
            CONTEXT,
            "stability_threshold",
            self.stability_threshold,
            "at most 65536",
        )?;
        ensure_value(
            self.confidence_threshold > 0.0 && !self.confidence_threshold.is_nan(),
            CONTEXT,
            "confidence_threshold",
            self.confidence_threshold,
            "a value > 0",
        )?;
        Ok(())
    }
}
