//! The noise a canvas sampler draws, behind one trait so that a run can be replayed from
//! recorded draws ([`ReplayedNoise`]) as well as drawn from a seed ([`SeededNoise`]).

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::{BlockError, ensure_size};

/// Where the canvas sampler's randomness comes from. Each call is one draw of the reference
/// loop: a canvas initialisation or a renoising (`tokens`), or one categorical draw per canvas
/// position (`uniforms`).
pub trait CanvasNoise {
    /// `count` tokens, each uniform over `0..vocab`.
    ///
    /// # Errors
    /// A source that cannot give them (a replay that ran out or was recorded for another shape).
    fn tokens(&mut self, count: usize, vocab: usize) -> Result<Vec<u32>, BlockError>;

    /// `count` uniforms in `[0, 1)`.
    ///
    /// # Errors
    /// As [`CanvasNoise::tokens`].
    fn uniforms(&mut self, count: usize) -> Result<Vec<f64>, BlockError>;
}

/// Fresh draws from a seeded generator.
#[derive(Debug)]
pub struct SeededNoise {
    rng: StdRng,
}

impl SeededNoise {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed) }
    }
}

impl CanvasNoise for SeededNoise {
    fn tokens(&mut self, count: usize, vocab: usize) -> Result<Vec<u32>, BlockError> {
        Ok((0..count).map(|_| self.rng.random_range(0..vocab as u32)).collect())
    }

    fn uniforms(&mut self, count: usize) -> Result<Vec<f64>, BlockError> {
        Ok((0..count).map(|_| self.rng.random::<f64>()).collect())
    }
}

/// Recorded draws, handed out in order: the token draws and the uniform draws each form their
/// own queue (the reference loop interleaves them in a fixed order, so two queues suffice).
#[derive(Debug, Clone, Default)]
pub struct ReplayedNoise {
    tokens: VecDeque<Vec<u32>>,
    uniforms: VecDeque<Vec<f64>>,
}

impl ReplayedNoise {
    /// The recorded token draws and uniform draws, in the order they were drawn.
    pub fn new(tokens: Vec<Vec<u32>>, uniforms: Vec<Vec<f64>>) -> Self {
        Self { tokens: tokens.into(), uniforms: uniforms.into() }
    }

    /// Whether every recorded draw has been used.
    pub fn is_exhausted(&self) -> bool {
        self.tokens.is_empty() && self.uniforms.is_empty()
    }
}

fn next_draw<T>(
    queue: &mut VecDeque<Vec<T>>,
    count: usize,
    name: &'static str,
) -> Result<Vec<T>, BlockError> {
    let left = queue.len();
    ensure_size(left > 0, "replayed canvas noise", name, left, "a recorded draw left")?;
    let draw = queue.pop_front().unwrap_or_default();
    ensure_size(
        draw.len() == count,
        "replayed canvas noise",
        name,
        draw.len(),
        format!("{count} values in the draw"),
    )?;
    Ok(draw)
}

impl CanvasNoise for ReplayedNoise {
    fn tokens(&mut self, count: usize, vocab: usize) -> Result<Vec<u32>, BlockError> {
        let draw = next_draw(&mut self.tokens, count, "tokens")?;
        let largest = draw.iter().copied().max().unwrap_or(0);
        ensure_size(
            (largest as usize) < vocab,
            "replayed canvas noise",
            "tokens",
            largest as usize,
            format!("ids below the vocabulary size {vocab}"),
        )?;
        Ok(draw)
    }

    fn uniforms(&mut self, count: usize) -> Result<Vec<f64>, BlockError> {
        let draw = next_draw(&mut self.uniforms, count, "uniforms")?;
        let bad = draw.iter().find(|u| !(0.0..1.0).contains(*u));
        dlm_sched::ensure_value(
            bad.is_none(),
            "replayed canvas noise",
            "uniforms",
            bad.copied().unwrap_or(0.0),
            "values in [0, 1)",
        )?;
        Ok(draw)
    }
}
