//! What a caller sees of a decoding while it runs: finished blocks (to stream text) and every
//! step (to record a [`Trajectory`]).

use super::trajectory::{Trajectory, TrajectoryStep};

/// A block a decoder has finished: positions `..end` of every row are final.
#[derive(Debug, Clone, Copy)]
pub struct BlockDone<'a> {
    /// Every row's tokens, row-major `[batch, len]`.
    pub tokens: &'a [i64],
    /// Rows.
    pub batch: usize,
    /// Positions per row.
    pub len: usize,
    /// The end of the final span.
    pub end: usize,
    /// Model calls so far.
    pub nfe: usize,
}

/// The tokens a decoding starts from.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    /// Every row's tokens, row-major `[batch, len]`; undecided positions hold `mask_id`.
    pub tokens: &'a [i64],
    /// Rows.
    pub batch: usize,
    /// Positions per row.
    pub len: usize,
    /// The mask token.
    pub mask_id: u32,
}

/// Callbacks of a decoding, each with a default that ignores it. A closure over [`BlockDone`]
/// is an observer of finished blocks; `()` observes nothing; a [`Trajectory`] records every
/// step.
pub trait Observer {
    /// Decoding starts.
    fn started(&mut self, _start: Start<'_>) {}

    /// A step ran: every denoising step (one that commits nothing too), the noise removal and
    /// the padding after a stop token.
    fn step_done(&mut self, _step: &TrajectoryStep) {}

    /// A block is final.
    fn block_done(&mut self, _done: BlockDone<'_>) {}
}

impl Observer for () {}

impl<F: FnMut(BlockDone<'_>) + ?Sized> Observer for F {
    fn block_done(&mut self, done: BlockDone<'_>) {
        self(done)
    }
}

/// An observer of every step from a closure: `EachStep(|step: &TrajectoryStep| ...)`.
pub struct EachStep<F>(pub F);

impl<F: FnMut(&TrajectoryStep)> Observer for EachStep<F> {
    fn step_done(&mut self, step: &TrajectoryStep) {
        (self.0)(step)
    }
}

impl Observer for Trajectory {
    fn started(&mut self, start: Start<'_>) {
        *self = Trajectory::new(start.batch, start.len, start.mask_id, start.tokens.to_vec());
    }

    fn step_done(&mut self, step: &TrajectoryStep) {
        self.steps.push(step.clone());
    }
}
