//! [`Objective`]: what a training run minimises.

use burn::tensor::{Int, Tensor};
use rand::rngs::StdRng;

use crate::data::SequenceDataset;
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
    /// Checks that `model` can be trained and scored on `data` under this objective: sequence
    /// length against the model's context and the objective's constraints, the data's
    /// vocabulary against the model's, reserved tokens (a mask) absent from the data. The
    /// trainer calls it before the first batch, so [`Objective::loss`] may assume it.
    ///
    /// # Errors
    /// [`CoreError::Invalid`] naming the constraint.
    fn check_data(&self, model: &M, data: &SequenceDataset) -> Result<(), CoreError>;

    /// The summed loss of one batch.
    ///
    /// # Shapes
    /// - `batch`: `[batch, seq_len]` token ids
    fn loss(&self, model: &M, batch: Tensor<2, Int>, rng: &mut StdRng) -> LossSum;
}
