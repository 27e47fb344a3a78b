//! Discrete diffusion language models: MDLM masked diffusion, D3PM transition matrices and SEDD
//! concrete scores, with the samplers of the literature.
//!
//! # Module map
//!
//! | item | what |
//! |---|---|
//! | [`MaskingProcess`] | the absorbing forward process, with kept (prompt, context) positions and optionally DiffusionBERT's token-dependent [`Spindle`] schedule |
//! | [`MaskedDenoiser`], [`Subs`] | `log p_θ(x0 | z_t)` and MDLM's SUBS parameterisation of a [`Denoiser`](dlm_core::backbone::Denoiser) |
//! | [`BertSubs`] | a pretrained BERT masked LM ([`BertMlm`](dlm_core::bert::BertMlm)) as a time-agnostic SUBS denoiser, special tokens excluded |
//! | [`Guided`] | classifier-free guidance (LLaDA's `cfg_scale`): conditional and prompt-masked logits combined |
//! | [`Mdlm`] | the continuous-time NELBO as a training [`Objective`](dlm_core::train::Objective), and its evaluation |
//! | [`d3pm`] | D3PM: uniform and absorbing transitions in closed form, posteriors, the hybrid loss `L_vb + λ·CE`, ancestral sampling, the mutual-information schedule |
//! | [`sedd`] | SEDD: concrete scores on the absorbing and uniform graphs, the denoising score-entropy bound (DWDSE), Tweedie τ-leaping, the exact score of a Markov source |
//! | [`AdaptiveParallelDecoder`] | APD: masked proposals kept while a small autoregressive model's mixture agrees |
//! | [`likelihood`] | a sequence's log-likelihood split over its tokens: the chain rule, or LLaDA's Monte-Carlo bound of a continuation (what `/v1/completions` returns as `logprobs`) |
//! | [`SpeculativeDecoder`] | speculative decoding with a masked drafter: the autoregressive target's distribution exactly |
//! | [`sampler`] | one driver ([`MaskedSampler`](sampler::MaskedSampler)) composed of a token proposal and an [`Unmasking`](sampler::Unmasking) policy: MDLM ancestral (and its cached variant), ReMDM, LLaDA top-k and random, Fast-dLLM threshold and factor, semi-autoregressive blocks |

mod adaptive_parallel;
mod bert;
pub mod d3pm;
mod denoiser;
mod error;
mod guidance;
pub mod likelihood;
mod markov_bayes;
mod masking;
mod mdlm;
pub mod sampler;
pub mod sedd;
mod speculative;
mod spindle;
pub mod sweep;

pub use adaptive_parallel::{AdaptiveDecoded, AdaptiveParallelDecoder};
pub use bert::BertSubs;
pub use denoiser::{
    MaskedDenoiser, NEG_INFINITY, Subs, masked_rows, subs_log_probs, subs_masked_nll,
    subs_nll_at_rows, zero_masking_log_probs,
};
pub use error::DiscreteError;
pub use guidance::Guided;
pub use markov_bayes::MarkovBayes;
pub use masking::{Masked, MaskingProcess};
pub use mdlm::{Conditioning, Mdlm, masked_nelbo_sum};
pub use speculative::{Speculated, SpeculativeDecoder};
pub use spindle::Spindle;
