//! DiffusionGemma's sampler: block diffusion from uniform noise. Each canvas of
//! `canvas_length` tokens starts as uniform random tokens and is denoised against the encoder's
//! cache of everything before it; at every step the entropy-bound rule accepts the positions
//! whose draws are nearly independent, and every other position is renoised. Nothing is
//! committed for good until the canvas ends.
//!
//! The loop is built from pieces that each take their noise: [`LinearTemperature`],
//! [`accept_by_entropy`] (the EB rule the masked samplers share), [`StableAndConfident`], and
//! [`CanvasNoise`] for every draw ([`SeededNoise`], or [`ReplayedNoise`] to reproduce a
//! recorded run). [`CanvasSampler`] composes them over any [`CanvasDenoiser`], and
//! [`UniformBlockDiffusion`] trains one with the project's trainer.

mod noise;
mod rules;
mod sampler;
mod settings;
mod training;

#[cfg(test)]
mod tests;

pub use dlm_discrete::sampler::StableAndConfident;
pub use noise::{CanvasNoise, ReplayedNoise, SeededNoise};
pub use rules::{LinearTemperature, accept_by_entropy};
pub use sampler::{CanvasDenoiser, CanvasGeneration, CanvasSampler, CanvasStep};
pub use settings::CanvasSettings;
pub use training::UniformBlockDiffusion;
