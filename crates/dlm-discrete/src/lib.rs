//! Discrete diffusion language models: D3PM transition matrices and MDLM masked diffusion, with
//! the samplers of the literature.
//!
//! **Status: planned, not implemented yet** (issue "dlm-discrete: D3PM and MDLM"). Nothing in this
//! crate works yet; the map below is the agreed shape.
//!
//! # Module map (planned)
//!
//! | module | what |
//! |---|---|
//! | `d3pm` | uniform and absorbing transition matrices, closed-form `Q̄_t`, posteriors, hybrid loss |
//! | `mdlm` | masking process, SUBS parameterisation, continuous-time NELBO, evaluation |
//! | `sampler` | one `Sampler` interface and its driver loop |
//! | `unmasking` | composable policies: ancestral, cached, top-k confidence, threshold, factor, random |
//! | `remasking` | ReMDM (cap, rescale, loop) |
