//! Block diffusion: BD3LM (Arriola et al. 2025) — block-causal training on `x_t ⊕ x0`, exact
//! KV-cached sampling, arbitrary-length generation — and Fast-dLLM's approximate caches for
//! full-attention models.
//!
//! # Module map
//!
//! | item | what |
//! |---|---|
//! | [`Bd3lm`] | the vectorised block NELBO as a training objective; evaluation; the clipped-schedule variance search |
//! | [`BlockSampler`] | block-by-block sampling with any masked sampler inside a block, the clean blocks in an exact KV cache (or recomputed, the reference); stops at `eos`; a sliding window goes past the training context |
//! | [`canvas`] | DiffusionGemma's sampler: canvases from uniform noise, entropy-bound acceptance and renoising, the linear temperature schedule, stable-and-confident stopping, every draw through one noise source (replayable) |
//! | [`BlockwiseDecoder`] | block-wise decoding of full-attention models with Fast-dLLM's prefix and dual caches (and none, the exact reference) |
//! | [`FeatureCachedDecoder`] | masked decoding of full-attention models through dLLM-Cache's per-layer feature cache: prompt and response refreshed at their own intervals, V-verify in between, arithmetic counted per call |

mod approximate_cache;
pub mod canvas;
mod error;
mod feature_cache;
mod sampling;
mod training;

pub use approximate_cache::{BlockwiseDecoder, CacheMode, Decoded};
pub use error::BlockError;
pub use feature_cache::{FeatureCacheSettings, FeatureCachedDecoder, FeatureCachedDecoding};
pub use sampling::{BlockSampler, CachedBlock, Generation, Prefix, RecomputedBlock};
pub use training::{Bd3lm, Bd3lmMask, ClipCandidate};
