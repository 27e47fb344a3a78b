//! [`Objective`]: what a training run minimises.

use burn::tensor::{Int, Tensor};
use rand::rngs::StdRng;

use crate::error::CoreError;

/// A loss summed over the tokens it covers, so that batches of different sizes, gradient
/// accumulation and evaluation average correctly: the mean is `sum / count`.
#[derive(Debug, Clone)]
pub struct LossSum {
    /// Sum of the per-token losses, shape `[1]`, differentiable.
    pub sum: Tensor<1>,
    /// Number of tokens (or other units) the sum covers.
    pub count: usize,
}

/// A training objective on batches of token sequences, generic over the model.
///
/// The randomness it needs (diffusion times, masks) comes from `rng`, which the trainer derives
/// from the run's seed and the step, so that a resumed run draws the same noise as the
/// uninterrupted one. Device-side randomness is reseeded per step likewise; on the CPU backends
/// that seed is process-wide, so two runs sharing a process must not interleave their steps.
pub trait Objective<M> {
    /// Checks that sequences of `seq_len` can be scored; the trainer calls it before the first
    /// batch, so [`Objective::loss`] may assume it.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] naming the constraint.
    fn check_seq_len(&self, seq_len: usize) -> Result<(), CoreError> {
        let _ = seq_len;
        Ok(())
    }

    /// The summed loss of one batch.
    ///
    /// # Shapes
    /// - `batch`: `[batch, seq_len]` token ids
    fn loss(&self, model: &M, batch: Tensor<2, Int>, rng: &mut StdRng) -> LossSum;
}
