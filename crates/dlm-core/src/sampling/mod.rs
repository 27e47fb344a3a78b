//! Token sampling primitives. Each stochastic piece has a deterministic core that takes its
//! noise (`gumbel_max`, `TokenSampler::sample_with_gumbel`); categorical draws are float64.

mod confidence;
mod filter;
mod gumbel;
mod token_sampler;

pub use confidence::Confidence;
pub use filter::{top_k, top_p};
pub use gumbel::{draw_gumbel, gumbel_from_uniforms, gumbel_max};
pub use token_sampler::TokenSampler;
