//! Continuous diffusion language models: Gaussian diffusion over token embeddings (Diffusion-LM,
//! Li et al. 2022; DiffuSeq, Gong et al. 2023).
//!
//! **Status: planned, not implemented yet** (issue "dlm-continuous: Diffusion-LM"). Nothing in
//! this crate works yet; the map below is the agreed shape.
//!
//! # Module map (planned)
//!
//! | module | what |
//! |---|---|
//! | `embedding_diffusion` | `q(z_t | x0) = N(√α·x0, (1 − α)·I)` over learned embeddings, under any `dlm_sched::NoiseSchedule` |
//! | `loss` | Diffusion-LM's x0 regression, `t = 0` anchor, prior term and rounding cross-entropy |
//! | `rounding` | nearest-neighbour rounding (L2, cosine) and the clamping trick, batched as one matrix product |
//! | `sampler` | DDPM ancestral and DDIM(η) on any `dlm_sched::TimeGrid` |
//! | `partial_noising` | DiffuSeq: a clean, re-anchored source segment and a noised target |
