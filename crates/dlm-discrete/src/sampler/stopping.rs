//! [`StableAndConfident`]: stopping a block's denoising once its prediction is stable and
//! confident (DiffusionGemma's adaptive stopping), and [`AdaptiveStopping`], its settings in the
//! masked sampler.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::DiscreteError;

/// transformers' `StableAndConfidentStoppingCriteria`: a row's canvas (a block of a masked sampler) is done when its argmax
/// canvas equals each of the last `stability` ones (none before the first step, so the earliest
/// stop with `stability = 1` is the second step) and the mean entropy of its tempered
/// distribution is below `confidence`.
#[derive(Debug, Clone)]
pub struct StableAndConfident {
    stability: usize,
    confidence: f64,
    history: VecDeque<Vec<Vec<u32>>>,
}

impl StableAndConfident {
    /// The rule with an empty history.
    pub fn new(stability: usize, confidence: f64) -> Self {
        Self { stability, confidence, history: VecDeque::new() }
    }

    /// Whether each row stops after this step, given its argmax canvas and the mean entropy of
    /// its positions; the argmax canvases join the history.
    pub fn observe(&mut self, argmax: &[Vec<u32>], mean_entropy: &[f64]) -> Vec<bool> {
        let stopped = (0..argmax.len())
            .map(|row| {
                let stable = self.history.len() == self.stability
                    && self.history.iter().all(|past| past[row] == argmax[row]);
                stable && mean_entropy[row] < self.confidence
            })
            .collect();
        if self.stability > 0 {
            self.history.push_back(argmax.to_vec());
            if self.history.len() > self.stability {
                self.history.pop_front();
            }
        }
        stopped
    }
}

/// The masked sampler's adaptive stopping ([`super::MaskedSampler::with_adaptive_stopping`]): at
/// each step, a row's block prediction is its decoded tokens and the model's argmax at its masked
/// positions; once [`StableAndConfident`] fires on it (the mean entropy taken over the masked
/// positions), every masked position of the row's block takes its argmax and the block is done
/// for that row, however many steps the policy had left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct AdaptiveStopping {
    /// Steps the prediction must stay unchanged (0: no stability required).
    pub stability_threshold: usize,
    /// The mean entropy, in nats, below which a stable prediction stops.
    pub confidence_threshold: f64,
}

dlm_sched::serde_validated!(AdaptiveStopping);

impl AdaptiveStopping {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`DiscreteError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), DiscreteError> {
        dlm_sched::ensure_steps(
            "adaptive stopping",
            "stability_threshold",
            self.stability_threshold.max(1),
        )?;
        dlm_sched::ensure_value(
            self.confidence_threshold > 0.0 && !self.confidence_threshold.is_nan(),
            "adaptive stopping",
            "confidence_threshold",
            self.confidence_threshold,
            "a value > 0",
        )?;
        Ok(())
    }

    /// The rule, with an empty history.
    pub fn rule(&self) -> StableAndConfident {
        StableAndConfident::new(self.stability_threshold, self.confidence_threshold)
    }
}
