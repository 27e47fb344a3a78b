//! Continuous diffusion language models: Gaussian diffusion over token embeddings (Diffusion-LM,
//! Li et al. 2022; DiffuSeq, Gong et al. 2023).
//!
//! # Module map
//!
//! | item | what |
//! |---|---|
//! | [`gaussian`] | `q(z_t | x0)`, the posterior `q(z_s | z_t, x0)`, DDPM and DDIM steps, in closed form |
//! | [`DiffusionLm`] | learned embeddings, a time-conditioned vector denoiser predicting `x0` (optionally self-conditioned), a rounding head tied to the embeddings |
//! | [`DiffusionLmLoss`] | regression, `t = 0` anchor, prior and rounding terms; DiffuSeq's partial noising |
//! | [`GaussianSampler`] | DDPM / DDIM on any time grid, the clamping trick, L2 or cosine rounding, source anchoring |
//! | [`round_to_tokens`], [`clamp_to_embeddings`] | nearest-neighbour rounding in one matrix product |

mod error;
pub mod gaussian;
mod model;
mod objective;
mod rounding;
mod sampler;

pub use error::ContinuousError;
pub use model::{DiffusionLm, DiffusionLmConfig, X0Predictor};
pub use objective::DiffusionLmLoss;
pub use rounding::{Distance, clamp_to_embeddings, round_to_tokens};
pub use sampler::{GaussianSampler, Sampled, Update};
